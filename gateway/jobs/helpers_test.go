package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/clock"
	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait of a test.
const waitFor = 10 * time.Second

// openDB opens a gateway-style SQLite database (WAL, busy timeout).
func openDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// testExec is a scriptable executor that counts what it did.
type testExec struct {
	mu        sync.Mutex
	fn        func(ctx context.Context, j Job, progress func(int, string)) (any, error)
	verify    func(ctx context.Context, j Job) (bool, error)
	resumable map[string]bool
	calls     map[string]int // job id -> Execute calls
	seen      []Job          // every Job given to Execute
	verified  map[string]int // job id -> Verify calls
}

func newExec(fn func(ctx context.Context, j Job, progress func(int, string)) (any, error)) *testExec {
	return &testExec{fn: fn, calls: map[string]int{}, verified: map[string]int{}}
}

func (e *testExec) Execute(ctx context.Context, j Job, progress func(int, string)) (any, error) {
	e.mu.Lock()
	e.calls[j.ID]++
	e.seen = append(e.seen, j)
	fn := e.fn
	e.mu.Unlock()
	if fn == nil {
		return map[string]any{"ok": true}, nil
	}
	return fn(ctx, j, progress)
}

func (e *testExec) Resumable(kind string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.resumable[kind]
}

func (e *testExec) Verify(ctx context.Context, j Job) (bool, error) {
	e.mu.Lock()
	e.verified[j.ID]++
	fn := e.verify
	e.mu.Unlock()
	if fn == nil {
		return false, errors.New("no verify function")
	}
	return fn(ctx, j)
}

func (e *testExec) callsOf(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[id]
}

func (e *testExec) verifiesOf(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.verified[id]
}

// watcher keeps the latest state of every job seen by a subscriber.
type watcher struct {
	mu      sync.Mutex
	latest  map[string]Job
	history map[string][]State
	changed chan struct{}
}

func newWatcher() *watcher {
	return &watcher{latest: map[string]Job{}, history: map[string][]State{}, changed: make(chan struct{})}
}

func (w *watcher) see(j Job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.latest[j.ID] = j
	if h := w.history[j.ID]; len(h) == 0 || h[len(h)-1] != j.State {
		w.history[j.ID] = append(h, j.State)
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// harness is a Queue running on a temp database with a fake clock.
type harness struct {
	t      *testing.T
	q      *Queue
	db     *sql.DB
	clock  *clock.Manual
	exec   *testExec
	w      *watcher
	cancel context.CancelFunc
	done   chan error
}

// start is a monday 12:00 UTC: outside the test windows at 02:00.
var start = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, exec *testExec, tune func(*Options)) *harness {
	t.Helper()
	return newHarnessDB(t, openDB(t, filepath.Join(t.TempDir(), "gw.db")), exec, nil, tune)
}

// newHarnessDB runs a queue on db; before, when set, runs between New
// and Run (to plant rows).
func newHarnessDB(t *testing.T, db *sql.DB, exec *testExec, before func(q *Queue), tune func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, db: db, clock: clock.NewManual(start), exec: exec, w: newWatcher()}
	opts := Options{Executor: exec, Clock: h.clock, Rand: func() float64 { return 0.5 }}
	if tune != nil {
		tune(&opts)
	}
	q, err := New(context.Background(), h.db, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.q = q
	q.Subscribe(h.w.see)
	if before != nil {
		before(q)
	}
	h.run()
	return h
}

// sub returns h reporting to the subtest t (do not stop or run it).
func (h *harness) sub(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// run starts Run; stop ends it (also at cleanup).
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.q.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitFor):
		h.t.Errorf("Run did not return within %v", waitFor)
	}
}

func (h *harness) submit(s Spec) Job {
	h.t.Helper()
	j, err := h.q.Submit(context.Background(), s)
	if err != nil {
		h.t.Fatalf("Submit(%+v): %v", s, err)
	}
	return j
}

// await waits until job id satisfies ok (as seen by the subscriber or the
// database) and returns it.
func (h *harness) await(id, what string, ok func(Job) bool) Job {
	h.t.Helper()
	deadline := time.After(waitFor)
	for {
		h.w.mu.Lock()
		j, seen := h.w.latest[id]
		ch := h.w.changed
		h.w.mu.Unlock()
		if seen && ok(j) {
			return j
		}
		if dj, err := h.q.Get(context.Background(), id); err == nil && ok(dj) {
			return dj
		}
		select {
		case <-ch:
		case <-deadline:
			got, _ := h.q.Get(context.Background(), id)
			h.t.Fatalf("job %s: waited %v for %s; now %s(%s) attempts=%d error=%q history=%v",
				id, waitFor, what, got.State, got.Reason, got.Attempts, got.Error, h.history(id))
		}
	}
}

func (h *harness) awaitState(id string, s State, r Reason) Job {
	h.t.Helper()
	return h.await(id, fmt.Sprintf("%s(%s)", s, r), func(j Job) bool { return j.State == s && j.Reason == r })
}

func (h *harness) history(id string) []State {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	return append([]State(nil), h.w.history[id]...)
}

// counter tracks in-flight work and the most ever seen at once.
type counter struct {
	cur, max atomic.Int32
}

func (c *counter) enter() {
	n := c.cur.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (c *counter) leave() { c.cur.Add(-1) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
