package bridges

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/plugins"
)

// poll reads every point due at now in one Read and publishes what changed.
func (d *device) poll(ctx context.Context, now time.Time) {
	names, at := d.plan.due(now)
	start := d.clock.Now()
	var vals []plugins.PointValue
	err := d.call(ctx, bus.PriorityPoll, func(ctx context.Context) error {
		var err error
		vals, err = d.plugin.Read(ctx, d.spec.ID, names)
		if err == nil && allTimedOut(vals) {
			// A plugin may report a silent device as timed-out points rather
			// than as an error; the bus's circuit breaker must see a timeout.
			return plugins.Errorf(plugins.CodeTimeout, "%s did not answer: %s", d.spec.ID, vals[0].Error)
		}
		return err
	})
	end := d.clock.Now()
	d.plan.done(names, end)
	if ctx.Err() != nil {
		return // stopping: the outcome says nothing about the device
	}
	d.publish(vals, err, end, end.Sub(start))
	if hook := d.b.cycleDone; hook != nil {
		hook(d.spec.ID, at)
	}
}

// publish turns a Read outcome into telemetry, reported.points and a
// reported.connection transition.
func (d *device) publish(vals []plugins.PointValue, err error, now time.Time, took time.Duration) {
	changes := make(map[string]any)
	var (
		at               time.Time
		pointErrs        uint64
		timeouts         int
		state, errMsg    string
		answeredNothing  = false
		countCycleFailed = err != nil
	)
	switch {
	case err == nil:
		for _, pv := range vals {
			p, ok := d.points[pv.Point]
			if !ok {
				continue // not asked for
			}
			switch pv.Quality {
			case plugins.QualityGood:
				v, cerr := valueToJSON(pv.Value)
				if cerr != nil {
					pointErrs++
					d.log.Debug("unusable reading", "point", pv.Point, "error", cerr)
					continue
				}
				if changed(d.published[pv.Point], v, p.Deadband) {
					changes[pv.Point] = v
					d.published[pv.Point] = v
					if pv.Time.After(at) {
						at = pv.Time
					}
				}
			case plugins.QualityTimeout:
				timeouts++
				pointErrs++
				errMsg = pv.Point + ": " + pv.Error
			default:
				pointErrs++
			}
		}
		// No point read good (all timed out, or the link itself failed): the
		// device is not online, whatever the plugin returned as the call's error.
		answeredNothing = len(vals) > 0 && goodCount(vals) == 0
		state = StateOnline
		if answeredNothing {
			state, countCycleFailed = StateOffline, true
		}
	case errors.Is(err, bus.ErrBackoff):
		state, errMsg = StateBackoff, err.Error()
	default:
		state, errMsg = StateOffline, err.Error()
	}
	if at.IsZero() {
		at = now
	}
	d.emit(func() (map[string]any, map[string]any, time.Time) {
		d.stats.Polls++
		d.stats.Changes += uint64(len(changes))
		d.stats.PointErrors += pointErrs
		d.stats.LastCycle = took
		if countCycleFailed {
			d.stats.Errors++
		}
		patch := make(map[string]any)
		if !d.pluginDown { // while down, the state stays plugin-down
			if sec := d.setConnLocked(state, errMsg, now); sec != nil {
				patch["connection"] = sec
			}
		}
		if len(changes) > 0 {
			patch["points"] = maps.Clone(changes)
		}
		return patch, changes, at
	})
}

func allTimedOut(vals []plugins.PointValue) bool {
	for _, v := range vals {
		if v.Quality != plugins.QualityTimeout {
			return false
		}
	}
	return len(vals) > 0
}

func goodCount(vals []plugins.PointValue) int {
	n := 0
	for _, v := range vals {
		if v.Quality == plugins.QualityGood {
			n++
		}
	}
	return n
}
