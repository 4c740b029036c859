package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/localhub/query"
	"github.com/drover-iot/drover/localhub/store"
)

// Devices is what the engine needs from the device side of the hub.
type Devices interface {
	// InvokeMethod calls a direct method on a device (service.Sessions semantics).
	InvokeMethod(ctx context.Context, deviceID, method string, payload json.RawMessage, responseTimeout, connectTimeout time.Duration) (status int, body json.RawMessage, err error)
	// DesiredChanged tells a connected device about a desired-properties change.
	DesiredChanged(deviceID string, patch map[string]any, version int64)
}

// Options configure an Engine.
type Options struct {
	Store   *store.Store
	Devices Devices
	// Clock drives start times, rollouts and deadlines (default clock.Real).
	Clock  clock.Clock
	Logger *slog.Logger
	// Workers bounds the devices in flight per job (default DefaultWorkers).
	Workers int
}

// DefaultWorkers is how many devices of one job are worked on at once.
const DefaultWorkers = 32

// Retention is how long a terminal job is kept [IoT Hub quotas: job history 30 days].
const Retention = 30 * 24 * time.Hour

// pruneEvery is how often terminal jobs past Retention are deleted.
const pruneEvery = time.Hour

// Engine runs the jobs stored in the hub's database. It implements the
// service's job API (CreateJob, GetJob, CancelJob, ListJobs).
type Engine struct {
	st      *store.Store
	dev     Devices
	clock   clock.Clock
	log     *slog.Logger
	workers int

	wake chan struct{}

	mu      sync.Mutex
	runners map[string]chan struct{} // job id → cancel signal of its running goroutine

	watchMu  sync.Mutex
	watchers map[string]map[chan struct{}]struct{} // device id → devices awaiting its reported properties
}

// New builds an engine; Run starts it.
func New(o Options) *Engine {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	return &Engine{st: o.Store, dev: o.Devices, clock: o.Clock, log: o.Logger, workers: o.Workers,
		wake: make(chan struct{}, 1), runners: map[string]chan struct{}{}, watchers: map[string]map[chan struct{}]struct{}{}}
}

// Errors that end device attempts; they are context causes.
var (
	errHubStopped    = errors.New("the hub stopped")
	errJobTimeout    = errors.New("the job's maxExecutionTimeInSeconds passed")
	errDeviceTimeout = errors.New("the device's deviceTimeoutInSeconds passed")
)

// Run runs active jobs (those left by a previous run first) until ctx ends,
// then waits for them to stop. Jobs stopped this way continue at the next Run.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	var nextPrune time.Time
	for {
		now := e.clock.Now()
		if !now.Before(nextPrune) {
			if n, err := e.st.DeleteJobsEndedBefore(ctx, now.Add(-Retention)); err != nil {
				e.log.Warn("delete old jobs", "error", err)
			} else if n > 0 {
				e.log.Info("old jobs deleted", "count", n)
			}
			nextPrune = now.Add(pruneEvery)
		}
		wakeAt := nextPrune
		active, err := e.st.ActiveJobs(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.log.Warn("list active jobs", "error", err)
			wakeAt = now.Add(5 * time.Second)
		}
		for _, j := range active {
			e.mu.Lock()
			if _, ok := e.runners[j.ID]; !ok {
				sig := make(chan struct{}, 1)
				e.runners[j.ID] = sig
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer e.forget(j.ID)
					e.runJob(ctx, j, sig)
				}()
			}
			e.mu.Unlock()
		}
		timer := e.clock.TimerAt(wakeAt)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-e.wake:
		case <-timer.C():
		}
		timer.Stop()
	}
}

func (e *Engine) forget(id string) {
	e.mu.Lock()
	delete(e.runners, id)
	e.mu.Unlock()
}

func (e *Engine) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// CreateJob stores a new job and lets it run. Created, Start and Status are
// set here: Start is the requested start time, or now when it is unset or
// past; the job is scheduled when Start is in the future, else queued.
func (e *Engine) CreateJob(ctx context.Context, j store.Job) (store.Job, error) {
	now := e.clock.Now().UTC()
	j.Created = now
	if j.Start.IsZero() || j.Start.Before(now) {
		j.Start = now
	}
	j.Status = store.JobQueued
	if j.Start.After(now) {
		j.Status = store.JobScheduled
	}
	if err := e.st.CreateJob(ctx, j); err != nil {
		return store.Job{}, err
	}
	e.log.Info("job created", "job", j.ID, "type", j.Type, "status", j.Status, "start", j.Start)
	e.kick()
	return e.st.GetJob(ctx, j.ID)
}

