package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/internal/clock"
)

// Executor runs jobs on devices. Execute blocks until the job is done,
// honours ctx (cancelled on Cancel, on the deadline and at shutdown), and
// may call progress from any goroutine until it returns. result is stored
// as JSON, also next to an error when the attempt fails for good or waits
// for a retry (what the device answered, for whoever asked). A job with
// Resumes > 0 is being resumed after a crash (see Resumer). To defer an
// attempt that did not start, return an error wrapping ErrInUse or
// ErrOffline.
type Executor interface {
	Execute(ctx context.Context, j Job, progress func(pct int, msg string)) (result any, err error)
}

// Resumer is an optional Executor feature: a job of a kind for which
// Resumable reports true that was running when the gateway died is queued
// again to resume (Execute sees Resumes > 0). Other kinds are verified.
type Resumer interface {
	Resumable(kind string) bool
}

// Verifier is an optional Executor feature: it checks on the device
// whether an interrupted job took effect. done means it did (the job
// succeeded); !done means it did not (the job fails, and is not repeated);
// an error means the device could not tell (retried with back-off up to
// the job's MaxAttempts, then failed), except ErrUnverifiable: the kind
// cannot be checked at all, and the job fails at once. Without a Verifier
// an interrupted job fails.
type Verifier interface {
	Verify(ctx context.Context, j Job) (done bool, err error)
}

// Options configure a Queue. Only Executor is required.
type Options struct {
	Executor Executor
	Logger   *slog.Logger // default: discard
	Clock    clock.Clock  // default: clock.Real
	// Windows returns the gateway-wide maintenance windows (the effective
	// configuration's maintenance.windows); nil or none means disruptive
	// jobs may run at any time, unless SetWindows gave the device its own.
	Windows func() []config.Window
	// Serial reports whether a bus is a serial line: jobs on one serial
	// bus run one at a time. nil treats every named bus as serial.
	Serial func(bus string) bool
	// InUse checks the device's in-use rule right before a disruptive,
	// unforced job runs; true or an error make the job wait (in-use) and
	// re-check after Recheck. nil means no device has a rule.
	InUse func(ctx context.Context, device string) (bool, error)
	// Online reports whether a device answers; jobs of an offline device
	// wait (offline). nil means always online.
	Online func(device string) bool
	// Retryable classifies a failed attempt: true retries it after a
	// back-off while attempts remain. nil retries nothing.
	Retryable func(err error) bool

	MaxAttempts   int            // default of Spec.MaxAttempts; default 3
	BackoffBase   time.Duration  // first retry pause (before jitter); default 5s
	BackoffMax    time.Duration  // longest retry pause; default 5m
	Recheck       time.Duration  // re-check of in-use and offline devices; default 30s
	MaxResumes    int            // crash resumes of one job before it is verified instead; default 5
	ProgressEvery time.Duration  // least time between stored progress updates; default 1s
	Retention     time.Duration  // finished jobs are deleted this long after they ended; default 7 days
	MaxFinished   int            // at most this many finished jobs are kept; default 10000
	Rand          func() float64 // jitter source in [0,1); default math/rand/v2
}

func (o *Options) applyDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&o.MaxAttempts, 3)
	o.MaxAttempts = min(o.MaxAttempts, MaxAttempts)
	defInt(&o.MaxResumes, 5)
	defInt(&o.MaxFinished, 10000)
	defDur(&o.BackoffBase, 5*time.Second)
	defDur(&o.BackoffMax, 5*time.Minute)
	defDur(&o.Recheck, 30*time.Second)
	defDur(&o.ProgressEvery, time.Second)
	defDur(&o.Retention, 7*24*time.Hour)
}

// Queue is the durable job queue of one gateway. Submit, Get, List,
// Cancel, Counts, Subscribe, SetWindows and Poke are safe from any
// goroutine, before, during or after Run.
type Queue struct {
	db    *sql.DB
	opts  Options
	log   *slog.Logger
	clock clock.Clock

	// wmu serialises writes with their notifications, so subscribers see
	// a job's changes in commit order.
	wmu sync.Mutex

	mu         sync.Mutex
	runs       map[string]*run   // dispatched jobs by id
	devBusy    map[string]string // device -> dispatched job id
	busBusy    map[string]string // serial bus -> dispatched job id
	devWindows map[string][]window
	subs       map[int]func(Job)
	nextSub    int
	awaiters   map[string][]*awaiter // job id -> callers of Await
	noteOrder  []string
	noteJobs   map[string]Job

	wake     chan struct{}
	noteWake chan struct{}

	progMu   sync.Mutex              // guards progPend
	progPend map[string]progressNote // job id -> latest progress not written yet
	progWake chan struct{}
	active   atomic.Bool
	wg       sync.WaitGroup // run goroutines
	pruned   time.Time      // last prune (loop goroutine only)
}

