package smpsim

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
)

// VersionMode is how the device treats the SMP version in request headers.
type VersionMode string

// Version modes.
const (
	// V2 is a current Zephyr server: v2 requests are answered in v2 (group
	// errors as {"err": {...}}), v1 requests in v1 with group errors
	// translated to legacy rc values.
	V2 VersionMode = "v2"
	// V1 is an old server whose header has no version field: it answers
	// every request, v2 ones included, in v1 style.
	V1 VersionMode = "v1"
	// V1Strict is a v1-only server that refuses a v2 header with rc 13
	// (MGMT_ERR_UNSUPPORTED_TOO_NEW), as Zephyr's smp.c does for a version
	// it does not know.
	V1Strict VersionMode = "v1-strict"
)

// Transport is how packets travel on the UART.
type Transport string

// Transports [SMP transport: UART/serial].
const (
	Base64 Transport = "base64" // console framing: 0x06 0x09 / 0x04 0x14 lines, shares the UART with logs
	Raw    Transport = "raw"    // bare packets framed by the header length; no logs on the UART
)

// Setting is one named value of the settings subsystem, stored as the
// firmware stores it (typed bytes: a uint32 is 4 little-endian bytes).
type Setting struct {
	Name    string
	Default []byte
	// Size, when not 0, is the only length a write may have (a typed value).
	Size int
}

// Faults are injected misbehaviours. Counts are one-shot budgets: each
// affected frame uses one up. Set them in Config or at run time with
// Device.SetFaults.
type Faults struct {
	DropRequests     int // complete request frames the device ignores, as if lost on the line
	DropResponses    int // responses the device computes (state changes!) but never sends
	CorruptResponses int // responses sent with a wrong CRC (raw: a flipped sequence number)
	// DropEvery and CorruptEvery, when not 0, lose or corrupt every Nth
	// answer for as long as they are set (a noisy line).
	DropEvery, CorruptEvery int
	// ResetAtOffset, when not 0, cuts the power once an upload has
	// accepted at least this many bytes: the chunk is not answered, the
	// device reboots, the upload state (RAM) is lost. One-shot.
	ResetAtOffset uint32
	EraseDelay    time.Duration // the first chunk of an upload waits this long (the slot erase)
	WriteDelay    time.Duration // every upload chunk waits this long (the flash write)
	RefuseReset   bool          // OS reset answers EBUSY unless "force" is set
	// FailBoot lists image versions ("1.2.3") that crash before they can
	// confirm themselves: MCUboot reverts on the following boot. An image
	// whose body holds BadImageMarker fails the same way.
	FailBoot []string
}

// Config describes one simulated device. The zero value of a field takes
// the default named in its comment; durations use 0 for the default and a
// negative value for none.
type Config struct {
	Name      string      // node name in OS info and logs; default "drover-mcu"
	Transport Transport   // default Base64
	Version   VersionMode // default V2
	// BufSize is MCUMGR_TRANSPORT_NETBUF_SIZE, reported by params: a
	// request packet over BufSize−4 bytes (length and CRC share the
	// buffer) is dropped. Default 384.
	BufSize  int
	BufCount int // netbufs: requests queued before more are dropped; default 4
	// LinePool is UART_MCUMGR_RX_BUF_COUNT: line buffers for lines being
	// received or waiting to be decoded. A line whose first byte finds no
	// free buffer is dropped. Default 2.
	LinePool int
	LineSize int // UART_MCUMGR_RX_BUF_SIZE, '\n' included: longer lines are discarded; default 128
	// LineDecode is the time the device takes to decode one line once it
	// has arrived; a line holds its buffer until then. Default none (0).
	LineDecode time.Duration
	// Baud paces both directions at 10 bits per byte; 0 = unpaced.
	Baud int
	// RawTimeout flushes a partial raw packet after this much silence
	// (CONFIG_MCUMGR_TRANSPORT_RAW_UART_INPUT_TIMEOUT); default 100ms.
	RawTimeout time.Duration
	// Turnaround is the processing time of every request; default none.
	Turnaround time.Duration
	// LegacyRC adds "rc": 0 to successful answers
	// (CONFIG_MCUMGR_SMP_LEGACY_RC_BEHAVIOUR).
	LegacyRC bool
	// TerseErrors leaves "rsn" out of error answers (a build without
	// CONFIG_MCUMGR_SMP_VERBOSE_ERR_RESPONSE).
	TerseErrors bool

	ImageVersion string // version of the image in the primary slot at start; default "1.0.0"
	ImageSize    int    // body size of that image; default 4096
	SlotSize     int    // size of each image slot; default 512 KiB

	// ResetDelay is how long the device keeps running after answering a
	// reset (CONFIG_MCUMGR_GRP_OS_RESET_MS); default 50ms.
	ResetDelay time.Duration
	// ResetSilence is how long a reboot keeps the UART silent before the
	// bootloader's banner; default 300ms.
	ResetSilence time.Duration
	// LogInterval spaces the application's periodic log lines; default 1s.
	// Raw transport devices never log on the UART.
	LogInterval time.Duration
	// InterleaveLogs lets a log line fall between the lines of a
	// multi-line SMP frame, as an unsynchronised log backend may.
	InterleaveLogs bool

	Settings []Setting // default DefaultSettings()
	Faults   Faults
	Logger   *slog.Logger // the simulator's own diagnostics; default discard
}

