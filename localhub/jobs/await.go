package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/drover-iot/drover/localhub/store"
)

// awaitPoll re-checks an awaited twin this often even without a change
// notification (a change written by an import job, say, notifies nobody).
const awaitPoll = 30 * time.Second

// ReportedChanged tells the engine a device's twin changed (the hub calls it
// after each reported patch), so that devices awaiting it are re-checked.
func (e *Engine) ReportedChanged(deviceID string) {
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	for ch := range e.watchers[deviceID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (e *Engine) watch(deviceID string) chan struct{} {
	ch := make(chan struct{}, 1)
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	if e.watchers[deviceID] == nil {
		e.watchers[deviceID] = map[chan struct{}]struct{}{}
	}
	e.watchers[deviceID][ch] = struct{}{}
	return ch
}

func (e *Engine) unwatch(deviceID string, ch chan struct{}) {
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	delete(e.watchers[deviceID], ch)
	if len(e.watchers[deviceID]) == 0 {
		delete(e.watchers, deviceID)
	}
}

// await waits, after a twin job's patch, until the device's twin matches the
// job's awaitReported conditions. ended: the job was cancelled or aborted
// meanwhile (the record is cancelled); paused: the hub is stopping (the
// record stays running for the next run).
func (e *Engine) await(ctx context.Context, r *run, t task) (kind failKind, jerr *store.JobError, ended, paused bool) {
	aw := r.job.Spec.AwaitReported
	okWhere, okArgs, err := compileCondition(aw.Succeeded)
	if err != nil {
		return failFinal, &store.JobError{Code: "ArgumentInvalid", Description: "awaitReported.succeeded: " + err.Error()}, false, false
	}
	var failWhere string
	var failArgs []any
	if aw.Failed != "" {
		if failWhere, failArgs, err = compileCondition(aw.Failed); err != nil {
			return failFinal, &store.JobError{Code: "ArgumentInvalid", Description: "awaitReported.failed: " + err.Error()}, false, false
		}
	}
	ch := e.watch(t.deviceID)
	defer e.unwatch(t.deviceID, ch)
	for {
		// Watch first, then check: a change between the two still wakes us.
		ok, exists, err := e.st.DeviceMatches(ctx, t.deviceID, okWhere, okArgs)
		if err == nil && exists && !ok && failWhere != "" {
			var bad bool
			if bad, exists, err = e.st.DeviceMatches(ctx, t.deviceID, failWhere, failArgs); err == nil && exists && bad {
				return failFailed, &store.JobError{Code: "DeviceReportedFailure", Description: "the device's twin matches awaitReported.failed: " + aw.Failed}, false, false
			}
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			return failFailed, &store.JobError{Code: "ServerError", Description: err.Error()}, false, false
		case !exists:
			return failFinal, &store.JobError{Code: "DeviceNotFound", Description: "the device was deleted while awaited"}, false, false
		case ok:
			return failNone, nil, false, false
		}
		poll := e.clock.TimerAt(e.clock.Now().Add(awaitPoll))
		select {
		case <-ch:
		case <-poll.C():
		case <-r.ended:
			poll.Stop()
			return failFinal, &store.JobError{Code: r.endCode, Description: "the job ended while waiting for the device to report the outcome"}, true, false
		case <-ctx.Done():
		}
		poll.Stop()
		if ctx.Err() != nil {
			switch cause := context.Cause(ctx); {
			case errors.Is(cause, errDeviceTimeout):
				return failTimeout, &store.JobError{Code: "DeviceTimeout", Description: "the device did not report the outcome before " + cause.Error()}, false, false
			case errors.Is(cause, errJobTimeout):
				return failFinal, &store.JobError{Code: "JobTimeout", Description: "abandoned: " + cause.Error() + " while waiting for the device to report the outcome"}, false, false
			default:
				return failFinal, nil, false, true
			}
		}
	}
}