// run is a dispatched job: its in-use check, execution or verification.
type run struct {
	cancel   context.CancelCauseFunc
	deadline time.Time // zero for verifications
	device   string
	bus      string
}

// Causes of a cancelled run context.
var (
	errCancelled = errors.New("job cancelled")
	errDeadline  = errors.New("job deadline passed")
)

// New creates the queue's tables in db when missing. It starts nothing.
// db may be shared with other packages; it should be SQLite in WAL mode
// with a busy timeout, since they all write to the same file.
func New(ctx context.Context, db *sql.DB, opts Options) (*Queue, error) {
	if db == nil {
		return nil, errors.New("new job queue: no database")
	}
	if opts.Executor == nil {
		return nil, errors.New("new job queue: no executor")
	}
	opts.applyDefaults()
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("create job queue tables: %w", err)
	}
	return &Queue{
		db: db, opts: opts, log: opts.Logger, clock: opts.Clock,
		runs: map[string]*run{}, devBusy: map[string]string{}, busBusy: map[string]string{},
		devWindows: map[string][]window{}, subs: map[int]func(Job){}, noteJobs: map[string]Job{},
		awaiters: map[string][]*awaiter{},
		wake:     make(chan struct{}, 1), noteWake: make(chan struct{}, 1),
		progPend: map[string]progressNote{}, progWake: make(chan struct{}, 1),
	}, nil
}

