package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/clock"
)

// Run recovers the jobs a crash left running, then schedules jobs until
// ctx ends. It returns after every job goroutine it started has returned.
// Jobs still executing at shutdown stay "running" in the database; the
// next Run recovers them like a crash. Run may be called again after it
// returned, but not twice at once.
func (q *Queue) Run(ctx context.Context) error {
	if !q.active.CompareAndSwap(false, true) {
		return errors.New("job queue: Run called twice")
	}
	defer q.active.Store(false)

	stopNotes, stopProgress := make(chan struct{}), make(chan struct{})
	var notes sync.WaitGroup
	notes.Add(2)
	go func() {
		defer notes.Done()
		q.notify(stopNotes)
	}()
	go func() {
		defer notes.Done()
		q.progressWriter(context.WithoutCancel(ctx), stopProgress)
	}()
	defer func() {
		q.wg.Wait()
		close(stopProgress) // after the jobs: their last updates are written
		close(stopNotes)
		notes.Wait()
	}()

	if err := q.recoverInterrupted(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while recovering; the next Run does it again
		}
		return err
	}
	for {
		wake := q.pass(ctx)
		var (
			t  clock.Timer
			tc <-chan time.Time
		)
		if !wake.IsZero() {
			t = q.clock.TimerAt(wake)
			tc = t.C()
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-tc:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// recoverInterrupted handles jobs found running at start: the process that ran them
// died (or stopped) mid-job. See the package comment, "Crash safety".
func (q *Queue) recoverInterrupted(ctx context.Context) error {
	found, err := dbQuery(ctx, q.db, "find interrupted jobs", `WHERE state = 'running' ORDER BY seq`)
	if err != nil {
		return err
	}
	resumer, _ := q.opts.Executor.(Resumer)
	now := q.clock.Now()
	for _, j := range found {
		resumable := j.corrupt == "" && resumer != nil && resumer.Resumable(j.Kind)
		var c change
		switch {
		case j.corrupt != "":
			c = change{set: "state = 'failed', reason = '', error = ?, ended = ?", args: []any{j.corrupt, nanos(now)}}
		case resumable && j.CancelRequested:
			c = change{set: "state = 'cancelled', reason = '', error = 'cancelled (the gateway stopped meanwhile)', ended = ?", args: []any{nanos(now)}}
		case resumable && j.Resumes < q.opts.MaxResumes:
			c = change{set: "state = 'queued', reason = 'resume', resumes = resumes + 1, not_before = 0"}
		default:
			// Never repeated blindly: the device says whether it happened.
			c = change{set: "state = 'interrupted', reason = 'verify', error = 'interrupted', verify_attempts = 0, not_before = 0"}
		}
		c.when = "state = 'running'"
		nj, ok, err := q.apply(ctx, j.ID, c)
		if err != nil {
			return fmt.Errorf("recover job %s: %w", j.ID, err)
		}
		if ok {
			q.log.Warn("job interrupted by a restart", "job", j.ID, "device", j.Device, "kind", j.Kind,
				"state", string(nj.State), "reason", string(nj.Reason))
		}
	}
	return nil
}

// env is what decide knows about a job's surroundings.
type env struct {
	now        time.Time
	recheck    time.Duration
	deviceBusy bool
	busBusy    bool
	online     bool
	windowOpen bool
	nextWindow time.Time // next opening when !windowOpen (zero: none)
}

// action is what the scheduler does with a pending job.
type action int

const (
	actHold   action = iota // leave it; look again at wake
	actWait                 // set waiting with reason
	actFail                 // fail with reason and msg
	actRun                  // dispatch Execute
	actVerify               // dispatch Verify
)

type verdict struct {
	act    action
	reason Reason
	msg    string
	wake   time.Time // look again then (zero: on the next event)
}

// decide is the scheduling rule for one pending (queued, waiting or
// interrupted) job, in order: a corrupt row fails; an interrupted job is
// verified when its device is free; a passed deadline fails; a back-off
// holds; then the window (disruptive, unforced), the device being
// offline, the device being busy and the serial bus being busy make it
// wait; otherwise it runs. The in-use rule is checked later, right before
// Execute, because it needs the device.
func decide(j Job, e env) verdict {
	soonest := func(ts ...time.Time) time.Time {
		var w time.Time
		for _, t := range ts {
			if !t.IsZero() && (w.IsZero() || t.Before(w)) {
				w = t
			}
		}
		return w
	}
	if j.corrupt != "" {
		return verdict{act: actFail, msg: j.corrupt}
	}
	recheck := e.now.Add(e.recheck)
	if j.State == StateInterrupted {
		switch {
		case j.NotBefore.After(e.now):
			return verdict{act: actHold, wake: j.NotBefore}
		case !e.online:
			return verdict{act: actWait, reason: ReasonOffline, wake: recheck}
		case e.deviceBusy:
			return verdict{act: actWait, reason: ReasonDeviceBusy}
		case e.busBusy:
			return verdict{act: actWait, reason: ReasonBusBusy}
		}
		return verdict{act: actVerify}
	}
	var deadline time.Time
	if !j.Deadline.IsZero() {
		if !e.now.Before(j.Deadline) {
			return verdict{act: actFail, reason: ReasonDeadline, msg: "deadline"}
		}
		deadline = j.Deadline
	}
	switch {
	case j.NotBefore.After(e.now):
		return verdict{act: actHold, wake: soonest(j.NotBefore, deadline)}
	case j.Disruptive && !j.Force && !e.windowOpen:
		return verdict{act: actWait, reason: ReasonWindow, wake: soonest(e.nextWindow, deadline)}
	case !e.online:
		return verdict{act: actWait, reason: ReasonOffline, wake: soonest(recheck, deadline)}
	case e.deviceBusy:
		return verdict{act: actWait, reason: ReasonDeviceBusy, wake: deadline}
	case e.busBusy:
		return verdict{act: actWait, reason: ReasonBusBusy, wake: deadline}
	}
	return verdict{act: actRun}
}

// pass looks at every pending job once, dispatches what may run, and
// returns when to look again (zero: on the next event).
func (q *Queue) pass(ctx context.Context) time.Time {
	now := q.clock.Now()
	var wake time.Time
	later := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	// Deadlines of running jobs.
	q.mu.Lock()
	for _, r := range q.runs {
		if r.deadline.IsZero() {
			continue
		}
		if !now.Before(r.deadline) {
			r.cancel(errDeadline)
		} else {
			later(r.deadline)
		}
	}
	q.mu.Unlock()
	q.prune(ctx, now)

	pending, err := dbQuery(ctx, q.db, "load pending jobs", `WHERE state IN `+pendingStates+` ORDER BY seq`)
	if err != nil {
		if ctx.Err() == nil {
			q.log.Error("job scheduling failed", "error", err)
		}
		return now.Add(q.opts.Recheck)
	}
	global := q.globalWindows()
	for _, j := range pending {
		if ctx.Err() != nil {
			return time.Time{}
		}
		q.mu.Lock()
		_, dispatched := q.runs[j.ID]
		_, devBusy := q.devBusy[j.Device]
		_, busBusy := q.busBusy[j.Bus]
		ws, own := q.devWindows[j.Device]
		q.mu.Unlock()
		if dispatched {
			continue
		}
		if !own {
			ws = global
		}
		e := env{now: now, recheck: q.opts.Recheck, deviceBusy: devBusy, busBusy: busBusy, online: true}
		if q.opts.Online != nil {
			e.online = q.opts.Online(j.Device)
		}
		if j.Disruptive && !j.Force && j.State != StateInterrupted {
			e.windowOpen, e.nextWindow = windowsOpen(ws, now)
		}
		v := decide(j, e)
		later(v.wake)
		switch v.act {
		case actHold:
		case actWait:
			q.setWaiting(ctx, j, v.reason)
		case actFail:
			q.fail(ctx, j, v.reason, v.msg)
		case actRun, actVerify:
			// pending was read before this pass looked at q.runs: a job
			// that ended meanwhile must not run twice. Its end is stored
			// before it left q.runs, so a fresh read shows it.
			cur, err := dbGet(ctx, q.db, j.ID)
			if err != nil || cur.Version != j.Version {
				continue // the next pass sees it as it is
			}
			q.dispatch(ctx, j, v.act == actVerify)
			if v.act == actRun {
				later(j.Deadline)
			}
		}
	}
	return wake
}

// setWaiting records why j waits, when that changed. An interrupted job
// keeps its state and only shows the reason.
func (q *Queue) setWaiting(ctx context.Context, j Job, r Reason) {
	if j.Reason == r && (j.State == StateWaiting || j.State == StateInterrupted) {
		return
	}
	c := change{set: "state = 'waiting', reason = ?", args: []any{string(r)},
		when: "state IN ('queued','waiting') AND version = ?", whenArgs: []any{j.Version}}
	if j.State == StateInterrupted {
		c = change{set: "reason = ?", args: []any{string(r)}, when: "state = 'interrupted' AND version = ?", whenArgs: []any{j.Version}}
	}
	if _, _, err := q.apply(ctx, j.ID, c); err != nil && ctx.Err() == nil {
		q.log.Error("job update failed", "job", j.ID, "error", err)
	}
}

// fail ends a pending job as failed.
func (q *Queue) fail(ctx context.Context, j Job, r Reason, msg string) {
	_, ok, err := q.apply(ctx, j.ID, change{
		set:      "state = 'failed', reason = ?, error = ?, ended = ?",
		args:     []any{string(r), truncate(msg), nanos(q.clock.Now())},
		when:     "state IN " + pendingStates + " AND version = ?",
		whenArgs: []any{j.Version},
	})
	if err != nil && ctx.Err() == nil {
		q.log.Error("job update failed", "job", j.ID, "error", err)
	}
	if ok {
		q.log.Warn("job failed", "job", j.ID, "device", j.Device, "kind", j.Kind, "error", msg)
	}
}

// dispatch claims j's device and serial bus and starts its goroutine.
func (q *Queue) dispatch(ctx context.Context, j Job, verify bool) {
	rctx, cancel := context.WithCancelCause(ctx)
	r := &run{cancel: cancel, device: j.Device}
	if !verify {
		r.deadline = j.Deadline
	}
	serial := j.Bus != "" && (q.opts.Serial == nil || q.opts.Serial(j.Bus))
	q.mu.Lock()
	q.runs[j.ID] = r
	q.devBusy[j.Device] = j.ID
	if serial {
		r.bus = j.Bus
		q.busBusy[j.Bus] = j.ID
	}
	q.mu.Unlock()
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		defer q.release(j.ID, r)
		if verify {
			q.verify(ctx, rctx, j)
		} else {
			q.execute(ctx, rctx, j)
		}
	}()
}

// release frees what dispatch claimed and wakes the scheduler.
func (q *Queue) release(id string, r *run) {
	r.cancel(nil)
	q.mu.Lock()
	delete(q.runs, id)
	if q.devBusy[r.device] == id {
		delete(q.devBusy, r.device)
	}
	if r.bus != "" && q.busBusy[r.bus] == id {
		delete(q.busBusy, r.bus)
	}
	q.mu.Unlock()
	q.Poke()
}

// execute checks the in-use rule, marks j running and runs it. ctx is
// Run's; rctx is the job's own.
func (q *Queue) execute(ctx, rctx context.Context, j Job) {
	log := q.log.With("job", j.ID, "device", j.Device, "kind", j.Kind)
	wctx := context.WithoutCancel(ctx) // results are stored even during shutdown
	if j.Disruptive && !j.Force && q.opts.InUse != nil {
		inUse, err := q.opts.InUse(rctx, j.Device)
		if rctx.Err() != nil {
			return // cancelled (already stored), deadline (next pass) or shutdown
		}
		if err != nil || inUse {
			msg := "device in use; pass force to override"
			if err != nil {
				msg = "cannot check the in-use rule: " + err.Error()
			}
			if _, _, err := q.apply(wctx, j.ID, change{
				set:  "state = 'waiting', reason = 'in-use', error = ?, not_before = ?",
				args: []any{truncate(msg), nanos(q.clock.Now().Add(q.opts.Recheck))},
				when: "state IN ('queued','waiting')",
			}); err != nil {
				log.Error("job update failed", "error", err)
			}
			return
		}
	}
	now := q.clock.Now()
	rj, ok, err := q.apply(wctx, j.ID, change{
		set:  "state = 'running', reason = '', attempts = max(attempts, 0) + 1, started = ?, error = '', not_before = 0",
		args: []any{nanos(now)},
		when: "state IN ('queued','waiting') AND cancel_requested = 0",
	})
	if err != nil {
		log.Error("job update failed", "error", err)
		return
	}
	if !ok {
		return // cancelled meanwhile
	}
	log.Info("job started", "attempt", rj.Attempts, "resumes", rj.Resumes)
	// The start was just stored: progress within ProgressEvery of it waits
	// for the next store or for finish (a short job costs three commits:
	// queued, running, ended).
	p := &progress{q: q, id: j.ID, attempt: rj.Attempts, pct: rj.Progress, msg: rj.Message, last: q.clock.Now()}
	res, xerr := q.call(rctx, rj, p.update)
	p.stop()
	q.finish(ctx, rctx, rj, p, res, xerr)
}

// call runs the executor, turning a panic into an error.
func (q *Queue) call(ctx context.Context, j Job, progress func(int, string)) (res any, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("executor panicked: %v", v)
		}
	}()
	return q.opts.Executor.Execute(ctx, j, progress)
}

