package serial

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

// Bus defaults and limits.
const (
	DefaultBaud          = 115200
	DefaultTimeout       = time.Second
	DefaultRetries       = 1
	DefaultEraseTimeout  = smp.DefaultEraseTimeout
	DefaultResetDelay    = time.Second
	DefaultRebootTimeout = 2 * time.Minute
	maxTimeout           = time.Minute
	maxLongTimeout       = 30 * time.Minute
	maxRetries           = 10
	maxLineLength        = 4096
)

// DefaultScanPorts are the ports Scan probes besides the bus's own when
// the bus names none: every USB serial adapter, by its stable name.
var DefaultScanPorts = []string{"/dev/serial/by-id/*"}

// bauds are the rates the serial library can set.
var bauds = []int{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

var (
	parities     = []string{"none", "even", "odd"}
	versionModes = []string{string(smp.VersionAuto), string(smp.VersionOne), string(smp.VersionTwo)}
	transports   = []string{string(smp.TransportBase64), string(smp.TransportRaw)}
)

// Bus is a decoded bus entry: one UART and the SMP device on it.
type Bus struct {
	Port     string
	Baud     int
	DataBits int
	Parity   string
	StopBits int
	Timeout  time.Duration // per SMP request attempt
	Retries  int           // extra attempts after a lost or corrupt answer

	Version    smp.VersionMode
	Transport  smp.TransportKind
	LineLength int // base64 line, marker and '\n' included
	// Pacing is the idle time before each continuation line on top of the
	// previous line's wire time: smp.PacingAuto or smp.PacingNone, or a
	// fixed gap.
	Pacing        time.Duration
	EraseTimeout  time.Duration // first upload chunk and storage erase
	ResetDelay    time.Duration // after a reset is accepted, before the device is probed
	RebootTimeout time.Duration // how long a reset device may stay silent (flash)
	ScanPorts     []string      // paths or globs Scan probes besides Port
}

var busKeys = []string{"port", "baud", "data_bits", "parity", "stop_bits", "timeout", "retries",
	"smp_version", "transport", "line_pacing", "line_length", "erase_timeout", "reset_delay", "reboot_timeout", "scan_ports"}

// ParseBus decodes, defaults and validates a bus entry; the gateway's own
// keys (name, plugin) are accepted and ignored.
func ParseBus(raw json.RawMessage) (*Bus, []plugins.FieldError) {
	var errs []plugins.FieldError
	b := decodeBus(raw, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	return b, nil
}

// ValidateBus returns every problem of a bus entry with its key path.
func ValidateBus(raw json.RawMessage) []plugins.FieldError {
	var errs []plugins.FieldError
	decodeBus(raw, &errs)
	return errs
}

func decodeBus(raw json.RawMessage, errs *[]plugins.FieldError) *Bus {
	b := &Bus{Baud: DefaultBaud, DataBits: 8, Parity: "none", StopBits: 1, Timeout: DefaultTimeout,
		Retries: DefaultRetries, Version: smp.VersionAuto, Transport: smp.TransportBase64, LineLength: smp.MaxLine,
		Pacing: smp.PacingAuto, EraseTimeout: DefaultEraseTimeout, ResetDelay: DefaultResetDelay,
		RebootTimeout: DefaultRebootTimeout}
	f := jsonfields.Open(raw, "", errs)
	f.Skip("name", "plugin")
	for _, k := range []string{"mode", "address"} {
		if f.Has(k) {
			f.Add(k, "not used by the serial plugin (an SMP device sits alone on its UART: set port)")
		}
		f.Skip(k)
	}
	f.Str("port", &b.Port)
	if f.Int("baud", &b.Baud) && !slices.Contains(bauds, b.Baud) {
		f.Add("baud", "unsupported baud rate %d (want one of %v)", b.Baud, bauds)
	}
	if f.Int("data_bits", &b.DataBits) && (b.DataBits < 5 || b.DataBits > 8) {
		f.Add("data_bits", "%d not supported (want 5..8; SMP needs 8)", b.DataBits)
	} else if b.DataBits != 8 {
		f.Add("data_bits", "SMP carries 8-bit bytes: want 8, got %d", b.DataBits)
	}
	f.OneOf("parity", &b.Parity, parities...)
	if f.Int("stop_bits", &b.StopBits) && b.StopBits != 1 && b.StopBits != 2 {
		f.Add("stop_bits", "%d not supported (want 1 or 2)", b.StopBits)
	}
	durIn := func(key string, dst *time.Duration, lo, hi time.Duration) {
		if f.Duration(key, dst) && (*dst < lo || *dst > hi) {
			f.Add(key, "%s out of range %s..%s", *dst, lo, hi)
		}
	}
	durIn("timeout", &b.Timeout, time.Millisecond, maxTimeout)
	if f.Int("retries", &b.Retries) && (b.Retries < 0 || b.Retries > maxRetries) {
		f.Add("retries", "%d out of range 0..%d", b.Retries, maxRetries)
	}
	var s string
	if f.OneOf("smp_version", &s, versionModes...) {
		b.Version = smp.VersionMode(s)
	}
	if f.OneOf("transport", &s, transports...) {
		b.Transport = smp.TransportKind(s)
	}
	if f.Int("line_length", &b.LineLength) && (b.LineLength < smp.MinLine || b.LineLength > maxLineLength) {
		f.Add("line_length", "%d out of range %d..%d (stock Zephyr and MCUboot take %d)", b.LineLength, smp.MinLine, maxLineLength, smp.MaxLine)
	}
	if v, ok := f.Raw("line_pacing"); ok {
		b.Pacing = decodePacing(v, f)
	}
	durIn("erase_timeout", &b.EraseTimeout, time.Second, maxLongTimeout)
	durIn("reset_delay", &b.ResetDelay, 0, maxTimeout)
	durIn("reboot_timeout", &b.RebootTimeout, time.Second, maxLongTimeout)
	if v, ok := f.Raw("scan_ports"); ok {
		if err := json.Unmarshal(v, &b.ScanPorts); err != nil {
			f.Add("scan_ports", "want a list of device paths or globs")
		}
		for i, p := range b.ScanPorts {
			if !strings.HasPrefix(p, "/") {
				f.Add(fmt.Sprintf("scan_ports[%d]", i), "%q is not an absolute path", p)
			}
		}
	}
	f.Done(busKeys)
	if f.OK() && b.Port == "" {
		f.Add("port", "missing (the UART the device is on, e.g. /dev/ttyS1)")
	}
	if b.Transport == smp.TransportRaw && f.Has("line_pacing") {
		f.Add("line_pacing", "not used with transport raw (raw packets have no lines)")
	}
	if b.ScanPorts == nil {
		b.ScanPorts = DefaultScanPorts
	}
	return b
}

// decodePacing reads line_pacing: "auto" (the default: the wire time of
// the previous line plus two character times), "none", or a duration added to the wire
// time ("20ms", newtmgr's fixed pause).
func decodePacing(v json.RawMessage, f *jsonfields.Object) time.Duration {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		f.Add("line_pacing", `want "auto", "none" or a duration such as "2ms"`)
		return smp.PacingAuto
	}
	switch s {
	case "auto":
		return smp.PacingAuto
	case "none":
		return smp.PacingNone
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > time.Second {
		f.Add("line_pacing", `bad value %q (want "auto", "none" or a duration above 0 and at most 1s)`, s)
		return smp.PacingAuto
	}
	return d
}

// charTime is the wire time of one character: start, data, parity and
// stop bits.
func (b *Bus) charTime() time.Duration {
	bits := 1 + b.DataBits + b.StopBits
	if b.Parity != "none" {
		bits++
	}
	return time.Duration(bits) * time.Second / time.Duration(b.Baud)
}

// clientOptions are the SMP client settings of the bus.
func (b *Bus) clientOptions() smp.ClientOptions {
	return smp.ClientOptions{Transport: b.Transport, Version: b.Version, Timeout: b.Timeout,
		EraseTimeout: b.EraseTimeout, Retries: b.Retries, LineLength: b.LineLength, CharTime: b.charTime(),
		Pacing: b.Pacing}
}
