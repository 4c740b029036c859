package bridges

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/plugins"
)

// Connection states reported in reported.connection.state.
const (
	StateOnline     = "online"
	StateOffline    = "offline"
	StatePluginDown = "plugin-down"
	StateBackoff    = "backoff"
)

// device is the bridge of one field device. Its poller goroutine (run)
// owns the schedule and the published values; everything the other
// goroutines (Desired, Invoke, PluginState, Stats) share with it is under
// mu. Sink calls go through emit, which serialises them under emitMu.
type device struct {
	b          *Bridges
	spec       DeviceSpec
	points     map[string]PointSpec
	pluginName string
	plugin     plugins.Plugin
	sched      *bus.Scheduler
	log        *slog.Logger
	clock      clock.Clock

	wake chan struct{} // nudges the poller (cap 1)

	// Set by Bridges under b.mu.
	cancel context.CancelFunc
	done   chan struct{}

	// Poller-only.
	plan      *schedule
	published map[string]any

	emitMu  sync.Mutex
	removed bool // under emitMu: no more Sink calls

	mu           sync.Mutex
	pluginDown   bool
	resume       bool // plugin came back: poll everything now
	needIdentify bool
	noIdentify   bool           // Identify answered CodeUnsupported
	identity     map[string]any // last reported.device
	conn         connection
	cfg          desiredState
	refresh      []string // points to poll soon (written by ApplyConfig)
	mgmt         *manageOp
	stats        DeviceStats
}

// connection is the last reported.connection.
type connection struct {
	state     string // "" until the first outcome
	lastSeen  time.Time
	lastError string
	answered  time.Time // last time the device answered (lastSeen is only updated on transitions)
}

func newDevice(b *Bridges, spec DeviceSpec, pluginName string, p plugins.Plugin, s *bus.Scheduler, log *slog.Logger) *device {
	d := &device{
		b: b, spec: spec, pluginName: pluginName, plugin: p, sched: s, log: log, clock: b.opts.Clock,
		points:       make(map[string]PointSpec, len(spec.Points)),
		wake:         make(chan struct{}, 1),
		published:    make(map[string]any),
		needIdentify: true,
	}
	for _, pt := range spec.Points {
		d.points[pt.Name] = pt
	}
	d.stats.Bus, d.stats.Plugin = spec.Bus, pluginName
	return d
}

func (d *device) can(c plugins.Capability) bool {
	return d.spec.Capabilities == nil || slices.Contains(d.spec.Capabilities, c)
}

func (d *device) nudge() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// emit builds a patch under mu and hands it, with optional telemetry, to
// the Sink, in order with every other emit of this device. build may
// return nil patch and nil telemetry to emit nothing.
func (d *device) emit(build func() (patch, telemetry map[string]any, at time.Time)) {
	d.emitMu.Lock()
	defer d.emitMu.Unlock()
	if d.removed {
		return
	}
	d.mu.Lock()
	patch, tel, at := build()
	d.mu.Unlock()
	if len(tel) > 0 {
		d.b.opts.Sink.Telemetry(d.spec.ID, tel, at)
	}
	if len(patch) > 0 {
		d.b.opts.Sink.Reported(d.spec.ID, patch)
	}
}

// report is emit for a patch alone.
func (d *device) report(build func() map[string]any) {
	d.emit(func() (map[string]any, map[string]any, time.Time) { return build(), nil, time.Time{} })
}

// setConnLocked moves the connection to state and returns the
// reported.connection section when that is a transition (nil otherwise).
// errMsg is the error behind an offline or backoff state.
func (d *device) setConnLocked(state, errMsg string, now time.Time) map[string]any {
	if state == StateOnline {
		d.conn.answered = now
	}
	if d.conn.state == state {
		return nil
	}
	prev := d.conn.state
	d.conn.state = state
	switch state {
	case StateOnline:
		d.conn.lastSeen, d.conn.lastError = now, ""
		if d.identity == nil {
			d.needIdentify = true // it was silent at start: identify it now
		}
		if d.cfg.selfApply() {
			d.cfg.retryAt = time.Time{} // it is back: retry the config now
		}
	default:
		d.conn.lastSeen = d.conn.answered
		if errMsg != "" {
			d.conn.lastError = errMsg
		}
	}
	d.stats.State, d.stats.LastSeen, d.stats.LastError = state, d.conn.lastSeen, d.conn.lastError
	d.log.Info("connection state", "from", prev, "to", state, "error", errMsg)
	sec := map[string]any{"state": state, "lastSeen": nil, "lastError": nil}
	if !d.conn.lastSeen.IsZero() {
		sec["lastSeen"] = d.conn.lastSeen.UTC().Format(time.RFC3339)
	}
	if d.conn.lastError != "" {
		sec["lastError"] = d.conn.lastError
	}
	return sec
}

// setPluginUp records a plugin state change.
func (d *device) setPluginUp(up bool) {
	d.report(func() map[string]any {
		if d.pluginDown == !up {
			return nil
		}
		d.pluginDown = !up
		if up {
			d.resume = true
			return nil // the next poll says online or offline
		}
		if sec := d.setConnLocked(StatePluginDown, "plugin "+d.pluginName+" is down", d.clock.Now()); sec != nil {
			return map[string]any{"connection": sec}
		}
		return nil
	})
	d.nudge()
}

// action is what the poller does next.
type action int

