package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Handle is the gateway's stable reference to one plugin. It implements
// plugins.Plugin across restarts (see the package comment).
type Handle struct {
	host *Host
	name string
	log  *slog.Logger

	mu        sync.RWMutex
	state     State
	gen       uint64
	inst      *Instance
	version   string
	since     time.Time
	lastErr   error
	restarts  int
	up        chan struct{} // closed while state is up
	replaySeq uint64

	// cfgMu serialises OpenBus, CloseBus, Attach and Detach with the replay
	// after a restart, so a configuration call lands either before the
	// replay (and is replayed) or after it (on the new process).
	cfgMu   sync.Mutex
	buses   map[string]remembered[plugins.BusConfig]
	devices map[string]remembered[plugins.DeviceConfig]
	// nBuses and nDevices mirror len(buses) and len(devices) for status(),
	// which must not wait for cfgMu (held across configuration RPCs).
	nBuses, nDevices atomic.Int32
}

type remembered[T any] struct {
	seq uint64 // replay order: first call first
	cfg T
}

var _ plugins.Plugin = (*Handle)(nil)

func newHandle(h *Host, name string) *Handle {
	return &Handle{
		host:    h,
		name:    name,
		log:     h.log.With("plugin", name),
		state:   StateStopped,
		since:   time.Now(),
		up:      make(chan struct{}),
		buses:   make(map[string]remembered[plugins.BusConfig]),
		devices: make(map[string]remembered[plugins.DeviceConfig]),
	}
}

// Name returns the plugin's name.
func (p *Handle) Name() string { return p.name }

// WaitUp blocks until the plugin is up or ctx ends.
func (p *Handle) WaitUp(ctx context.Context) error {
	p.mu.RLock()
	up := p.up
	p.mu.RUnlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for plugin %s: %w", p.name, ctx.Err())
	}
}

func (p *Handle) status() Status {
	p.mu.RLock()
	defer p.mu.RUnlock()
	st := Status{
		Name: p.name, State: p.state, Generation: p.gen, Version: p.version,
		Restarts: p.restarts, Since: p.since,
	}
	if p.state == StateUp && p.inst != nil {
		st.PID = p.inst.PID()
	}
	if p.lastErr != nil {
		st.LastError = p.lastErr.Error()
	}
	st.Buses, st.Devices = int(p.nBuses.Load()), int(p.nDevices.Load())
	return st
}

// setState records a transition and returns the event describing it. The
// caller emits the event outside any lock.
func (p *Handle) setState(s State, inst *Instance, err error) Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s == StateStarting {
		p.gen++
		if p.gen > 1 {
			p.restarts++
		}
	}
	if s == StateUp && p.state != StateUp {
		close(p.up)
	}
	if s != StateUp && p.state == StateUp {
		p.up = make(chan struct{})
	}
	p.state, p.inst, p.since = s, inst, time.Now()
	p.version = ""
	if inst != nil {
		p.version = inst.Description().Version
	}
	if err != nil {
		p.lastErr = err
	}
	return Event{Plugin: p.name, State: s, Generation: p.gen, Version: p.version, Err: err}
}

// supervise runs the plugin until ctx ends: start, replay, watch, and on
// failure kill and restart after a backoff.
func (p *Handle) supervise(ctx context.Context) {
	opts := p.host.opts
	attempt := 0
	for {
		p.host.emit(p.setState(StateStarting, nil, nil))
		inst, err := Start(ctx, opts, p.name)
		if err == nil {
			p.cfgMu.Lock()
			replayErrs := p.replay(ctx, inst)
			ev := p.setState(StateUp, inst, nil)
			p.cfgMu.Unlock()
			ev.Replay = replayErrs
			p.host.emit(ev)

			upAt := time.Now()
			err = p.watch(ctx, inst)
			// Down before the kill, so calls cut by the kill report the
			// plugin down rather than a bare transport error.
			p.setState(StateDown, nil, nil)
			if ctx.Err() != nil {
				inst.Close()
			} else {
				inst.Kill()
				if es := inst.ExitStatus(); es != "" {
					err = fmt.Errorf("%w (%s)", err, es)
				}
			}
			if time.Since(upAt) >= opts.BackoffMax {
				attempt = 0
			}
		}
		if ctx.Err() != nil {
			p.host.emit(p.setState(StateStopped, nil, nil))
			return
		}
		delay := backoff(attempt, opts.BackoffMin, opts.BackoffMax, jitter())
		attempt++
		p.log.Error("plugin down", "error", err, "restart_in", delay)
		p.host.emit(p.setState(StateDown, nil, err))

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			p.host.emit(p.setState(StateStopped, nil, nil))
			return
		case <-t.C:
		}
	}
}