// GetJob reads a job with its device counts.
func (e *Engine) GetJob(ctx context.Context, id string) (store.Job, error) {
	return e.st.GetJob(ctx, id)
}

// ListJobs returns one page of jobs, oldest first.
func (e *Engine) ListJobs(ctx context.Context, f store.JobFilter, limit, offset int) ([]store.Job, error) {
	return e.st.ListJobs(ctx, f, limit, offset)
}

// CancelJob cancels an active job (a terminal one is returned unchanged).
func (e *Engine) CancelJob(ctx context.Context, id string) (store.Job, error) {
	j, err := e.st.CancelJob(ctx, id, e.clock.Now())
	if err != nil {
		return j, err
	}
	e.mu.Lock()
	if sig, ok := e.runners[id]; ok {
		select {
		case sig <- struct{}{}:
		default:
		}
	}
	e.mu.Unlock()
	e.log.Info("job cancel requested", "job", id, "status", j.Status)
	return j, nil
}

// compileCondition turns a job's queryCondition into an SQL predicate over
// the devices table; "*" means every device.
func compileCondition(cond string) (string, []any, error) {
	if cond == "*" {
		return "1", nil, nil
	}
	e, err := query.ParseCondition(cond)
	if err != nil {
		return "", nil, err
	}
	return query.CompileCondition(e)
}

// runJob waits for the job's start time, snapshots its devices, then works
// through them. It returns when the job is terminal or ctx ends.
func (e *Engine) runJob(ctx context.Context, j store.Job, cancelSig <-chan struct{}) {
	log := e.log.With("job", j.ID)
	if !j.Snapshot {
		if e.clock.Now().Before(j.Start) {
			start := e.clock.TimerAt(j.Start)
			select {
			case <-start.C():
			case <-cancelSig:
				start.Stop()
				return
			case <-ctx.Done():
				start.Stop()
				return
			}
		}
		where, args, err := compileCondition(j.Spec.QueryCondition)
		if err != nil {
			e.finish(ctx, log, j.ID, store.JobFailed, "queryCondition: "+err.Error(), "", nil)
			return
		}
		started, err := e.st.StartJob(ctx, j.ID, where, args, e.clock.Now())
		if err != nil {
			if ctx.Err() == nil {
				log.Error("start job", "error", err)
				e.finish(ctx, log, j.ID, store.JobFailed, "internal error: "+err.Error(), "", nil)
			}
			return
		}
		if !started {
			return // cancelled meanwhile
		}
		log.Info("job started")
	} else {
		log.Info("job resumed")
	}
	r := &run{e: e, job: j, log: log, cancelSig: cancelSig, ended: make(chan struct{}), pacer: newPacer(j.Spec.Rollout),
		deadline: j.Start.Add(time.Duration(j.Spec.MaxExecutionTimeInSeconds) * time.Second),
		results:  make(chan result, e.workers)}
	r.run(ctx)
}

// finish ends a job and logs it; a job already terminal is left alone.
func (e *Engine) finish(ctx context.Context, log *slog.Logger, id, status, reason, message string, cancelErr *store.JobError) {
	changed, err := e.st.FinishJob(context.WithoutCancel(ctx), id, status, reason, message, cancelErr, e.clock.Now())
	switch {
	case err != nil:
		log.Error("finish job", "error", err)
	case changed:
		log.Info("job finished", "status", status, "reason", reason, "message", message)
	}
}

// task is one attempt to do the job on one device.
type task struct {
	deviceID string
	attempt  int
	resumed  bool // the record was left running by a stopped hub
}

// result is a finished attempt.
type result struct {
	task
	kind  failKind
	retry bool
	// paused: the hub stopped while the device was awaited; its record stays
	// running and the next run resumes the wait.
	paused bool
}