// finish stores the outcome of an attempt.
func (q *Queue) finish(ctx, rctx context.Context, j Job, p *progress, res any, xerr error) {
	log := q.log.With("job", j.ID, "device", j.Device, "kind", j.Kind)
	wctx := context.WithoutCancel(ctx)
	now := q.clock.Now()
	pct, msg := p.last2()
	cause := context.Cause(rctx)
	result := resultJSON(res)
	var c change
	switch {
	case xerr == nil:
		c = change{set: "state = 'succeeded', reason = '', error = '', progress = 100, message = ?, result = ?, ended = ?",
			args: []any{msg, result, nanos(now)}}
		log.Info("job succeeded", "attempt", j.Attempts)
	case errors.Is(cause, errCancelled):
		c = change{set: "state = 'cancelled', reason = '', error = ?, progress = ?, message = ?, ended = ?",
			args: []any{truncate("cancelled while running: " + xerr.Error()), pct, msg, nanos(now)}}
		log.Info("job cancelled", "error", xerr)
	case errors.Is(cause, errDeadline):
		c = change{set: "state = 'failed', reason = 'deadline', error = 'deadline', progress = ?, message = ?, ended = ?",
			args: []any{pct, msg, nanos(now)}}
		log.Warn("job failed", "error", "deadline")
	case ctx.Err() != nil:
		// Shutdown: leave it running; the next Run recovers it.
		log.Info("job stopped by shutdown", "error", xerr)
		return
	case errors.Is(xerr, ErrInUse), errors.Is(xerr, ErrOffline):
		r := ReasonInUse
		if !errors.Is(xerr, ErrInUse) {
			r = ReasonOffline
		}
		c = change{set: "state = 'waiting', reason = ?, attempts = attempts - 1, error = ?, progress = ?, message = ?, not_before = ?",
			args: []any{string(r), truncate(xerr.Error()), pct, msg, nanos(now.Add(q.opts.Recheck))}}
		log.Info("job deferred", "reason", string(r), "error", xerr)
	case q.opts.Retryable != nil && q.opts.Retryable(xerr) && j.Attempts < j.MaxAttempts:
		d := backoff(j.Attempts, q.opts.BackoffBase, q.opts.BackoffMax, q.opts.Rand())
		c = change{set: "state = 'waiting', reason = 'retry', error = ?, progress = ?, message = ?, result = ?, not_before = ?",
			args: []any{truncate(xerr.Error()), pct, msg, result, nanos(now.Add(d))}}
		log.Warn("job attempt failed; will retry", "attempt", j.Attempts, "backoff", d, "error", xerr)
	default:
		text := xerr.Error()
		if j.MaxAttempts > 1 && j.Attempts > 1 {
			text = fmt.Sprintf("attempt %d of %d: %s", j.Attempts, j.MaxAttempts, text)
		}
		c = change{set: "state = 'failed', reason = '', error = ?, progress = ?, message = ?, result = ?, ended = ?",
			args: []any{truncate(text), pct, msg, result, nanos(now)}}
		log.Warn("job failed", "attempt", j.Attempts, "error", xerr)
	}
	c.when = "state = 'running'"
	if _, _, err := q.apply(wctx, j.ID, c); err != nil {
		log.Error("job update failed", "error", err)
	}
}

