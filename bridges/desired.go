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

// Statuses of reported.config.
const (
	ConfigPending  = "pending"
	ConfigApplied  = "applied"
	ConfigRejected = "rejected"
)

// desiredState is the configuration pattern of one device, under
// device.mu.
type desiredState struct {
	seen    bool
	version int64                // newest version accepted
	pending bool                 // writes for version still to do
	writes  []plugins.PointWrite // in point-name order
	retryAt time.Time            // when the pending writes may run (zero: now)
	last    map[string]any       // last reported.config, to skip repeats
}

// desired accepts desired.config at version; see Bridges.Desired.
func (d *device) desired(config map[string]any, version int64) {
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
		d.cfg.pending, d.cfg.writes, d.cfg.retryAt = true, writes, time.Time{}
		return d.configPatchLocked(ConfigPending, nil)
	})
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
// repeats the last one.
func (d *device) configPatchLocked(status string, errs map[string]string) map[string]any {
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

// applyDesired writes the pending config in one Write at write priority.
func (d *device) applyDesired(ctx context.Context) {
	d.mu.Lock()
	version, writes := d.cfg.version, d.cfg.writes
	d.mu.Unlock()
	var results []plugins.WriteResult
	err := d.call(ctx, bus.PriorityWrite, func(ctx context.Context) error {
		var err error
		results, err = d.plugin.Write(ctx, d.spec.ID, writes)
		return err
	})
	if ctx.Err() != nil {
		return
	}
	now := d.clock.Now()
	var written []string
	d.report(func() map[string]any {
		if !d.cfg.pending || d.cfg.version != version {
			return nil // superseded while writing: the newer version is applied next
		}
		errs := make(map[string]string)
		if err != nil {
			for _, w := range writes {
				errs[w.Point] = err.Error()
			}
			if transient(err) {
				d.cfg.retryAt = now.Add(d.b.opts.DesiredRetry)
				d.log.Info("desired config deferred", "version", version, "error", err)
				return d.configPatchLocked(ConfigPending, errs)
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
		if len(errs) > 0 {
			d.log.Warn("desired config rejected", "version", version, "errors", errs)
			return d.configPatchLocked(ConfigRejected, errs)
		}
		return d.configPatchLocked(ConfigApplied, nil)
	})
	if len(written) > 0 {
		d.plan.expedite(written, now) // show the new values in reported.points soon
	}
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
