package bridges

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/plugins"
)

// Defaults for Options.
const (
	DefaultPoll          = 5 * time.Second
	DefaultCallTimeout   = 10 * time.Second
	DefaultRebootProbe   = 2 * time.Second
	DefaultRebootTimeout = 2 * time.Minute
	DefaultDesiredRetry  = 30 * time.Second
)

// ErrUnknownDevice is returned, wrapped, for a device id that was not added.
var ErrUnknownDevice = errors.New("unknown device")

// Options configure a Bridges. Zero durations take the defaults above.
type Options struct {
	// Plugins resolves a plugin by name (the host's handles); see PluginMap.
	Plugins func(name string) (plugins.Plugin, error)
	Sink    Sink
	Logger  *slog.Logger // default: discard
	Clock   clock.Clock  // default: clock.Real
	// Breaker configures every bus's per-device circuit breaker.
	Breaker bus.Policy

	DefaultPoll   time.Duration // poll interval of points when neither point nor device sets one
	CallTimeout   time.Duration // bound on one plugin call (on top of the plugin's own bus timeout)
	RebootProbe   time.Duration // pause between probes while a rebooted device is silent
	RebootTimeout time.Duration // a rebooted device silent this long is reported failed
	DesiredRetry  time.Duration // retry of a desired config that failed for a transient reason (without SubmitConfig)

	// SubmitConfig, when set, takes the running of desired config writes
	// off the devices' pollers: Desired calls it for every version that has
	// writes to do (from Desired's goroutine, holding no lock) and no
	// longer writes it by itself; the caller runs the writes with
	// ApplyConfig, when and as often as it decides (the gateway: as a
	// durable job with retries). When it returns an error the poller
	// writes that version itself after all. Unset, the poller writes at
	// once and retries transient failures after DesiredRetry.
	SubmitConfig func(deviceID string, version int64, config map[string]any) error
}

func (o *Options) applyDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Sink == nil {
		o.Sink = nopSink{}
	}
	if o.Plugins == nil {
		o.Plugins = PluginMap(nil)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DefaultPoll, DefaultPoll)
	def(&o.CallTimeout, DefaultCallTimeout)
	def(&o.RebootProbe, DefaultRebootProbe)
	def(&o.RebootTimeout, DefaultRebootTimeout)
	def(&o.DesiredRetry, DefaultDesiredRetry)
}

type nopSink struct{}

func (nopSink) Reported(string, map[string]any)             {}
func (nopSink) Telemetry(string, map[string]any, time.Time) {}

// PluginMap adapts a fixed map for Options.Plugins.
func PluginMap(m map[string]plugins.Plugin) func(string) (plugins.Plugin, error) {
	return func(name string) (plugins.Plugin, error) {
		if p, ok := m[name]; ok {
			return p, nil
		}
		return nil, fmt.Errorf("no plugin %q", name)
	}
}

// Bridges runs the bridge of every added device: one scheduler per bus, one
// poller goroutine per device. Its methods are safe for concurrent use.
type Bridges struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	devices  map[string]*device
	buses    map[string]*bus.Scheduler
	runCtx   context.Context // set while Run runs
	stopping bool            // Run is waiting for the pollers; start no more
	wg       sync.WaitGroup

	cycleDone func(deviceID string, at time.Time) // test hook: a poll cycle due at `at` finished
}

// New returns a Bridges; nothing runs until Run.
func New(opts Options) *Bridges {
	opts.applyDefaults()
	return &Bridges{
		opts: opts, log: opts.Logger,
		devices: make(map[string]*device), buses: make(map[string]*bus.Scheduler),
	}
}

