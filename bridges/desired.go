package bridges

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/plugins"
)

// Statuses of reported.config, and ConfigSuperseded, the outcome of
// ApplyConfig for a version a newer one replaced (never reported).
const (
	ConfigPending    = "pending"
	ConfigApplied    = "applied"
	ConfigRejected   = "rejected"
	ConfigSuperseded = "superseded"
)

// Errors of ApplyConfig; compare with errors.Is.
var (
	// ErrTransient is wrapped, with the cause, by a failed config write
	// that may succeed later unchanged: no answer, back-off, plugin or bus
	// unavailable, busy. reported.config stays pending with the errors.
	ErrTransient = errors.New("transient failure")
	// ErrNotSent is wrapped, with ErrTransient, when nothing reached the
	// device: its breaker was open, its plugin down, or the plugin or bus
	// unavailable or busy.
	ErrNotSent = errors.New("nothing was sent to the device")
)

// ConfigResult is the outcome of a desired config version.
type ConfigResult struct {
	Status  string            `json:"status"` // applied, rejected, pending (transient failure) or superseded
	Version int64             `json:"version"`
	Errors  map[string]string `json:"errors,omitempty"` // point -> message
}

// desiredState is the configuration pattern of one device, under
// device.mu.
type desiredState struct {
	seen    bool
	version int64                // newest version accepted
	pending bool                 // writes for version still to do
	writes  []plugins.PointWrite // in point-name order
	retryAt time.Time            // when the pending writes may run (zero: now)
	// external: Options.SubmitConfig runs the pending writes (through
	// ApplyConfig); the poller leaves them alone.
	external bool
	outcome  ConfigResult   // of version, once applied or rejected
	last     map[string]any // last reported.config, to skip repeats
}

// selfApply says whether the poller has writes of its own to do.
func (s *desiredState) selfApply() bool { return s.pending && !s.external }

// accept takes desired.config at version; see Bridges.Desired. It
// reports whether the version has writes to do that are handed to
// Options.SubmitConfig.
func (d *device) accept(config map[string]any, version int64) (handOver bool) {
	d.report(func() map[string]any {
		if d.cfg.seen && version <= d.cfg.version {
			return nil // a repeat after reconnect, or stale
		}
		d.cfg.seen, d.cfg.version = true, version
		writes, errs := d.planConfig(config)
		switch {
		case len(errs) > 0:
			d.cfg.pending, d.cfg.writes = false, nil
			return d.configPatchLocked(ConfigRejected, errs)
		case len(writes) == 0:
			d.cfg.pending, d.cfg.writes = false, nil
			return d.configPatchLocked(ConfigApplied, nil)
		}
		handOver = d.b.opts.SubmitConfig != nil
		d.cfg.pending, d.cfg.writes, d.cfg.retryAt, d.cfg.external = true, writes, time.Time{}, handOver
		return d.configPatchLocked(ConfigPending, nil)
	})
	d.nudge()
	return handOver
}

// takeBack makes the poller write version itself after all (its hand-over
// failed).
func (d *device) takeBack(version int64) {
	d.mu.Lock()
	if d.cfg.pending && d.cfg.version == version {
		d.cfg.external, d.cfg.retryAt = false, time.Time{}
	}
	d.mu.Unlock()
	d.nudge()
}

// planConfig validates config and converts it into writes. Keys with a
// null value are skipped (merge-patch deletions). Any bad key rejects the
// whole version: nothing is written.
func (d *device) planConfig(config map[string]any) ([]plugins.PointWrite, map[string]string) {
	var writes []plugins.PointWrite
	errs := make(map[string]string)
	for _, name := range slices.Sorted(maps.Keys(config)) {
		raw := config[name]
		if raw == nil {
			continue
		}
		p, ok := d.points[name]
		switch {
		case !ok:
			errs[name] = fmt.Sprintf("unknown point %q", name)
			continue
		case !p.Writable:
			errs[name] = fmt.Sprintf("point %q is not writable", name)
			continue
		}
		v, err := valueFromJSON(raw)
		if err != nil {
			errs[name] = fmt.Sprintf("point %q: %v", name, err)
			continue
		}
		writes = append(writes, plugins.PointWrite{Point: name, Value: v})
	}
	return writes, errs
}

// configPatchLocked returns a reported.config patch, or nil when it
// repeats the last one. An applied or rejected status is also kept as
// the version's outcome.
func (d *device) configPatchLocked(status string, errs map[string]string) map[string]any {
	if status != ConfigPending {
		d.cfg.outcome = ConfigResult{Status: status, Version: d.cfg.version}
		if len(errs) > 0 {
			d.cfg.outcome.Errors = maps.Clone(errs)
		}
	}
	sec := map[string]any{"status": status, "version": d.cfg.version, "errors": nil}
	if len(errs) > 0 {
		m := make(map[string]any, len(errs))
		for k, v := range errs {
			m[k] = v
		}
		sec["errors"] = m
	}
	if sameConfig(sec, d.cfg.last) {
		return nil
	}
	d.cfg.last = sec
	return map[string]any{"config": sec}
}

func sameConfig(a, b map[string]any) bool {
	if b == nil || a["status"] != b["status"] || a["version"] != b["version"] {
		return false
	}
	ea, _ := a["errors"].(map[string]any)
	eb, _ := b["errors"].(map[string]any)
	return equalFlat(ea, eb)
}

// writeConfig runs writes in one Write at write priority.
func (d *device) writeConfig(ctx context.Context, writes []plugins.PointWrite) ([]plugins.WriteResult, error) {
	var results []plugins.WriteResult
	err := d.call(ctx, bus.PriorityWrite, func(ctx context.Context) error {
		var err error
		results, err = d.plugin.Write(ctx, d.spec.ID, writes)
		return err
	})
	return results, err
}