// resultJSON encodes an executor's result for storage; nil is "null", so
// a failed attempt without a result clears an earlier one.
func resultJSON(res any) string {
	if res == nil {
		return "null"
	}
	b, err := json.Marshal(res)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "result not storable as JSON: " + err.Error()})
	}
	return string(b)
}

// verify asks the executor whether an interrupted job took effect.
func (q *Queue) verify(ctx, rctx context.Context, j Job) {
	log := q.log.With("job", j.ID, "device", j.Device, "kind", j.Kind)
	wctx := context.WithoutCancel(ctx)
	v, ok := q.opts.Executor.(Verifier)
	var (
		done bool
		err  error
	)
	if ok {
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("verifier panicked: %v", p)
				}
			}()
			done, err = v.Verify(rctx, j)
		}()
		if rctx.Err() != nil {
			return // cancelled (already stored) or shutdown
		}
	}
	now := q.clock.Now()
	var c change
	switch {
	case !ok:
		c = change{set: "state = 'failed', reason = '', error = ?, ended = ?",
			args: []any{"interrupted; device state not verified (no verifier for this kind)", nanos(now)}}
	case errors.Is(err, ErrUnverifiable):
		c = change{set: "state = 'failed', reason = '', error = ?, ended = ?",
			args: []any{truncate("interrupted; device state not verified: " + err.Error()), nanos(now)}}
	case err != nil && j.verifyAttempts+1 < j.MaxAttempts:
		d := backoff(j.verifyAttempts+1, q.opts.BackoffBase, q.opts.BackoffMax, q.opts.Rand())
		c = change{set: "reason = 'verify', verify_attempts = verify_attempts + 1, error = ?, not_before = ?",
			args: []any{truncate("interrupted; cannot verify the device state yet: " + err.Error()), nanos(now.Add(d))}}
	case err != nil:
		c = change{set: "state = 'failed', reason = '', verify_attempts = verify_attempts + 1, error = ?, ended = ?",
			args: []any{truncate("interrupted; device state could not be verified: " + err.Error()), nanos(now)}}
	case done:
		c = change{set: "state = 'succeeded', reason = 'verified', error = '', progress = 100, ended = ?",
			args: []any{nanos(now)}}
	default:
		c = change{set: "state = 'failed', reason = '', error = ?, ended = ?",
			args: []any{"interrupted; device state verified: not applied", nanos(now)}}
	}
	c.when = "state = 'interrupted'"
	nj, changed, uerr := q.apply(wctx, j.ID, c)
	if uerr != nil {
		log.Error("job update failed", "error", uerr)
		return
	}
	if changed {
		log.Warn("interrupted job verified", "state", string(nj.State), "result", nj.Error, "error", err)
	}
}