// Add registers a device served by the named plugin. The device must
// already be attached to the plugin (the host does that and re-attaches
// after a plugin restart); Add only starts bridging it: at once when Run is
// running, else when Run starts. When spec.Capabilities is nil, Add asks
// the plugin's Describe under ctx (a plugin that cannot answer is assumed
// to support everything; its calls then fail with CodeUnsupported).
func (b *Bridges) Add(ctx context.Context, spec DeviceSpec, pluginName string) error {
	spec.Points = slices.Clone(spec.Points)
	spec.Methods = cloneMethods(spec.Methods)
	if err := spec.validate(); err != nil {
		return fmt.Errorf("add device %q: %w", spec.ID, err)
	}
	p, err := b.opts.Plugins(pluginName)
	if err != nil {
		return fmt.Errorf("add device %s: plugin %s: %w", spec.ID, pluginName, err)
	}
	log := b.log.With("device", spec.ID, "bus", spec.Bus, "plugin", pluginName)
	if spec.Capabilities == nil {
		if desc, err := p.Describe(ctx); err != nil {
			log.Warn("describe failed; assuming every capability", "error", err)
		} else {
			spec.Capabilities = desc.Capabilities
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.devices[spec.ID]; dup {
		return fmt.Errorf("add device %s: already added", spec.ID)
	}
	s, ok := b.buses[spec.Bus]
	if !ok {
		s = bus.New(bus.Options{Name: spec.Bus, Policy: b.opts.Breaker, Now: b.opts.Clock.Now})
		b.buses[spec.Bus] = s
	}
	d := newDevice(b, spec, pluginName, p, s, log)
	b.devices[spec.ID] = d
	if b.runCtx != nil && !b.stopping {
		b.startLocked(d)
	}
	return nil
}

// startLocked starts d's poller; the caller holds b.mu.
func (b *Bridges) startLocked(d *device) {
	ctx, cancel := context.WithCancel(b.runCtx)
	d.cancel, d.done = cancel, make(chan struct{})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(d.done)
		d.run(ctx)
	}()
}

// Remove stops bridging a device and waits for its poller to stop (plugin
// calls are cancelled through their ctx); once Remove returns, no Sink call
// about the device starts. It does not detach the device from its plugin.
// Removing an unknown id does nothing.
func (b *Bridges) Remove(deviceID string) {
	b.mu.Lock()
	d, ok := b.devices[deviceID]
	delete(b.devices, deviceID)
	var cancel context.CancelFunc
	var done chan struct{}
	if ok {
		cancel, done = d.cancel, d.done
	}
	b.mu.Unlock()
	if !ok {
		return
	}
	d.emitMu.Lock()
	d.removed = true
	d.emitMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	d.sched.Forget(deviceID)
}

// Run runs every device's poller until ctx ends, then waits for all of
// them to stop and returns nil. Devices added while it runs start at once.
// Run may be called again after it returned; calling it twice at once is
// an error.
func (b *Bridges) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.runCtx != nil {
		b.mu.Unlock()
		return errors.New("bridges: already running")
	}
	b.runCtx = ctx
	for _, d := range b.devices {
		b.startLocked(d)
	}
	b.mu.Unlock()

	<-ctx.Done()

	b.mu.Lock()
	b.stopping = true // no wg.Add after this point
	b.mu.Unlock()
	b.wg.Wait()
	b.mu.Lock()
	b.runCtx, b.stopping = nil, false
	for _, d := range b.devices {
		d.cancel, d.done = nil, nil
	}
	b.mu.Unlock()
	return nil
}

// device returns the device with id, or nil.
func (b *Bridges) device(id string) *device {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.devices[id]
}

// PluginState tells the bridges that a plugin went down (up false) or came
// back (up true). Devices of a down plugin report connection.state
// "plugin-down", stop polling, and answer methods with 503; when it is up
// they poll at once (the host has re-attached them on its own).
func (b *Bridges) PluginState(name string, up bool) {
	b.mu.Lock()
	var ds []*device
	for _, d := range b.devices {
		if d.pluginName == name {
			ds = append(ds, d)
		}
	}
	b.mu.Unlock()
	for _, d := range ds {
		d.setPluginUp(up)
	}
}

// Desired hands a device its desired.config at twin version version. It
// returns at once: writable points are written at write priority, by the
// device's poller or, with Options.SubmitConfig, by whoever that hands
// the version to, and the outcome is reported as reported.config. A
// version not newer than the last one seen is ignored (the gateway may
// repeat it after a reconnect); a newer one supersedes a pending one. See
// the package comment for the rules.
func (b *Bridges) Desired(deviceID string, config map[string]any, version int64) error {
	d := b.device(deviceID)
	if d == nil {
		return fmt.Errorf("desired config for %s: %w", deviceID, ErrUnknownDevice)
	}
	if !d.accept(config, version) {
		return nil
	}
	if err := b.opts.SubmitConfig(deviceID, version, config); err != nil {
		// Applying late beats never applying: the poller takes it back.
		d.log.Warn("desired config not handed over; the bridge writes it", "version", version, "error", err)
		d.takeBack(version)
	}
	return nil
}

// ApplyConfig writes version of a device's desired.config now, in the
// caller's goroutine, bounded by ctx and Options.CallTimeout, at write
// priority on its bus, and reports reported.config as the poller would:
// it is how an Options.SubmitConfig caller runs what it was handed.
// config is the document given to SubmitConfig: a bridge that has not
// seen version (the gateway restarted meanwhile) plans it first, as
// Desired would. It returns
//
//   - Status applied or rejected (with Errors) when the plan or the
//     device settled it; again for a version already settled;
//   - Status superseded when a newer version was seen before or while
//     writing: nothing more to do, the newer one is applied on its own;
//   - an error wrapping ErrTransient (and ErrNotSent when nothing reached
//     the device) and the cause when a later attempt may succeed:
//     reported.config stays pending with the errors;
//   - an error wrapping ErrUnknownDevice, or ctx's cause, with nothing
//     reported.
func (b *Bridges) ApplyConfig(ctx context.Context, deviceID string, version int64, config map[string]any) (ConfigResult, error) {
	d := b.device(deviceID)
	if d == nil {
		return ConfigResult{}, fmt.Errorf("apply desired config v%d to %s: %w", version, deviceID, ErrUnknownDevice)
	}
	return d.applyConfig(ctx, version, config)
}

// cloneMethods copies custom methods, so a caller's later changes do not
// reach a running bridge.
func cloneMethods(ms map[string]MethodSpec) map[string]MethodSpec {
	if ms == nil {
		return nil
	}
	out := make(map[string]MethodSpec, len(ms))
	for name, m := range ms {
		out[name] = MethodSpec{Points: maps.Clone(m.Points), Disruptive: m.Disruptive}
	}
	return out
}
