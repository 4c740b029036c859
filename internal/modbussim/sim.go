package modbussim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/rawpty"
)

// Options configure a Sim. The zero value serves unit 1 on the wall clock.
type Options struct {
	Units  []byte           // unit ids served (1–247); default {1}
	Now    func() time.Time // clock; default time.Now
	Logger *slog.Logger     // default discards
	Seed   uint64           // seeds random walks and fault draws
	Faults Faults           // initial faults of every unit

	// Baud is the serial line speed used for pacing and frame gaps; default 19200.
	Baud int
	// Pace delays each serial reply by the wire time of the request and
	// of the reply plus t3.5, as a line at Baud would.
	Pace bool
	// FirmwareVersion and FirmwareBoot override the profile's
	// sim.firmware version and boot_time when set.
	FirmwareVersion string
	FirmwareBoot    time.Duration

	// FrameGap is the silence after which a partial serial frame is
	// discarded; default t3.5 at Baud, but at least 5ms (a pty has no timing
	// and user space cannot time 1.75ms reliably).
	FrameGap time.Duration
}

// Sim is a set of simulated Modbus units sharing one profile, and the
// transports that serve them.
type Sim struct {
	profile  *Profile
	opts     Options
	log      *slog.Logger
	start    time.Time
	units    map[byte]*Unit
	ids      []byte
	byName   map[string]int
	byTable  map[Table][]int
	identity *deviceID
	fwCfg    FirmwareSim // of every unit, when the profile has a firmware section

	mu      sync.Mutex
	pending []func(ctx context.Context) error // transports registered for Run
	closers []io.Closer                       // closed when Run ends
	running bool
}