// globalWindows compiles the gateway windows; a window that does not
// compile is skipped (config.Validate already reported it).
func (q *Queue) globalWindows() []window {
	if q.opts.Windows == nil {
		return nil
	}
	var out []window
	for _, w := range q.opts.Windows() {
		c, err := compileWindow(w)
		if err != nil {
			q.log.Warn("maintenance window skipped", "cron", w.Cron, "error", err)
			continue
		}
		out = append(out, c)
	}
	return out
}

// prune deletes finished jobs past Retention and beyond MaxFinished, at
// most hourly.
func (q *Queue) prune(ctx context.Context, now time.Time) {
	if !q.pruned.IsZero() && now.Sub(q.pruned) < time.Hour && !now.Before(q.pruned) {
		return
	}
	q.pruned = now
	q.wmu.Lock()
	defer q.wmu.Unlock()
	const final = `('succeeded','failed','cancelled')`
	_, err1 := q.db.ExecContext(ctx, `DELETE FROM jobs_queue WHERE state IN `+final+` AND ended < ?`,
		nanos(now.Add(-q.opts.Retention)))
	_, err2 := q.db.ExecContext(ctx, `DELETE FROM jobs_queue WHERE state IN `+final+` AND seq NOT IN
		(SELECT seq FROM jobs_queue WHERE state IN `+final+` ORDER BY seq DESC LIMIT ?)`, q.opts.MaxFinished)
	if err := errors.Join(err1, err2); err != nil && ctx.Err() == nil {
		q.log.Error("job prune failed", "error", err)
	}
}