// settled is what became of one attempt at writing a config version.
type settled struct {
	patch   map[string]any // reported.config patch; nil for none
	result  ConfigResult
	retry   bool     // transient failure: still pending
	written []string // points the device took
}

// settleConfigLocked records the outcome of writing version (results, or
// the call's err) and returns it; the caller holds mu. A version no longer
// pending was superseded meanwhile: its outcome is dropped.
func (d *device) settleConfigLocked(version int64, writes []plugins.PointWrite, results []plugins.WriteResult, err error) settled {
	if !d.cfg.pending || d.cfg.version != version {
		return settled{result: ConfigResult{Status: ConfigSuperseded, Version: version}}
	}
	errs := make(map[string]string)
	var written []string
	if err != nil {
		for _, w := range writes {
			errs[w.Point] = err.Error()
		}
		if transient(err) {
			d.log.Info("desired config deferred", "version", version, "error", err)
			return settled{patch: d.configPatchLocked(ConfigPending, errs), retry: true,
				result: ConfigResult{Status: ConfigPending, Version: version, Errors: errs}}
		}
	} else {
		byPoint := make(map[string]plugins.WriteResult, len(results))
		for _, r := range results {
			byPoint[r.Point] = r
		}
		for _, w := range writes {
			r, ok := byPoint[w.Point]
			switch {
			case !ok:
				errs[w.Point] = "no result from the plugin"
			case !r.OK:
				errs[w.Point] = r.Error
				if errs[w.Point] == "" {
					errs[w.Point] = "write failed"
				}
			default:
				written = append(written, w.Point)
			}
		}
	}
	d.cfg.pending, d.cfg.writes = false, nil
	status := ConfigApplied
	if len(errs) > 0 {
		status = ConfigRejected
		d.log.Warn("desired config rejected", "version", version, "errors", errs)
	}
	return settled{patch: d.configPatchLocked(status, errs), written: written, result: d.cfg.outcome}
}

// applyDesired is the poller writing the pending config itself (no
// Options.SubmitConfig): a transient failure is retried after
// Options.DesiredRetry, or as soon as the device answers again.
func (d *device) applyDesired(ctx context.Context) {
	d.mu.Lock()
	version, writes := d.cfg.version, d.cfg.writes
	d.mu.Unlock()
	results, err := d.writeConfig(ctx, writes)
	if ctx.Err() != nil {
		return
	}
	now := d.clock.Now()
	var written []string
	d.report(func() map[string]any {
		s := d.settleConfigLocked(version, writes, results, err)
		if s.retry {
			d.cfg.retryAt = now.Add(d.b.opts.DesiredRetry)
		}
		written = s.written
		return s.patch
	})
	if len(written) > 0 {
		d.plan.expedite(written, now) // show the new values in reported.points soon
	}
}

// applyConfig is ApplyConfig for one device.
func (d *device) applyConfig(ctx context.Context, version int64, config map[string]any) (ConfigResult, error) {
	d.mu.Lock()
	unseen := !d.cfg.seen || version > d.cfg.version
	d.mu.Unlock()
	if unseen {
		d.accept(config, version) // the gateway restarted since it was handed over
	}
	d.mu.Lock()
	switch {
	case version < d.cfg.version:
		d.mu.Unlock()
		return ConfigResult{Status: ConfigSuperseded, Version: version}, nil
	case !d.cfg.pending:
		out := d.cfg.outcome // planned as applied or rejected, or done before
		d.mu.Unlock()
		return out, nil
	}
	d.cfg.external = true // whoever calls ApplyConfig runs it, not the poller
	writes, down := d.cfg.writes, d.pluginDown
	d.mu.Unlock()
	if down {
		err := plugins.Errorf(plugins.CodeUnavailable, "plugin %s is down", d.pluginName)
		return ConfigResult{Status: ConfigPending, Version: version}, fmt.Errorf("desired config v%d of %s: %w: %w: %w", version, d.spec.ID, ErrTransient, ErrNotSent, err)
	}
	results, err := d.writeConfig(ctx, writes)
	if ctx.Err() != nil {
		return ConfigResult{}, fmt.Errorf("desired config v%d of %s: %w", version, d.spec.ID, context.Cause(ctx))
	}
	var s settled
	d.report(func() map[string]any {
		s = d.settleConfigLocked(version, writes, results, err)
		return s.patch
	})
	if s.retry {
		if notSent(err) {
			err = fmt.Errorf("%w: %w", ErrNotSent, err)
		}
		return s.result, fmt.Errorf("desired config v%d of %s: %w: %w", version, d.spec.ID, ErrTransient, err)
	}
	d.refreshPoints(s.written)
	return s.result, nil
}

// refreshPoints makes the poller read the named points soon, so written
// values show in reported.points.
func (d *device) refreshPoints(names []string) {
	if len(names) == 0 {
		return
	}
	d.mu.Lock()
	d.refresh = append(d.refresh, names...)
	d.mu.Unlock()
	d.nudge()
}

// transient says whether a failed call may succeed later unchanged.
func transient(err error) bool {
	if errors.Is(err, bus.ErrBackoff) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch plugins.CodeOf(err) {
	case plugins.CodeTimeout, plugins.CodeUnavailable, plugins.CodeBusy, plugins.CodeGatewayPath, plugins.CodeGatewayTarget:
		return true
	}
	return false
}

// notSent says whether a failed call cannot have reached the device.
func notSent(err error) bool {
	if errors.Is(err, bus.ErrBackoff) {
		return true
	}
	switch plugins.CodeOf(err) {
	case plugins.CodeUnavailable, plugins.CodeBusy:
		return true
	}
	return false
}