// New builds a simulator for profile p. It starts nothing.
func New(p *Profile, opts Options) (*Sim, error) {
	if p == nil || len(p.Points) == 0 {
		return nil, errors.New("new simulator: profile has no points")
	}
	if len(opts.Units) == 0 {
		opts.Units = []byte{1}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Baud <= 0 {
		opts.Baud = 19200
	}
	if opts.FrameGap <= 0 {
		opts.FrameGap = max(t35(opts.Baud), 5*time.Millisecond)
	}
	s := &Sim{
		profile:  p,
		opts:     opts,
		log:      opts.Logger,
		start:    opts.Now(),
		units:    map[byte]*Unit{},
		byName:   map[string]int{},
		byTable:  map[Table][]int{},
		identity: newDeviceID(p.Sim.Identity, p.Name),
	}
	s.fwCfg = firmwareConfig(p, opts)
	for i, pt := range p.Points {
		s.byName[pt.Name] = i
		s.byTable[pt.Table] = append(s.byTable[pt.Table], i)
	}
	for _, id := range opts.Units {
		if id < 1 || id > 247 {
			return nil, fmt.Errorf("new simulator: unit id %d outside 1..247", id)
		}
		if _, dup := s.units[id]; dup {
			continue
		}
		s.units[id] = newUnit(s, id, s.start)
		s.ids = append(s.ids, id)
	}
	sort.Slice(s.ids, func(i, j int) bool { return s.ids[i] < s.ids[j] })
	return s, nil
}

// firmwareConfig is the profile's sim.firmware with the options' overrides
// and the defaults applied. The version defaults to the identity's
// revision when FC 43 reports it, else DefaultFirmwareVersion.
func firmwareConfig(p *Profile, opts Options) FirmwareSim {
	c := p.Sim.Firmware
	if opts.FirmwareVersion != "" {
		c.Version = opts.FirmwareVersion
	}
	if opts.FirmwareBoot > 0 {
		c.BootTime = opts.FirmwareBoot
	}
	if c.Version == "" {
		c.Version = DefaultFirmwareVersion
		if p.Firmware != nil && p.Firmware.Version.FC43 && p.Sim.Identity.Revision != "" {
			c.Version = p.Sim.Identity.Revision
		}
	}
	return c
}

// Profile returns the profile the simulator serves.
func (s *Sim) Profile() *Profile { return s.profile }

// Units returns the served unit ids in ascending order.
func (s *Sim) Units() []byte { return append([]byte(nil), s.ids...) }

// Unit returns the unit with the given id, or nil if it is not served.
func (s *Sim) Unit(id byte) *Unit { return s.units[id] }

func (s *Sim) now() time.Time { return s.opts.Now() }

func (s *Sim) methods() []*MethodWrite {
	var out []*MethodWrite
	for _, m := range []*MethodWrite{s.profile.Methods.Reboot, s.profile.Methods.FactoryReset} {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

// reply is what a transport should send back, and how.
type reply struct {
	pdu    []byte
	delay  time.Duration
	badCRC bool
}

// dispatch runs one request PDU addressed to unit and decides the reply.
// ok is false when nothing must be sent: unknown unit on a serial line,
// broadcast, rebooting unit, dropped by a fault, or an empty PDU. On TCP
// (gateway true) an unknown unit gets exception 0x0B, as a gateway whose
// target does not answer would reply; 0 and 255 address the only unit when
// exactly one is served.
func (s *Sim) dispatch(unit byte, pdu []byte, gateway bool) (reply, bool) {
	if len(pdu) == 0 {
		return reply{}, false
	}
	if !gateway && unit == 0 { // broadcast: writes only, never a reply [serial line §2.2]
		if isWriteFC(pdu[0]) {
			for _, id := range s.ids {
				u := s.units[id]
				u.mu.Lock()
				if now := s.now(); !now.Before(u.silentUntil) {
					u.handleLocked(now, pdu)
				}
				u.mu.Unlock()
			}
		}
		return reply{}, false
	}
	u := s.units[unit]
	if u == nil && gateway && (unit == 0 || unit == 255) && len(s.ids) == 1 {
		u = s.units[s.ids[0]]
	}
	if u == nil {
		if gateway {
			return reply{pdu: exceptionPDU(pdu[0], GatewayTargetFailed)}, true
		}
		return reply{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.requests++
	now := s.now()
	if now.Before(u.silentUntil) {
		return reply{}, false
	}
	f := u.faults
	if f.Drop > 0 && u.rng.Float64() < f.Drop {
		return reply{}, false
	}
	r := reply{delay: f.Delay, badCRC: f.BadCRC > 0 && u.rng.Float64() < f.BadCRC}
	if f.Exception != 0 {
		r.pdu = exceptionPDU(pdu[0], f.Exception)
	} else {
		r.pdu = u.handleLocked(now, pdu)
	}
	return r, true
}

// ListenTCP binds a Modbus TCP listener now (so the actual port is known)
// and registers it to be served by Run.
func (s *Sim) ListenTCP(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for modbus tcp on %s: %w", addr, err)
	}
	s.register(func(ctx context.Context) error { return s.ServeTCP(ctx, ln) }, ln)
	return ln.Addr(), nil
}

// OpenPTY opens a pseudo-terminal pair, registers its master side to be
// served by Run with framing f, and returns the slave device path clients
// open. Run closes it.
func (s *Sim) OpenPTY(f Framing) (string, error) {
	pt, err := rawpty.Open()
	if err != nil {
		return "", err
	}
	s.register(func(ctx context.Context) error { return s.ServeSerial(ctx, pt.Master, f) }, pt)
	return pt.Path, nil
}

// AttachSerial registers rw (a serial port, one end of a pipe) to be
// served by Run with framing f. See ServeSerial for how it stops.
func (s *Sim) AttachSerial(rw io.ReadWriter, f Framing) {
	s.register(func(ctx context.Context) error { return s.ServeSerial(ctx, rw, f) }, nil)
}

func (s *Sim) register(serve func(context.Context) error, c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, serve)
	if c != nil {
		s.closers = append(s.closers, c)
	}
}

// Close releases the listeners and pseudo-terminals registered for a Run
// that will not happen. Run releases them itself.
func (s *Sim) Close() error {
	s.mu.Lock()
	closers := s.closers
	s.closers, s.pending = nil, nil
	s.mu.Unlock()
	var errs []error
	for _, c := range closers {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run serves every registered transport until ctx ends (then it returns
// nil) or one of them fails (then it stops the others and returns that
// error). It may be called once.
func (s *Sim) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("run simulator: already running")
	}
	s.running = true
	serves, closers := s.pending, s.closers
	s.pending, s.closers = nil, nil
	s.mu.Unlock()
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	if len(serves) == 0 {
		return errors.New("run simulator: no transport registered (ListenTCP, OpenPTY or AttachSerial)")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(serves))
	for _, serve := range serves {
		go func() { errs <- serve(ctx) }()
	}
	var first error
	for range serves {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