const (
	actWait action = iota
	actProbe
	actIdentify
	actDesired
	actPoll
)

// nextAction decides the poller's next step at now, or when to look again
// (zero: only when nudged).
func (d *device) nextAction(now time.Time) (action, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pluginDown {
		return actWait, time.Time{}
	}
	if d.resume {
		d.resume = false
		d.plan.expedite(nil, now)
		if d.cfg.selfApply() {
			d.cfg.retryAt = time.Time{}
		}
	}
	if len(d.refresh) > 0 {
		d.plan.expedite(d.refresh, now)
		d.refresh = nil
	}
	if m := d.mgmt; m != nil && m.watching {
		if !now.Before(m.probeAt) {
			return actProbe, time.Time{}
		}
		return actWait, m.probeAt
	}
	if d.cfg.selfApply() && !now.Before(d.cfg.retryAt) {
		return actDesired, time.Time{}
	}
	if d.needIdentify && !d.noIdentify && d.can(plugins.CapIdentify) {
		return actIdentify, time.Time{}
	}
	next := d.plan.next()
	if !next.IsZero() && !now.Before(next) {
		return actPoll, time.Time{}
	}
	if d.cfg.selfApply() && (next.IsZero() || d.cfg.retryAt.Before(next)) {
		next = d.cfg.retryAt
	}
	return actWait, next
}

// run is the device's poller; it returns when ctx ends.
func (d *device) run(ctx context.Context) {
	d.plan = newSchedule(d.spec.Points, d.defaultPoll(), d.clock.Now())
	d.log.Debug("bridge started")
	defer d.log.Debug("bridge stopped")
	for ctx.Err() == nil {
		now := d.clock.Now()
		act, at := d.nextAction(now)
		switch act {
		case actProbe:
			d.probe(ctx)
		case actIdentify:
			d.identifyOnce(ctx)
		case actDesired:
			d.applyDesired(ctx)
		case actPoll:
			d.poll(ctx, now)
		case actWait:
			d.wait(ctx, at)
		}
	}
}

func (d *device) defaultPoll() time.Duration {
	if d.spec.DefaultPoll > 0 {
		return d.spec.DefaultPoll
	}
	return d.b.opts.DefaultPoll
}

// wait blocks until at (zero: indefinitely), a nudge, or the end of ctx.
func (d *device) wait(ctx context.Context, at time.Time) {
	var tc <-chan time.Time
	if !at.IsZero() {
		t := d.clock.TimerAt(at)
		defer t.Stop()
		tc = t.C()
	}
	select {
	case <-ctx.Done():
	case <-d.wake:
	case <-tc:
	}
}

// call runs one plugin call as a bus transaction, bounded by CallTimeout.
func (d *device) call(ctx context.Context, prio bus.Priority, fn func(ctx context.Context) error) error {
	return d.sched.Do(ctx, prio, d.spec.ID, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, d.b.opts.CallTimeout)
		defer cancel()
		return fn(ctx)
	})
}

// identifyOnce runs Identify at start (and when a device that was silent
// at start first answers) and reports reported.device.
func (d *device) identifyOnce(ctx context.Context) {
	d.mu.Lock()
	d.needIdentify = false
	d.mu.Unlock()
	var id plugins.Identity
	err := d.call(ctx, bus.PriorityPoll, func(ctx context.Context) error {
		var err error
		id, err = d.plugin.Identify(ctx, d.spec.ID)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		d.log.Debug("identify failed", "error", err)
		if plugins.CodeOf(err) == plugins.CodeUnsupported {
			d.mu.Lock()
			d.noIdentify = true
			d.mu.Unlock()
		}
		return
	}
	d.report(func() map[string]any { return d.identityPatchLocked(id) })
}

// identityPatchLocked records id and returns the patch for it, or nil when
// reported.device already says so.
func (d *device) identityPatchLocked(id plugins.Identity) map[string]any {
	sec := deviceSection(id)
	if equalFlat(sec, d.identity) {
		return nil
	}
	patch := maps.Clone(sec)
	for k := range d.identity {
		if _, ok := sec[k]; !ok {
			patch[k] = nil // an extra the device no longer reports (merge patch: delete)
		}
	}
	d.identity = sec
	return map[string]any{"device": patch}
}

// deviceSection is reported.device: the identity's four fixed keys, then
// each of its Extra entries (an SMP device's image slots, OS and
// bootloader info; a Modbus device's identification objects) under its own
// name, made a valid twin key. An extra never replaces a fixed key.
func deviceSection(id plugins.Identity) map[string]any {
	sec := identityJSON(id)
	for k, v := range id.Extra {
		k = twinKey(k)
		if _, fixed := sec[k]; fixed || k == "" {
			continue
		}
		sec[k] = v
	}
	return sec
}

// twinKey replaces the characters a twin property name may not hold
// ('.', '$', space, control characters) with '_'.
func twinKey(k string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '$' || r == ' ' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, k)
}

func identityJSON(id plugins.Identity) map[string]any {
	return map[string]any{
		"manufacturer": id.Manufacturer, "model": id.Model,
		"serial": id.Serial, "firmwareVersion": id.FirmwareVersion,
	}
}

// equalFlat compares two maps of comparable values.
func equalFlat(a, b map[string]any) bool {
	if a == nil || b == nil || len(a) != len(b) {
		return a == nil && b == nil
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || w != v {
			return false
		}
	}
	return true
}