// watch blocks until the plugin fails or ctx ends, and says why.
func (p *Handle) watch(ctx context.Context, inst *Instance) error {
	opts := p.host.opts
	tick := time.NewTicker(opts.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-inst.Lost():
			return errors.New("plugin process exited or its connection broke")
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, opts.PingTimeout)
			err := inst.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("plugin hangs, killing it: %w", err)
			}
		}
	}
}

// replay re-opens remembered buses, then re-attaches remembered devices, in
// the order they were first opened or attached. The caller holds cfgMu.
func (p *Handle) replay(ctx context.Context, inst *Instance) []ReplayError {
	var errs []ReplayError
	call := func(f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, p.host.opts.StartTimeout)
		defer cancel()
		return f(cctx)
	}
	for _, b := range sortedBySeq(p.buses) {
		err := call(func(ctx context.Context) error { return inst.Plugin().OpenBus(ctx, b) })
		if err != nil {
			p.log.Warn("reopen bus after restart", "bus", b.Name, "error", err)
			errs = append(errs, ReplayError{Bus: b.Name, Err: err})
		}
	}
	for _, d := range sortedBySeq(p.devices) {
		err := call(func(ctx context.Context) error { return inst.Plugin().Attach(ctx, d) })
		if err != nil {
			p.log.Warn("reattach device after restart", "device", d.ID, "error", err)
			errs = append(errs, ReplayError{Device: d.ID, Err: err})
		}
	}
	if n := len(p.buses) + len(p.devices); n > 0 {
		p.log.Info("replayed configuration", "calls", n, "failed", len(errs))
	}
	return errs
}