// Defaults of Config.
const (
	DefaultBufSize  = 384
	DefaultBufCount = 4
	DefaultLinePool = 2
	DefaultLineSize = 128
	DefaultSlotSize = 512 << 10
)

// DefaultSettings are the settings of the default device: an application
// with a sampling interval in seconds (int32), an alarm threshold (int16),
// a name (string) and an LED switch (bool, one byte).
func DefaultSettings() []Setting {
	return []Setting{
		{Name: "app/interval", Default: binary.LittleEndian.AppendUint32(nil, 10), Size: 4},
		{Name: "app/threshold", Default: binary.LittleEndian.AppendUint16(nil, 250), Size: 2},
		{Name: "app/name", Default: []byte("mcu")},
		{Name: "app/led", Default: []byte{0}, Size: 1},
	}
}

// maxSettingLen bounds a variable-length setting value.
const maxSettingLen = 64

func (c *Config) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			*d = 0
		}
	}
	if c.Name == "" {
		c.Name = "drover-mcu"
	}
	if c.Transport == "" {
		c.Transport = Base64
	}
	if c.Version == "" {
		c.Version = V2
	}
	if c.BufSize == 0 {
		c.BufSize = DefaultBufSize
	}
	if c.BufCount == 0 {
		c.BufCount = DefaultBufCount
	}
	if c.LinePool == 0 {
		c.LinePool = DefaultLinePool
	}
	if c.LineSize == 0 {
		c.LineSize = DefaultLineSize
	}
	if c.LineDecode < 0 {
		c.LineDecode = 0
	}
	if c.Turnaround < 0 {
		c.Turnaround = 0
	}
	def(&c.RawTimeout, 100*time.Millisecond)
	def(&c.ResetDelay, 50*time.Millisecond)
	def(&c.ResetSilence, 300*time.Millisecond)
	def(&c.LogInterval, time.Second)
	if c.ImageVersion == "" {
		c.ImageVersion = "1.0.0"
	}
	if c.ImageSize == 0 {
		c.ImageSize = 4096
	}
	if c.SlotSize == 0 {
		c.SlotSize = DefaultSlotSize
	}
	if c.Settings == nil {
		c.Settings = DefaultSettings()
	}
}

func (c *Config) validate() error {
	switch c.Transport {
	case Base64, Raw:
	default:
		return fmt.Errorf("smpsim config: transport %q: want base64 or raw", c.Transport)
	}
	switch c.Version {
	case V2, V1, V1Strict:
	default:
		return fmt.Errorf("smpsim config: version mode %q: want v2, v1 or v1-strict", c.Version)
	}
	if c.BufSize < 64 || c.BufSize > 0xFFFF {
		return fmt.Errorf("smpsim config: buffer size %d outside 64..65535", c.BufSize)
	}
	if c.LinePool < 1 || c.BufCount < 1 {
		return fmt.Errorf("smpsim config: line pool %d and buffer count %d must be at least 1", c.LinePool, c.BufCount)
	}
	if c.LineSize < 8 {
		return fmt.Errorf("smpsim config: line size %d below 8", c.LineSize)
	}
	if c.Baud < 0 {
		return fmt.Errorf("smpsim config: baud %d is negative", c.Baud)
	}
	if _, err := mcuboot.ParseVersion(c.ImageVersion); err != nil {
		return fmt.Errorf("smpsim config: image version: %w", err)
	}
	for _, v := range c.Faults.FailBoot {
		if _, err := mcuboot.ParseVersion(v); err != nil {
			return fmt.Errorf("smpsim config: fail-boot version: %w", err)
		}
	}
	if c.ImageSize < 0 || c.SlotSize < c.ImageSize+mcuboot.HeaderSize+64 {
		return fmt.Errorf("smpsim config: image of %d bytes does not fit a %d-byte slot", c.ImageSize, c.SlotSize)
	}
	seen := map[string]bool{}
	for _, s := range c.Settings {
		if s.Name == "" || seen[s.Name] {
			return fmt.Errorf("smpsim config: setting name %q empty or repeated", s.Name)
		}
		seen[s.Name] = true
		if s.Size != 0 && len(s.Default) != s.Size {
			return fmt.Errorf("smpsim config: setting %q: default of %d bytes, size %d", s.Name, len(s.Default), s.Size)
		}
	}
	return nil
}
