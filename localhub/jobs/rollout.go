package jobs

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/drover-iot/drover/localhub/store"
)

// window is the span a rollout rate counts devices over.
const window = time.Minute

// pacer decides when the next device may start under a rollout. Devices
// start in windows of one minute: a window opens when a device starts after
// the previous window has closed, and at most rate(succeeded) devices start
// in it. The state is in memory only; after a restart the first window opens
// afresh.
type pacer struct {
	limited     bool
	base, max   int
	factor      float64
	every       int
	windowStart time.Time
	inWindow    int
	open        bool
}

func newPacer(r *store.JobRollout) *pacer {
	if r == nil {
		return &pacer{}
	}
	switch r.Type {
	case store.RolloutExponential:
		p := &pacer{limited: true, base: r.BaseRatePerMinute, max: r.DevicesPerMinute, factor: r.IncrementFactor}
		if r.RateIncreaseCriteria != nil {
			p.every = r.RateIncreaseCriteria.NumberOfSucceeded
		}
		return p
	default:
		return &pacer{limited: true, base: r.DevicesPerMinute}
	}
}

// rate is the number of devices per window once succeeded devices have
// succeeded: constant, or base × factor^⌊succeeded/every⌋ capped by max.
func (p *pacer) rate(succeeded int) int {
	if p.every <= 0 || p.factor <= 1 {
		return max(p.base, 1)
	}
	r := float64(p.base)
	for range succeeded / p.every {
		r *= p.factor
		if p.max > 0 && r >= float64(p.max) {
			return p.max
		}
		if r >= math.MaxInt32 {
			return math.MaxInt32
		}
	}
	return max(int(r), 1)
}

// next is the earliest time at or after now when another device may start.
func (p *pacer) next(now time.Time, succeeded int) time.Time {
	if !p.limited || !p.open || !now.Before(p.windowStart.Add(window)) || p.inWindow < p.rate(succeeded) {
		return now
	}
	return p.windowStart.Add(window)
}

// start counts a device started at now.
func (p *pacer) start(now time.Time) {
	if !p.limited {
		return
	}
	if !p.open || !now.Before(p.windowStart.Add(window)) {
		p.windowStart, p.inWindow, p.open = now, 0, true
	}
	p.inWindow++
}

// tally counts a job's finished devices (final results only; an attempt
// that will be retried is not counted).
type tally struct {
	succeeded, failed int
}

// shouldAbort applies the abort criteria: true once at least MinDevices
// devices have finished and the failed share is at least the threshold.
func shouldAbort(a *store.JobAbort, t tally) (bool, string) {
	if a == nil {
		return false, ""
	}
	done := t.succeeded + t.failed
	if done == 0 || done < a.MinDevices {
		return false, ""
	}
	pct := float64(t.failed) * 100 / float64(done)
	if pct < a.FailureThresholdPercent {
		return false, ""
	}
	return true, fmt.Sprintf("aborted: %d of %d finished devices failed (%.1f%%), at or above the abort threshold of %g%% (minDevices %d)",
		t.failed, done, pct, a.FailureThresholdPercent, a.MinDevices)
}

// failure kinds of a device attempt.
type failKind int

const (
	failNone    failKind = iota
	failFailed           // the attempt failed (retry "failed")
	failTimeout          // the device did not answer in time (retry "timeout")
	failFinal            // failed for a reason no retry can fix (stop, timeout of the job, restart)
)

// shouldRetry reports whether an attempt that failed with kind may be repeated.
func shouldRetry(r *store.JobRetry, kind failKind, attempt int) bool {
	if r == nil || attempt >= r.MaxAttempts {
		return false
	}
	switch kind {
	case failFailed:
		return slices.Contains(r.On, store.RetryOnFailed)
	case failTimeout:
		return slices.Contains(r.On, store.RetryOnTimeout)
	}
	return false
}