func sortedBySeq[T any](m map[string]remembered[T]) []T {
	rs := slices.SortedFunc(maps.Values(m), func(a, b remembered[T]) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	out := make([]T, len(rs))
	for i, r := range rs {
		out[i] = r.cfg
	}
	return out
}

// current returns the running plugin, or a CodeUnavailable error at once
// when it is not up.
func (p *Handle) current() (plugins.Plugin, uint64, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.state != StateUp {
		return nil, 0, plugins.Errorf(plugins.CodeUnavailable, "plugin %s is %s", p.name, p.state)
	}
	return p.inst.Plugin(), p.gen, nil
}

func (p *Handle) alive(gen uint64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.state == StateUp && p.gen == gen
}

// downError is returned for a call cut short because the plugin went down.
type downError struct {
	err   *plugins.Error
	cause error
}

func (e *downError) Error() string   { return e.err.Error() + ": " + e.cause.Error() }
func (e *downError) Unwrap() []error { return []error{e.err, e.cause} }

// wrap adds the plugin name to err, and turns any error of a call whose
// process went down meanwhile into CodeUnavailable (unless the caller's own
// deadline expired first).
func (p *Handle) wrap(ctx context.Context, gen uint64, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && !p.alive(gen) && plugins.CodeOf(err) != plugins.CodeUnavailable {
		err = &downError{
			err:   &plugins.Error{Code: plugins.CodeUnavailable, Msg: "plugin went down during the call"},
			cause: err,
		}
	}
	return fmt.Errorf("plugin %s: %w", p.name, err)
}

// Describe implements plugins.Plugin.
func (p *Handle) Describe(ctx context.Context) (plugins.Description, error) {
	c, gen, err := p.current()
	if err != nil {
		return plugins.Description{}, err
	}
	d, err := c.Describe(ctx)
	return d, p.wrap(ctx, gen, err)
}

// ValidateBus implements plugins.Plugin.
func (p *Handle) ValidateBus(ctx context.Context, bus json.RawMessage) ([]plugins.FieldError, error) {
	c, gen, err := p.current()
	if err != nil {
		return nil, err
	}
	fes, err := c.ValidateBus(ctx, bus)
	return fes, p.wrap(ctx, gen, err)
}

// ValidateProfile implements plugins.Plugin.
func (p *Handle) ValidateProfile(ctx context.Context, profile json.RawMessage) ([]plugins.FieldError, error) {
	c, gen, err := p.current()
	if err != nil {
		return nil, err
	}
	fes, err := c.ValidateProfile(ctx, profile)
	return fes, p.wrap(ctx, gen, err)
}

// OpenBus implements plugins.Plugin. A bus opened successfully is
// remembered and re-opened after every restart until CloseBus.
func (p *Handle) OpenBus(ctx context.Context, bus plugins.BusConfig) error {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	c, gen, err := p.current()
	if err != nil {
		return err
	}
	if err := c.OpenBus(ctx, bus); err != nil {
		return p.wrap(ctx, gen, err)
	}
	seq := p.nextSeq()
	if old, ok := p.buses[bus.Name]; ok {
		seq = old.seq // reopened with a new config: keep its place
	}
	p.buses[bus.Name] = remembered[plugins.BusConfig]{seq: seq, cfg: bus}
	p.nBuses.Store(int32(len(p.buses)))
	return nil
}

// CloseBus implements plugins.Plugin. The bus is forgotten when the plugin
// closed it, did not know it, or is down (a dead process has no open bus).
func (p *Handle) CloseBus(ctx context.Context, name string) error {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	c, gen, err := p.current()
	if err != nil {
		p.forgetBus(name)
		return nil
	}
	err = p.wrap(ctx, gen, c.CloseBus(ctx, name))
	if forget(err) {
		p.forgetBus(name)
	}
	return err
}

// Attach implements plugins.Plugin. A device attached successfully is
// remembered and re-attached after every restart until Detach.
func (p *Handle) Attach(ctx context.Context, dev plugins.DeviceConfig) error {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	c, gen, err := p.current()
	if err != nil {
		return err
	}
	if err := c.Attach(ctx, dev); err != nil {
		return p.wrap(ctx, gen, err)
	}
	seq := p.nextSeq()
	if old, ok := p.devices[dev.ID]; ok {
		seq = old.seq
	}
	p.devices[dev.ID] = remembered[plugins.DeviceConfig]{seq: seq, cfg: dev}
	p.nDevices.Store(int32(len(p.devices)))
	return nil
}

// Detach implements plugins.Plugin, forgetting the device like CloseBus
// forgets a bus.
func (p *Handle) Detach(ctx context.Context, deviceID string) error {
	p.cfgMu.Lock()
	defer p.cfgMu.Unlock()
	c, gen, err := p.current()
	if err != nil {
		p.forgetDevice(deviceID)
		return nil
	}
	err = p.wrap(ctx, gen, c.Detach(ctx, deviceID))
	if forget(err) {
		p.forgetDevice(deviceID)
	}
	return err
}

// forgetBus and forgetDevice drop a remembered entry; the caller holds cfgMu.
func (p *Handle) forgetBus(name string) {
	delete(p.buses, name)
	p.nBuses.Store(int32(len(p.buses)))
}

func (p *Handle) forgetDevice(id string) {
	delete(p.devices, id)
	p.nDevices.Store(int32(len(p.devices)))
}

// forget says whether a CloseBus or Detach outcome means the plugin no
// longer has the bus or device.
func forget(err error) bool {
	switch plugins.CodeOf(err) {
	case plugins.CodeNotFound, plugins.CodeUnavailable:
		return true
	}
	return err == nil
}

func (p *Handle) nextSeq() uint64 {
	p.replaySeq++
	return p.replaySeq
}

// Read implements plugins.Plugin.
func (p *Handle) Read(ctx context.Context, deviceID string, points []string) ([]plugins.PointValue, error) {
	c, gen, err := p.current()
	if err != nil {
		return nil, err
	}
	vs, err := c.Read(ctx, deviceID, points)
	return vs, p.wrap(ctx, gen, err)
}

// Write implements plugins.Plugin.
func (p *Handle) Write(ctx context.Context, deviceID string, values []plugins.PointWrite) ([]plugins.WriteResult, error) {
	c, gen, err := p.current()
	if err != nil {
		return nil, err
	}
	rs, err := c.Write(ctx, deviceID, values)
	return rs, p.wrap(ctx, gen, err)
}

// Identify implements plugins.Plugin.
func (p *Handle) Identify(ctx context.Context, deviceID string) (plugins.Identity, error) {
	c, gen, err := p.current()
	if err != nil {
		return plugins.Identity{}, err
	}
	id, err := c.Identify(ctx, deviceID)
	return id, p.wrap(ctx, gen, err)
}

// Scan implements plugins.Plugin.
func (p *Handle) Scan(ctx context.Context, req plugins.ScanRequest, progress func(plugins.ScanEvent)) error {
	c, gen, err := p.current()
	if err != nil {
		return err
	}
	return p.wrap(ctx, gen, c.Scan(ctx, req, progress))
}

// Reboot implements plugins.Plugin.
func (p *Handle) Reboot(ctx context.Context, deviceID string, opts plugins.ManageOptions) error {
	c, gen, err := p.current()
	if err != nil {
		return err
	}
	return p.wrap(ctx, gen, c.Reboot(ctx, deviceID, opts))
}

// FactoryReset implements plugins.Plugin.
func (p *Handle) FactoryReset(ctx context.Context, deviceID string, opts plugins.ManageOptions) error {
	c, gen, err := p.current()
	if err != nil {
		return err
	}
	return p.wrap(ctx, gen, c.FactoryReset(ctx, deviceID, opts))
}

// Flash implements plugins.Plugin. A flash cut by a restart fails with
// CodeUnavailable; the caller resumes it with FlashRequest.ResumeOffset.
func (p *Handle) Flash(ctx context.Context, req plugins.FlashRequest, progress func(plugins.FlashEvent)) error {
	c, gen, err := p.current()
	if err != nil {
		return err
	}
	return p.wrap(ctx, gen, c.Flash(ctx, req, progress))
}
