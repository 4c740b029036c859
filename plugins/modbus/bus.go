package modbus

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

// Mode is the Modbus transmission mode of a bus.
type Mode string

// Transmission modes.
const (
	ModeRTU   Mode = "rtu"
	ModeASCII Mode = "ascii"
	ModeTCP   Mode = "tcp"
)

var modes = []Mode{ModeRTU, ModeASCII, ModeTCP}

// Parity of a serial line.
type Parity string

// Parities.
const (
	ParityNone Parity = "none"
	ParityEven Parity = "even"
	ParityOdd  Parity = "odd"
)

var parities = []Parity{ParityNone, ParityEven, ParityOdd}

// Bus defaults.
const (
	DefaultBaud    = 19200
	DefaultTimeout = time.Second
	DefaultRetries = 1
	maxRetries     = 10
	maxTimeout     = time.Minute
)

// bauds are the rates the serial library can set.
var bauds = []int{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

// Bus is a decoded bus entry.
type Bus struct {
	Mode     Mode
	Port     string // rtu/ascii: serial device path
	Baud     int
	DataBits int // default 8 (rtu), 7 (ascii)
	Parity   Parity
	StopBits int
	Address  string        // tcp: host:port
	Timeout  time.Duration // per transaction attempt
	Retries  int           // extra attempts after a timeout or garbled reply
}

var (
	busKeys    = []string{"mode", "port", "baud", "data_bits", "parity", "stop_bits", "address", "timeout", "retries"}
	serialKeys = []string{"port", "baud", "data_bits", "parity", "stop_bits"}
)

// ParseBus decodes, defaults and validates a bus entry. The keys name and
// plugin (the gateway's own) are accepted and ignored.
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
	add := func(path, f string, a ...any) {
		*errs = append(*errs, plugins.FieldError{Path: path, Message: fmt.Sprintf(f, a...)})
	}
	b := &Bus{Baud: DefaultBaud, Parity: ParityEven, StopBits: 1, Timeout: DefaultTimeout, Retries: DefaultRetries}
	o := jsonfields.Open(raw, "", errs)
	o.Skip("name", "plugin")
	var s string
	if o.Str("mode", &s) {
		b.Mode = Mode(s)
	}
	o.Str("port", &b.Port)
	o.Int("baud", &b.Baud)
	o.Int("data_bits", &b.DataBits)
	if o.Str("parity", &s) {
		b.Parity = Parity(s)
	}
	o.Int("stop_bits", &b.StopBits)
	o.Str("address", &b.Address)
	if o.Duration("timeout", &b.Timeout) && (b.Timeout <= 0 || b.Timeout > maxTimeout) {
		add("timeout", "%s out of range (want more than 0 and at most %s)", b.Timeout, maxTimeout)
	}
	if o.Int("retries", &b.Retries) && (b.Retries < 0 || b.Retries > maxRetries) {
		add("retries", "%d out of range 0..%d", b.Retries, maxRetries)
	}
	o.Done(busKeys)
	if !o.OK() {
		return b
	}
	switch {
	case b.Mode == "":
		add("mode", "missing (want one of %s)", oneOf(modes))
	case !slices.Contains(modes, b.Mode):
		add("mode", "unknown mode %q (want one of %s)", b.Mode, oneOf(modes))
	case b.Mode == ModeTCP:
		for _, k := range serialKeys {
			if o.Has(k) {
				add(k, "not used with mode tcp")
			}
		}
		if b.Address == "" {
			add("address", "missing (want host:port)")
		} else if host, port, err := net.SplitHostPort(b.Address); err != nil || host == "" {
			add("address", "bad address %q (want host:port)", b.Address)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			add("address", "bad port %q in %q", port, b.Address)
		}
	default: // serial
		if o.Has("address") {
			add("address", "not used with mode %s (serial lines use port)", b.Mode)
		}
		if b.Port == "" {
			add("port", "missing (the serial device, e.g. /dev/ttyUSB0)")
		}
		if !slices.Contains(bauds, b.Baud) {
			add("baud", "unsupported baud rate %d (want one of %v)", b.Baud, bauds)
		}
		if b.DataBits == 0 {
			b.DataBits = 8
			if b.Mode == ModeASCII {
				b.DataBits = 7
			}
		}
		if b.Mode == ModeRTU && b.DataBits != 8 {
			add("data_bits", "rtu needs 8 data bits, got %d", b.DataBits)
		} else if b.DataBits != 7 && b.DataBits != 8 {
			add("data_bits", "%d not supported (want 7 or 8)", b.DataBits)
		}
		if !slices.Contains(parities, b.Parity) {
			add("parity", "unknown parity %q (want one of %s)", b.Parity, oneOf(parities))
		}
		if b.StopBits != 1 && b.StopBits != 2 {
			add("stop_bits", "%d not supported (want 1 or 2)", b.StopBits)
		}
	}
	return b
}

// charTime is the time one character takes on the line: start bit, data
// bits, parity bit and stop bits (11 bits for the spec's 8E1).
func (b *Bus) charTime() time.Duration {
	return time.Duration(b.bitsPerChar()) * time.Second / time.Duration(b.Baud)
}

func (b *Bus) bitsPerChar() int {
	bits := 1 + b.DataBits + b.StopBits
	if b.Parity != ParityNone {
		bits++
	}
	return bits
}

// interFrameGap is t3.5: 3.5 character times up to 19200 baud, 1.75 ms above
// (Modbus over Serial Line V1.02, 2.5.1.1).
func (b *Bus) interFrameGap() time.Duration {
	if b.Mode != ModeRTU {
		return 0 // ASCII frames are delimited by ':' and CRLF
	}
	if b.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(b.bitsPerChar()) * 7 * time.Second / time.Duration(2*b.Baud)
}

// oneOf lists vals for a "want one of" message.
func oneOf[T ~string](vals []T) string {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