// Poke makes the scheduler look at the queue again now: call it when a
// device came online, its in-use state changed, or the gateway windows
// changed.
func (q *Queue) Poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Submit stores a new job, queued, and returns it. With a Key that is
// already stored it returns that job instead (whatever its state). Errors
// about the spec wrap ErrInvalid.
func (q *Queue) Submit(ctx context.Context, s Spec) (Job, error) {
	if err := s.normalize(q.opts.MaxAttempts); err != nil {
		return Job{}, err
	}
	id, err := newID()
	if err != nil {
		return Job{}, err
	}
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if s.Key != "" {
		old, err := dbQuery(ctx, q.db, "find job by key", `WHERE key = ?`, s.Key)
		if err != nil {
			return Job{}, err
		}
		if len(old) > 0 {
			return old[0], nil
		}
	}
	now := q.clock.Now()
	j := Job{
		ID: id, Key: s.Key, Kind: s.Kind, Device: s.Device, Bus: s.Bus, Payload: s.Payload, Source: s.Source,
		Disruptive: s.Disruptive, Force: s.Force, State: StateQueued, MaxAttempts: s.MaxAttempts,
		Deadline: s.Deadline, Created: now, Updated: now,
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return Job{}, fmt.Errorf("submit %s job for %s: %w", s.Kind, s.Device, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit a no-op
	var superseded []string
	if s.Supersede {
		// A write first, so the transaction never upgrades a read lock.
		rows, err := tx.QueryContext(ctx, `UPDATE jobs_queue SET state = 'cancelled', reason = '', error = ?, ended = ?, updated = ?,
			version = version + 1 WHERE device = ? AND kind = ? AND state IN ('queued','waiting') RETURNING id`,
			"superseded by "+id, nanos(now), nanos(now), s.Device, s.Kind)
		if err != nil {
			return Job{}, fmt.Errorf("supersede %s jobs of %s: %w", s.Kind, s.Device, err)
		}
		for rows.Next() {
			var old string
			if err := rows.Scan(&old); err == nil {
				superseded = append(superseded, old)
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return Job{}, fmt.Errorf("supersede %s jobs of %s: %w", s.Kind, s.Device, err)
		}
	}
	if err := dbInsert(ctx, tx, j); err != nil {
		return Job{}, err
	}
	if err := tx.Commit(); err != nil {
		return Job{}, fmt.Errorf("submit %s job for %s: %w", s.Kind, s.Device, err)
	}
	for _, old := range superseded {
		if oj, err := dbGet(context.WithoutCancel(ctx), q.db, old); err == nil {
			q.publish(oj)
		}
	}
	q.publish(j)
	q.log.Info("job queued", "job", j.ID, "device", j.Device, "kind", j.Kind, "source", string(j.Source),
		"disruptive", j.Disruptive, "force", j.Force)
	q.Poke()
	return j, nil
}

// Get returns one job.
func (q *Queue) Get(ctx context.Context, id string) (Job, error) {
	return dbGet(ctx, q.db, id)
}

// List returns the jobs matching f, newest first.
func (q *Queue) List(ctx context.Context, f Filter) ([]Job, error) {
	var (
		conds []string
		args  []any
	)
	if f.Device != "" {
		conds, args = append(conds, "device = ?"), append(args, f.Device)
	}
	if f.Kind != "" {
		conds, args = append(conds, "kind = ?"), append(args, f.Kind)
	}
	if len(f.States) > 0 {
		marks := make([]string, len(f.States))
		for i, s := range f.States {
			marks[i] = "?"
			args = append(args, string(s))
		}
		conds = append(conds, "state IN ("+strings.Join(marks, ",")+")")
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	return dbQuery(ctx, q.db, "list jobs", where+" ORDER BY seq DESC LIMIT ?", append(args, limit)...)
}

// Counts returns the number of stored jobs in each state; every State is
// present (zero when none), and a stored state this version does not know
// is counted under its own name.
func (q *Queue) Counts(ctx context.Context) (map[State]int, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT CAST(state AS TEXT), COUNT(*) FROM jobs_queue GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	out := make(map[State]int, len(States))
	for _, s := range States {
		out[s] = 0
	}
	for rows.Next() {
		var (
			s sql.NullString
			n int
		)
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		out[State(s.String)] += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	return out, nil
}

// Cancel cancels a job. A queued, waiting or interrupted job is cancelled
// at once. A running job gets its context cancelled and CancelRequested
// set; it ends cancelled when the executor returns an error (succeeded if
// the executor finished anyway). Cancelling a finished job returns it with
// ErrFinished.
func (q *Queue) Cancel(ctx context.Context, id string) (Job, error) {
	now := q.clock.Now()
	j, ok, err := q.apply(ctx, id, change{
		set:  "state = 'cancelled', reason = '', error = 'cancelled', ended = ?",
		args: []any{nanos(now)},
		when: "state IN " + pendingStates,
	})
	if err != nil {
		return Job{}, fmt.Errorf("cancel job %s: %w", id, err)
	}
	if ok {
		q.cancelRun(id) // an in-use check or verification in flight
		q.log.Info("job cancelled", "job", id, "device", j.Device, "kind", j.Kind)
		q.Poke()
		return j, nil
	}
	j, ok, err = q.apply(ctx, id, change{set: "cancel_requested = 1", when: "state = 'running'"})
	if err != nil {
		return Job{}, fmt.Errorf("cancel job %s: %w", id, err)
	}
	if ok {
		q.cancelRun(id)
		q.log.Info("job cancel requested", "job", id, "device", j.Device, "kind", j.Kind)
		return j, nil
	}
	j, err = dbGet(ctx, q.db, id)
	if err != nil {
		return Job{}, fmt.Errorf("cancel: %w", err)
	}
	if j.State.Final() {
		return j, fmt.Errorf("cancel job %s (%s): %w", id, j.State, ErrFinished)
	}
	return j, fmt.Errorf("cancel job %s: unknown state %q", id, j.State)
}

func (q *Queue) cancelRun(id string) {
	q.mu.Lock()
	r := q.runs[id]
	q.mu.Unlock()
	if r != nil {
		r.cancel(errCancelled)
	}
}

// Subscribe calls fn after every stored change of a job, with the job as
// stored, from one goroutine owned by Run, in commit order. When fn is
// slower than the changes, intermediate states of a job may be skipped:
// fn always sees a job's latest state. fn must not block for long. The
// returned function unsubscribes.
func (q *Queue) Subscribe(fn func(Job)) (unsubscribe func()) {
	q.mu.Lock()
	id := q.nextSub
	q.nextSub++
	q.subs[id] = fn
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		delete(q.subs, id)
		q.mu.Unlock()
	}
}

// SetWindows gives a device its own maintenance windows (from its
// desired.maintenance, see ParseMaintenance); they replace the gateway
// windows for that device. No windows clears them, so the gateway windows
// apply again. An invalid window is an error and changes nothing.
func (q *Queue) SetWindows(device string, ws []config.Window) error {
	if len(ws) > MaxWindows {
		return fmt.Errorf("set windows of %s: %d windows, at most %d", device, len(ws), MaxWindows)
	}
	compiled := make([]window, 0, len(ws))
	for i, w := range ws {
		c, err := compileWindow(w)
		if err != nil {
			return fmt.Errorf("set windows of %s: windows[%d]: %w", device, i, err)
		}
		compiled = append(compiled, c)
	}
	q.mu.Lock()
	if len(compiled) == 0 {
		delete(q.devWindows, device)
	} else {
		q.devWindows[device] = compiled
	}
	q.mu.Unlock()
	q.Poke()
	return nil
}

// change is one conditional update of a job row.
type change struct {
	set      string // assignments
	args     []any  // their arguments
	when     string // extra condition ("" for none)
	whenArgs []any  // its arguments
}

// apply runs c on job id; when a row changed it publishes the new job and
// returns it with true.
func (q *Queue) apply(ctx context.Context, id string, c change) (Job, bool, error) {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	query := "UPDATE jobs_queue SET " + c.set + ", version = version + 1, updated = ? WHERE id = ?"
	if c.when != "" {
		query += " AND " + c.when
	}
	args := append(append([]any{}, c.args...), nanos(q.clock.Now()), id)
	args = append(args, c.whenArgs...)
	res, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return Job{}, false, fmt.Errorf("update job %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return Job{}, false, err
	}
	j, err := dbGet(ctx, q.db, id)
	if err != nil {
		return Job{}, true, err
	}
	q.publish(j)
	return j, true, nil
}

// publish queues j for the subscribers and hands it to the callers of
// Await waiting for it; called under wmu.
func (q *Queue) publish(j Job) {
	q.mu.Lock()
	q.wakeAwaitersLocked(j)
	if len(q.subs) == 0 {
		q.mu.Unlock()
		return
	}
	if _, ok := q.noteJobs[j.ID]; !ok {
		q.noteOrder = append(q.noteOrder, j.ID)
	}
	q.noteJobs[j.ID] = j
	q.mu.Unlock()
	select {
	case q.noteWake <- struct{}{}:
	default:
	}
}

// notify delivers notes until stop is closed, then delivers what is left.
func (q *Queue) notify(stop <-chan struct{}) {
	deliver := func() {
		for {
			q.mu.Lock()
			if len(q.noteOrder) == 0 {
				q.mu.Unlock()
				return
			}
			id := q.noteOrder[0]
			q.noteOrder = q.noteOrder[1:]
			j := q.noteJobs[id]
			delete(q.noteJobs, id)
			subs := make([]func(Job), 0, len(q.subs))
			for _, fn := range q.subs {
				subs = append(subs, fn)
			}
			q.mu.Unlock()
			for _, fn := range subs {
				fn(j)
			}
		}
	}
	for {
		select {
		case <-q.noteWake:
			deliver()
		case <-stop:
			deliver()
			return
		}
	}
}

// awaiter is one caller of Await.
type awaiter struct {
	done  func(Job) bool
	ch    chan Job // receives the job once done holds (cap 1)
	last  Job      // the job as last stored, under Queue.mu
	seen  bool     // last is set, under Queue.mu
	fired bool     // under Queue.mu
}

// Await blocks until done holds for job id as stored: it is checked on the
// stored job now and on every later stored change (in commit order), and
// the job satisfying it is returned. When ctx ends first, Await returns the
// job as last stored and ctx's error; an unknown id is ErrNotFound. It
// works whether or not Run is running. done is called with the queue's
// lock held: it must be quick and must not call the Queue.
func (q *Queue) Await(ctx context.Context, id string, done func(Job) bool) (Job, error) {
	w := &awaiter{done: done, ch: make(chan Job, 1)}
	q.mu.Lock()
	q.awaiters[id] = append(q.awaiters[id], w)
	q.mu.Unlock()
	defer q.dropAwaiter(id, w)
	// Registered before the read: a change committed after the read
	// reaches w through publish, one committed before is in the read.
	j, err := dbGet(ctx, q.db, id)
	if err != nil {
		return Job{}, fmt.Errorf("await job %s: %w", id, err)
	}
	q.mu.Lock()
	if !w.seen || w.last.Version < j.Version {
		w.last, w.seen = j, true
	}
	cur := w.last
	q.mu.Unlock()
	if done(cur) {
		return cur, nil
	}
	select {
	case j := <-w.ch:
		return j, nil
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		return w.last, ctx.Err()
	}
}

// wakeAwaitersLocked hands j to the callers of Await it satisfies; the
// caller holds q.mu.
func (q *Queue) wakeAwaitersLocked(j Job) {
	for _, w := range q.awaiters[j.ID] {
		if w.fired || (w.seen && j.Version < w.last.Version) {
			continue
		}
		w.last, w.seen = j, true
		if w.done(j) {
			w.fired = true
			w.ch <- j
		}
	}
}

func (q *Queue) dropAwaiter(id string, w *awaiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ws := slices.DeleteFunc(q.awaiters[id], func(x *awaiter) bool { return x == w })
	if len(ws) == 0 {
		delete(q.awaiters, id)
	} else {
		q.awaiters[id] = ws
	}
}