// run is one job being worked through; its fields belong to the run goroutine
// except stopping, which workers read.
type run struct {
	e         *Engine
	job       store.Job
	log       *slog.Logger
	cancelSig <-chan struct{}
	// ended closes when the run is cancelled or aborted, so devices awaiting
	// their reported properties stop waiting; endCode says which.
	ended    chan struct{}
	endCode  string
	deadline time.Time
	pacer    *pacer
	tally    tally
	results  chan result
	inflight int
	wg       sync.WaitGroup
	stopping atomic.Bool

	front     []task // records found running at resume
	page      []task // pending records loaded from the store
	cursor    string // last device id loaded
	exhausted bool   // no pending records beyond cursor
	retries   []task
}

const pageSize = 256

// Reasons a run stops.
const (
	stopDone     = "done"
	stopCancel   = "cancel"
	stopTimeout  = "timeout"
	stopAbort    = "abort"
	stopShutdown = "shutdown"
	stopError    = "error"
)

func (r *run) run(ctx context.Context) {
	e, id := r.e, r.job.ID
	// Work contexts end only when the run says so, with the reason as cause.
	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(nil)

	if err := r.resume(ctx); err != nil {
		if ctx.Err() == nil {
			r.log.Error("resume job", "error", err)
			e.finish(ctx, r.log, id, store.JobFailed, "internal error: "+err.Error(), "", &store.JobError{Code: "ServerError", Description: err.Error()})
		}
		return
	}
	// The deadline's one value is taken by whichever select sees it first;
	// both end the loop with stopTimeout.
	deadline := e.clock.TimerAt(r.deadline)
	defer deadline.Stop()
	deadlineC := deadline.C()

	stop, reason := "", ""
	for stop == "" {
		// Take in finished attempts and signals without blocking, so that
		// the abort check sees every result before the next dispatch.
		stop = r.poll(ctx, deadlineC)
		if stop != "" {
			break
		}
		if abort, why := shouldAbort(r.job.Spec.Abort, r.tally); abort {
			stop, reason = stopAbort, why
			break
		}
		t, ok, err := r.peek(ctx)
		if err != nil {
			stop, reason = stopError, err.Error()
			break
		}
		if !ok && r.inflight == 0 {
			stop = stopDone
			break
		}
		var timerC <-chan time.Time // nil: no dispatch is waiting for the pacer
		release := func() bool { return false }
		if ok && r.inflight < e.workers {
			now := e.clock.Now()
			at := r.pacer.next(now, r.tally.succeeded)
			if !at.After(now) {
				r.pop()
				if err := r.begin(ctx, workCtx, t, now); err != nil {
					stop, reason = stopError, err.Error()
				}
				continue
			}
			next := e.clock.TimerAt(at)
			timerC, release = next.C(), next.Stop
		}
		select {
		case res := <-r.results:
			r.record(res)
		case <-timerC:
		case <-r.cancelSig:
			stop = stopCancel
		case <-deadlineC:
			stop = stopTimeout
		case <-ctx.Done():
			stop = stopShutdown
		}
		release()
	}

	r.stopping.Store(true)
	switch stop {
	case stopCancel, stopAbort:
		r.endCode = map[string]string{stopCancel: "JobCancelled", stopAbort: "JobAborted"}[stop]
		close(r.ended)
	}
	switch stop {
	case stopTimeout:
		cancelWork(errJobTimeout)
		reason = fmt.Sprintf("maxExecutionTimeInSeconds (%d) exceeded", r.job.Spec.MaxExecutionTimeInSeconds)
		e.finish(ctx, r.log, id, store.JobFailed, reason, reason, &store.JobError{Code: "JobTimeout", Description: "the job ended (" + reason + ") before this device started"})
	case stopAbort:
		e.finish(ctx, r.log, id, store.JobFailed, reason, reason, &store.JobError{Code: "JobAborted", Description: "the job was aborted before this device started: " + reason})
	case stopError:
		if ctx.Err() != nil {
			cancelWork(errHubStopped)
			break
		}
		r.log.Error("run job", "error", reason)
		e.finish(ctx, r.log, id, store.JobFailed, "internal error: "+reason, "", &store.JobError{Code: "ServerError", Description: reason})
	case stopShutdown:
		cancelWork(errHubStopped)
	}
	for r.inflight > 0 {
		r.record(<-r.results)
	}
	r.wg.Wait()
	switch stop {
	case stopDone:
		msg := fmt.Sprintf("%d devices: %d succeeded, %d failed", r.tally.succeeded+r.tally.failed, r.tally.succeeded, r.tally.failed)
		e.finish(ctx, r.log, id, store.JobCompleted, "", msg, nil)
	case stopShutdown:
		r.log.Info("job paused by hub stop")
		return
	case stopError:
		if ctx.Err() != nil {
			return
		}
	}
	// A retry queued while the job was ending must not stay pending.
	if err := e.st.CancelPendingJobDevices(context.WithoutCancel(ctx), id,
		store.JobError{Code: "JobEnded", Description: "the job ended before this device's retry"}, e.clock.Now()); err != nil {
		r.log.Warn("cancel leftover devices", "error", err)
	}
}

