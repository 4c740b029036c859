// Package host runs and supervises the gateway's protocol plugins.
//
// Each configured plugin is an executable drover-plugin-<name> in
// plugins.dir, started with hashicorp/go-plugin over gRPC with automatic
// mutual TLS. The Host restarts a plugin that crashes (the connection
// breaks) or hangs (its health ping times out) with exponential backoff and
// jitter, forwards the plugin's structured stderr logs into the gateway's
// slog logger with plugin=<name>, and reports every state change. On Linux
// a plugin is started with a parent-death signal, so it dies with the
// gateway even when the gateway is killed (see dieWithGateway).
//
// Callers talk to a plugin through the Handle that Host.Plugin returns. The
// handle survives restarts: it remembers every successful OpenBus and
// Attach (minus CloseBus and Detach) and replays them, buses first, into a
// restarted process before reporting it up. So a restart is invisible to
// callers except for the calls that were in flight when the process died,
// which fail with plugins.CodeUnavailable, as does every call made while the
// plugin is not up.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Defaults for Options.
const (
	DefaultStartTimeout = 10 * time.Second
	DefaultBackoffMin   = 500 * time.Millisecond
	DefaultBackoffMax   = 30 * time.Second
	DefaultPingInterval = 5 * time.Second
	DefaultPingTimeout  = 3 * time.Second
)

// Options configure a Host. Zero durations take the defaults above.
type Options struct {
	Dir     string   // plugins.dir: holds the executables drover-plugin-<name>
	Plugins []string // names of the plugins to run (those the buses use)
	Logger  *slog.Logger

	StartTimeout time.Duration // handshake, and Describe, and each replayed call
	BackoffMin   time.Duration // first restart delay
	BackoffMax   time.Duration // restart delay cap; a plugin up this long resets the backoff
	PingInterval time.Duration // how often a running plugin is pinged
	PingTimeout  time.Duration // a ping slower than this means the plugin hangs
}

func (o *Options) applyDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = DefaultPingTimeout
	}
}

// State is where a plugin is in its life.
type State int

// Plugin states. A plugin moves stopped → starting → up → down → starting
// → up … and back to stopped when Run returns.
const (
	StateStopped  State = iota // Run is not running it
	StateStarting              // process starting, handshake, Describe, replay
	StateUp                    // calls go through
	StateDown                  // crashed, hung or failed to start; waiting to restart
)

var stateNames = [...]string{"stopped", "starting", "up", "down"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Event reports a state change of one plugin.
type Event struct {
	Plugin     string
	State      State
	Generation uint64 // counts start attempts; the same from starting to the next down
	Version    string // Describe().Version, when up
	Err        error  // why the plugin is down (exit status, ping timeout, start failure)
	// Replay lists the buses and devices that could not be re-opened or
	// re-attached after a restart (State up). They stay remembered and are
	// tried again after the next restart.
	Replay []ReplayError
}

// ReplayError is one OpenBus or Attach that failed when replayed into a
// restarted plugin. Exactly one of Bus and Device is set.
type ReplayError struct {
	Bus    string
	Device string
	Err    error
}

// Status is a snapshot of one plugin, for status reporting.
type Status struct {
	Name       string
	State      State
	Generation uint64
	Version    string // Describe().Version of the running process
	PID        int
	Restarts   int       // starts after the first
	Since      time.Time // when State was entered
	LastError  string    // why it last went down, "" if never
	Buses      int       // buses remembered for replay
	Devices    int       // devices remembered for replay
}

// Host supervises a fixed set of plugins. Build it with New, then call Run.
type Host struct {
	opts    Options
	log     *slog.Logger
	handles map[string]*Handle
	order   []string

	mu      sync.Mutex
	subs    []func(Event)
	running bool
}

// New checks opts and prepares a handle per plugin; it starts nothing.
func New(opts Options) (*Host, error) {
	opts.applyDefaults()
	if opts.Dir == "" {
		return nil, errors.New("new plugin host: plugins dir is empty")
	}
	h := &Host{opts: opts, log: opts.Logger, handles: make(map[string]*Handle)}
	for _, name := range opts.Plugins {
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("new plugin host: invalid plugin name %q", name)
		}
		if _, dup := h.handles[name]; dup {
			return nil, fmt.Errorf("new plugin host: plugin %q listed twice", name)
		}
		h.handles[name] = newHandle(h, name)
		h.order = append(h.order, name)
	}
	return h, nil
}

// OnState registers fn to be called on every state change of every plugin.
// Calls are made one at a time, in order, from the plugin's supervisor
// goroutine: fn must return quickly (hand work to another goroutine), and
// may call the handles. Register before Run to see the first start.
func (h *Host) OnState(fn func(Event)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs = append(h.subs, fn)
}

func (h *Host) emit(ev Event) {
	h.mu.Lock()
	subs := slices.Clone(h.subs)
	h.mu.Unlock()
	for _, fn := range subs {
		fn(ev)
	}
}

// Plugin returns the handle of a configured plugin. The handle is valid
// before, during and after Run; calls fail with plugins.CodeUnavailable
// while the plugin is not up.
func (h *Host) Plugin(name string) (*Handle, error) {
	p, ok := h.handles[name]
	if !ok {
		return nil, plugins.Errorf(plugins.CodeNotFound, "plugin %q is not configured", name)
	}
	return p, nil
}

// Status returns a snapshot of every plugin, in configuration order.
func (h *Host) Status() []Status {
	out := make([]Status, 0, len(h.order))
	for _, name := range h.order {
		out = append(out, h.handles[name].status())
	}
	return out
}

// Run starts every plugin and keeps it running until ctx ends, then stops
// them all and returns nil once every process has exited. It returns an
// error only if called twice.
func (h *Host) Run(ctx context.Context) error {
	h.mu.Lock()
	if h.running {
		h.mu.Unlock()
		return errors.New("run plugin host: already running")
	}
	h.running = true
	h.mu.Unlock()

	var wg sync.WaitGroup
	for _, name := range h.order {
		p := h.handles[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.supervise(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// backoff returns the delay before restart attempt n (0-based): min·2ⁿ
// capped at max, of which the upper half is random ("equal jitter") so
// plugins that died together do not restart in lockstep. r is in [0, 1).
func backoff(n int, min, max time.Duration, r float64) time.Duration {
	d := max
	if n < 32 {
		if m := min << n; m > 0 && m < max {
			d = m
		}
	}
	half := d / 2
	return half + time.Duration(r*float64(d-half))
}

func jitter() float64 { return rand.Float64() } //nolint:gosec // jitter, not security
