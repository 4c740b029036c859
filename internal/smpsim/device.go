package smpsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/rawpty"
)

// Counters are what the device saw and did, for tests and the bench.
type Counters struct {
	RxBytes      int // bytes received while up
	Lines        int // lines received (base64 transport), SMP or text
	LinesDropped int // lines lost because no line buffer was free
	LinesTooLong int // lines longer than LineSize, discarded
	TextLines    int // lines without an SMP marker (console input), ignored
	FramesBad    int // frames discarded: CRC, base64, length, broken sequence
	FramesTooBig int // frames announcing more than BufSize−4 bytes, dropped
	PacketsLost  int // complete requests dropped because every netbuf was busy
	Requests     int // requests handled (answered or not)
	Ignored      int // packets that were not requests (responses, bad headers)
	Errors       int // error answers sent
	Responses    int // answers written to the UART
	TxBytes      int // bytes written to the UART, log lines included
	LogLines     int // console/log lines written

	// TxLate sums how late the transmitter's timer put bytes on the line
	// after their wire time (scheduling delay on the machine running the
	// simulator); HostGap sums the silences between an answer's last
	// byte and the host's next line. Benchmarks use them to split lost
	// throughput between device, host and machine.
	TxLate  time.Duration
	HostGap time.Duration

	FaultDrops    int // requests ignored and answers withheld by fault injection
	FaultCorrupts int // answers corrupted by fault injection

	Resets       int // reboots: reset commands and power cuts
	PowerCuts    int // reboots without an answer (fault or PowerCut)
	Boots        int // completed boots (the device answers again after each)
	Reverts      int // MCUboot reverts (unconfirmed or crashing images)
	BootFailures int // images that crashed before confirming

	UploadStarts   int    // uploads begun at offset 0
	UploadResumes  int    // off=0 requests that resumed a session (same len and sha)
	UploadChunks   int    // chunks written
	UploadBytes    int    // image bytes written to flash
	OffsetReplies  int    // chunks at an unexpected offset, answered with the expected one
	UploadsDone    int    // uploads completed into the secondary slot
	LastUploadFrom uint32 // offset at which the last session's first data landed (resume point)

	SettingsWrites int // settings writes accepted
	SettingsSaves  int // settings saves
	StorageErases  int // Zephyr basic storage erases
}

// Device is one simulated SMP microcontroller. New builds it; OpenPTY
// and Run (or Serve) put it on a line. Its methods are safe for
// concurrent use.
type Device struct {
	cfg Config
	log *slog.Logger

	pty *rawpty.Pair // set by OpenPTY

	reboot chan chan struct{} // PowerCut requests for the worker

	mu        sync.Mutex
	c         Counters
	changed   chan struct{} // closed and replaced when counters move
	faults    Faults
	serving   bool // a Serve call runs
	up        bool // the application runs and listens
	epoch     int  // boots so far: output queued before a reboot is dropped
	bootAt    time.Time
	flash     flash
	up1       upload
	settings  map[string][]byte // RAM values
	stored    map[string][]byte // persisted values (storage partition)
	defs      map[string]Setting
	rtcOffset time.Duration
	answers   int       // answers computed, for the periodic faults
	answered  time.Time // when the last answer's last byte went out (HostGap)
}

// New builds a device from cfg (defaults applied, then checked).
func New(cfg Config) (*Device, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	v, _ := mcuboot.ParseVersion(cfg.ImageVersion)
	file := BuildImage(v, cfg.ImageSize, false)
	img, err := mcuboot.Parse(file)
	if err != nil {
		return nil, fmt.Errorf("smpsim: build the initial image: %w", err)
	}
	d := &Device{
		cfg:      cfg,
		log:      cfg.Logger,
		reboot:   make(chan chan struct{}),
		changed:  make(chan struct{}),
		faults:   cfg.Faults,
		settings: map[string][]byte{},
		stored:   map[string][]byte{},
		defs:     map[string]Setting{},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("device", cfg.Name)
	d.flash = flash{primary: slot{data: file, img: img}, confirmed: true}
	d.setFailBoot(cfg.Faults.FailBoot)
	for _, s := range cfg.Settings {
		d.defs[s.Name] = s
	}
	d.loadSettings()
	return d, nil
}

func (d *Device) setFailBoot(vs []string) {
	d.flash.failBoot = d.flash.failBoot[:0]
	for _, s := range vs {
		if v, err := mcuboot.ParseVersion(s); err == nil {
			d.flash.failBoot = append(d.flash.failBoot, v)
		}
	}
}

// loadSettings sets the RAM values from storage, defaults where storage
// has nothing (what settings_load does at boot). d.mu held or not shared.
func (d *Device) loadSettings() {
	clear(d.settings)
	for name, s := range d.defs {
		d.settings[name] = bytes.Clone(s.Default)
	}
	for name, v := range d.stored {
		d.settings[name] = bytes.Clone(v)
	}
}

// Config returns the device's configuration, defaults applied.
func (d *Device) Config() Config { return d.cfg }

// Counters returns a snapshot of the counters.
func (d *Device) Counters() Counters {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

// count changes counters under d.mu and wakes Wait.
func (d *Device) count(f func(c *Counters)) {
	d.mu.Lock()
	f(&d.c)
	d.bumpLocked()
	d.mu.Unlock()
}

func (d *Device) bumpLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Wait blocks until cond holds for the counters (checked at once and after
// every change) or ctx ends.
func (d *Device) Wait(ctx context.Context, cond func(Counters) bool) error {
	for {
		d.mu.Lock()
		c, ch := d.c, d.changed
		d.mu.Unlock()
		if cond(c) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("smpsim: wait for counters (now %+v): %w", c, ctx.Err())
		}
	}
}

// Faults returns the faults now in effect (what is left of the budgets).
func (d *Device) Faults() Faults {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

// SetFaults replaces the injected faults.
func (d *Device) SetFaults(f Faults) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = f
	d.setFailBoot(f.FailBoot)
}

// UpdateFaults changes the injected faults in place.
func (d *Device) UpdateFaults(fn func(f *Faults)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(&d.faults)
	d.setFailBoot(d.faults.FailBoot)
}

// ImageInfo is one slot as the device's image list shows it.
type ImageInfo struct {
	Slot                                  int
	Version                               string
	Hash                                  []byte
	Active, Confirmed, Pending, Permanent bool
}

// Images returns the image list as the device would answer it.
func (d *Device) Images() []ImageInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []ImageInfo
	for _, e := range d.flash.list() {
		out = append(out, ImageInfo{Slot: e.slot, Version: e.img.Version.String(), Hash: bytes.Clone(e.img.Hash),
			Active: e.active, Confirmed: e.confirmed, Pending: e.pending, Permanent: e.permanent})
	}
	return out
}

// Setting returns a setting's value in RAM and in storage (nil when not
// stored).
func (d *Device) Setting(name string) (ram, stored []byte, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.settings[name]
	return bytes.Clone(v), bytes.Clone(d.stored[name]), ok
}

// Up reports whether the application runs (false while rebooting).
func (d *Device) Up() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.up
}

// ErrNotServing is returned by PowerCut when no Serve loop runs.
var ErrNotServing = errors.New("smpsim: device is not serving")

// PowerCut reboots the device at once, as a brown-out would: nothing is
// answered, the upload state is lost. It returns when the reboot has begun
// (await Counters.Boots for its end).
func (d *Device) PowerCut(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case d.reboot <- done:
	case <-ctx.Done():
		return fmt.Errorf("smpsim: power cut: %w", ErrNotServing)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("smpsim: power cut: %w", ctx.Err())
	}
}