// poll takes in results and stop signals that are ready, without blocking.
func (r *run) poll(ctx context.Context, deadlineC <-chan time.Time) string {
	for {
		select {
		case res := <-r.results:
			r.record(res)
			continue
		case <-r.cancelSig:
			return stopCancel
		case <-deadlineC:
			return stopTimeout
		case <-ctx.Done():
			return stopShutdown
		default:
			return ""
		}
	}
}

// resume counts what earlier runs finished and settles records left
// running: a method call is not repeated (it is failed as Interrupted), a
// twin patch is re-checked and applied only if it is not in the twin.
func (r *run) resume(ctx context.Context) error {
	e, id := r.e, r.job.ID
	st, err := e.st.JobStats(ctx, id)
	if err != nil {
		return err
	}
	r.tally = tally{succeeded: st.SucceededCount, failed: st.FailedCount - st.CancelledCount}
	after := ""
	for {
		recs, err := e.st.JobDevices(ctx, id, store.DeviceJobRunning, after, pageSize)
		if err != nil {
			return err
		}
		for _, d := range recs {
			after = d.DeviceID
			if r.job.Type == store.JobDeviceMethod {
				err := e.st.EndJobDevice(ctx, id, d.DeviceID, store.DeviceJobFailed, nil,
					&store.JobError{Code: "Interrupted", Description: "the hub stopped while this method call was in flight; it is not repeated"}, e.clock.Now())
				if err != nil {
					return err
				}
				r.tally.failed++
				continue
			}
			r.front = append(r.front, task{deviceID: d.DeviceID, attempt: d.Attempts, resumed: true})
		}
		if len(recs) < pageSize {
			return nil
		}
	}
}

// peek returns the next task: resumed records, then pending records in
// device id order, then retries.
func (r *run) peek(ctx context.Context) (task, bool, error) {
	if len(r.front) > 0 {
		return r.front[0], true, nil
	}
	if len(r.page) == 0 && !r.exhausted {
		recs, err := r.e.st.JobDevices(ctx, r.job.ID, store.DeviceJobPending, r.cursor, pageSize)
		if err != nil {
			return task{}, false, err
		}
		for _, d := range recs {
			r.page = append(r.page, task{deviceID: d.DeviceID})
			r.cursor = d.DeviceID
		}
		r.exhausted = len(recs) < pageSize
	}
	if len(r.page) > 0 {
		return r.page[0], true, nil
	}
	if len(r.retries) > 0 {
		return r.retries[0], true, nil
	}
	return task{}, false, nil
}

// pop removes the task peek returned.
func (r *run) pop() {
	switch {
	case len(r.front) > 0:
		r.front = r.front[1:]
	case len(r.page) > 0:
		r.page = r.page[1:]
	case len(r.retries) > 0:
		r.retries = r.retries[1:]
	}
}

// begin marks a record running and starts its worker. A record that is no
// longer pending (cancelled meanwhile) is skipped.
func (r *run) begin(ctx, workCtx context.Context, t task, now time.Time) error {
	if !t.resumed {
		attempt, ok, err := r.e.st.BeginJobDevice(ctx, r.job.ID, t.deviceID, now)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		t.attempt = attempt
	}
	r.pacer.start(now)
	r.inflight++
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.results <- r.e.work(workCtx, r, t)
	}()
	return nil
}

// record counts a finished attempt, or queues its retry.
func (r *run) record(res result) {
	r.inflight--
	switch {
	case res.paused:
	case res.retry:
		r.retries = append(r.retries, task{deviceID: res.deviceID})
	case res.kind == failNone:
		r.tally.succeeded++
	default:
		r.tally.failed++
	}
}
