package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/internal/crashtest"
)

// helperEnv names the database a TestHelperProcess child works on.
const helperEnv = "DROVER_JOBS_HELPER_DB"

// TestHelperProcess is the child of TestCrashRecovery, not a test: it
// runs a queue with one finished job and three jobs whose executor blocks
// (a reboot, a factory reset, a resumable firmware flash), prints READY
// once all three are stored running, and waits to be killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process of TestCrashRecovery")
	}
	// Bound the child's life if the parent never kills it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := openDB(t, path)
	ex := newExec(func(ctx context.Context, j Job, progress func(int, string)) (any, error) {
		if j.Device == "done" {
			return "applied", nil
		}
		progress(40, "halfway")
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ex.resumable = map[string]bool{KindFirmware: true}
	// Every progress update stored: READY waits for the 40% to be on disk.
	q, err := New(ctx, db, Options{Executor: ex, ProgressEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	w := newWatcher()
	q.Subscribe(w.see)
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	h := &harness{t: t, q: q, w: w}
	first := h.submit(Spec{Kind: KindConfig, Device: "done", Key: "desired:done:1"})
	h.awaitState(first.ID, StateSucceeded, ReasonNone)
	for _, s := range []Spec{
		{Kind: KindReboot, Device: "pump-1", Bus: "rs485-1", Force: true},
		{Kind: KindFactoryReset, Device: "pump-2", Bus: "rs485-2", Force: true},
		{Kind: KindFirmware, Device: "mcu-1", Bus: "uart", Force: true},
	} {
		j := h.submit(s)
		h.await(j.ID, "running at 40%", func(j Job) bool { return j.State == StateRunning && j.Progress == 40 })
	}
	fmt.Println("READY")
	<-ctx.Done()
	<-done
}

// TestCrashRecovery kills a real queue process with SIGKILL in the middle
// of three jobs and checks what a new queue on the same database does: the
// reboot (verified done) and the factory reset (verified not applied) are
// never executed again, the firmware flash resumes, the finished job is
// untouched.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("inside the helper process")
	}
	path := filepath.Join(t.TempDir(), "gw.db")
	crashtest.KillAtReady(t, "TestHelperProcess", waitFor, helperEnv+"="+path)

	db := openDB(t, path)
	before := jobsByDevice(t, db)
	want := map[string]State{"done": StateSucceeded, "pump-1": StateRunning, "pump-2": StateRunning, "mcu-1": StateRunning}
	for dev, s := range want {
		if before[dev].State != s {
			t.Fatalf("after the kill %s is %s, want %s", dev, before[dev].State, s)
		}
	}

	ex := newExec(func(_ context.Context, j Job, progress func(int, string)) (any, error) {
		progress(80, "resumed")
		return map[string]any{"resumes": j.Resumes}, nil
	})
	ex.resumable = map[string]bool{KindFirmware: true}
	ex.verify = func(_ context.Context, j Job) (bool, error) {
		return j.Kind == KindReboot, nil // pump-1 answered after a reboot; pump-2 still has its config
	}
	h := newHarnessDB(t, db, ex, nil, nil)
	reboot := h.awaitState(before["pump-1"].ID, StateSucceeded, ReasonVerified)
	reset := h.awaitState(before["pump-2"].ID, StateFailed, ReasonNone)
	flash := h.awaitState(before["mcu-1"].ID, StateSucceeded, ReasonNone)

	if reset.Error != "interrupted; device state verified: not applied" {
		t.Errorf("factory reset error %q", reset.Error)
	}
	for _, j := range []Job{reboot, reset} {
		if n := ex.callsOf(j.ID); n != 0 {
			t.Errorf("%s %s executed %d times after the crash; must never be repeated blindly", j.Kind, j.ID, n)
		}
		if n := ex.verifiesOf(j.ID); n != 1 {
			t.Errorf("%s verified %d times, want 1", j.Kind, n)
		}
		if j.Attempts != 1 {
			t.Errorf("%s attempts %d, want 1", j.Kind, j.Attempts)
		}
	}
	if n := ex.callsOf(flash.ID); n != 1 || flash.Resumes != 1 || flash.Attempts != 2 || string(flash.Result) != `{"resumes":1}` {
		t.Errorf("firmware: %d calls, resumes %d, attempts %d, result %s; want resumed once", n, flash.Resumes, flash.Attempts, flash.Result)
	}
	done := before["done"]
	after, err := h.q.Get(context.Background(), done.ID)
	if err != nil || after.State != StateSucceeded || after.Version != done.Version || !after.Updated.Equal(done.Updated) || !after.Ended.Equal(done.Ended) ||
		ex.callsOf(done.ID) != 0 {
		t.Errorf("finished job touched: before %+v after %+v (%v), %d calls", done, after, err, ex.callsOf(done.ID))
	}
	// Submitting the finished job's key again does not re-run it.
	if again := h.submit(Spec{Kind: KindConfig, Device: "done", Key: "desired:done:1"}); again.ID != done.ID {
		t.Errorf("same key created job %s, want %s", again.ID, done.ID)
	}
}

func jobsByDevice(t *testing.T, db *sql.DB) map[string]Job {
	t.Helper()
	all, err := dbQuery(context.Background(), db, "list", "ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Job{}
	for _, j := range all {
		out[j.Device] = j
	}
	return out
}

// plant inserts a raw row, columns given override the defaults.
func plant(t *testing.T, db *sql.DB, cols map[string]any) string {
	t.Helper()
	row := map[string]any{"kind": KindConfig, "device": "d", "state": "queued", "max_attempts": 3}
	for k, v := range cols {
		row[k] = v
	}
	if _, ok := row["id"]; !ok {
		id, err := newID()
		if err != nil {
			t.Fatal(err)
		}
		row["id"] = id
	}
	names := sortedKeys(row)
	marks := strings.TrimSuffix(strings.Repeat("?,", len(names)), ",")
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = row[n]
	}
	if _, err := db.Exec(`INSERT INTO jobs_queue (`+strings.Join(names, ",")+`) VALUES (`+marks+`)`, args...); err != nil {
		t.Fatalf("plant %v: %v", row, err)
	}
	return row["id"].(string)
}

// TestRecovery covers each way a job found running at start is handled.
func TestRecovery(t *testing.T) {
	errNoAnswer := errors.New("no answer")
	cases := []struct {
		name       string
		row        map[string]any
		verify     []error // Verify results in turn: nil = done, errNotApplied = not done, else error
		noVerifier bool
		advance    []time.Duration // clock steps between verifications
		state      State
		reason     Reason
		errText    string
		executes   int
		verifies   int
	}{
		{"reboot verified done", map[string]any{"kind": KindReboot}, []error{nil}, false, nil,
			StateSucceeded, ReasonVerified, "", 0, 1},
		{"reboot verified not applied", map[string]any{"kind": KindReboot}, []error{errNotApplied}, false, nil,
			StateFailed, ReasonNone, "interrupted; device state verified: not applied", 0, 1},
		{"reset verified after retries", map[string]any{"kind": KindFactoryReset}, []error{errNoAnswer, errNoAnswer, nil}, false,
			[]time.Duration{time.Minute, time.Minute}, StateSucceeded, ReasonVerified, "", 0, 3},
		{"config never verifiable", map[string]any{"kind": KindConfig, "max_attempts": 2}, []error{errNoAnswer, errNoAnswer}, false,
			[]time.Duration{time.Minute}, StateFailed, ReasonNone, "interrupted; device state could not be verified: no answer", 0, 2},
		{"kind that cannot be verified", map[string]any{"kind": "method:calibrate", "max_attempts": 3},
			[]error{fmt.Errorf("calibrate: %w", ErrUnverifiable)}, false, nil,
			StateFailed, ReasonNone, "interrupted; device state not verified: calibrate: cannot be verified on the device", 0, 1},
		{"no verifier", map[string]any{"kind": KindReboot}, nil, true, nil,
			StateFailed, ReasonNone, "interrupted; device state not verified (no verifier for this kind)", 0, 0},
		{"firmware resumes", map[string]any{"kind": KindFirmware, "attempts": 1}, nil, false, nil,
			StateSucceeded, ReasonNone, "", 1, 0},
		{"firmware cancelled before the crash", map[string]any{"kind": KindFirmware, "cancel_requested": 1}, nil, false, nil,
			StateCancelled, ReasonNone, "cancelled (the gateway stopped meanwhile)", 0, 0},
		{"firmware resumed too often is verified", map[string]any{"kind": KindFirmware, "resumes": 5}, []error{nil}, false, nil,
			StateSucceeded, ReasonVerified, "", 0, 1},
		{"corrupt running row", map[string]any{"kind": KindReboot, "payload": "{oops"}, nil, false, nil,
			StateFailed, ReasonNone, "stored job is corrupt: payload is not valid JSON", 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			ex := newExec(nil)
			ex.resumable = map[string]bool{KindFirmware: true}
			ex.verify = func(context.Context, Job) (bool, error) {
				i := int(n.Add(1)) - 1
				if i >= len(tc.verify) {
					return false, errors.New("unexpected verification")
				}
				if errors.Is(tc.verify[i], errNotApplied) {
					return false, nil
				}
				return tc.verify[i] == nil, tc.verify[i]
			}
			db := openDB(t, filepath.Join(t.TempDir(), "gw.db"))
			row := map[string]any{"state": "running", "attempts": 1}
			for k, v := range tc.row {
				row[k] = v
			}
			var id string
			h := newHarnessDB(t, db, ex, func(*Queue) { id = plant(t, db, row) }, func(o *Options) {
				o.BackoffBase = 5 * time.Second
				if tc.noVerifier {
					o.Executor = struct{ Executor }{ex}
				}
			})
			for i, d := range tc.advance {
				h.await(id, fmt.Sprintf("verification %d", i+1), func(j Job) bool {
					return j.State == StateInterrupted && j.Reason == ReasonVerify && !j.NotBefore.IsZero() && int(n.Load()) == i+1
				})
				h.clock.Advance(d)
			}
			got := h.await(id, string(tc.state), func(j Job) bool { return j.State.Final() })
			if got.State != tc.state || got.Reason != tc.reason || got.Error != tc.errText ||
				ex.callsOf(id) != tc.executes || ex.verifiesOf(id) != tc.verifies {
				t.Errorf("got %s(%s) %q, %d executes, %d verifies; want %s(%s) %q, %d, %d",
					got.State, got.Reason, got.Error, ex.callsOf(id), ex.verifiesOf(id),
					tc.state, tc.reason, tc.errText, tc.executes, tc.verifies)
			}
		})
	}
}

var errNotApplied = errors.New("verified: not applied")

// TestShutdownMidJob stops Run while a reboot runs: the job stays running
// in the database and the next Run verifies it instead of rebooting again.
func TestShutdownMidJob(t *testing.T) {
	started := make(chan struct{}, 1)
	ex := newExec(func(ctx context.Context, j Job, _ func(int, string)) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ex.verify = func(context.Context, Job) (bool, error) { return true, nil }
	h := newHarness(t, ex, nil)
	j := h.submit(Spec{Kind: KindReboot, Device: "d", Force: true})
	<-started
	h.stop()
	if got, _ := h.q.Get(context.Background(), j.ID); got.State != StateRunning {
		t.Fatalf("after shutdown: %s, want running", got.State)
	}
	h.run()
	got := h.awaitState(j.ID, StateSucceeded, ReasonVerified)
	if ex.callsOf(j.ID) != 1 || got.Attempts != 1 {
		t.Errorf("reboot executed %d times, attempts %d; want once", ex.callsOf(j.ID), got.Attempts)
	}
}

// TestGarbageRows plants rows no version of this package writes and
// checks that nothing panics, corrupt pending jobs fail without running,
// and the rest of the queue works.
func TestGarbageRows(t *testing.T) {
	ex := newExec(nil)
	db := openDB(t, filepath.Join(t.TempDir(), "gw.db"))
	ids := map[string]string{}
	h := newHarnessDB(t, db, ex, func(*Queue) {
		ids["bad payload"] = plant(t, db, map[string]any{"payload": "{not json"})
		ids["empty payload"] = plant(t, db, map[string]any{"payload": ""})
		ids["unknown kind"] = plant(t, db, map[string]any{"kind": "explode"})
		ids["no device"] = plant(t, db, map[string]any{"device": ""})
		ids["unknown state"] = plant(t, db, map[string]any{"state": "exploded"})
		ids["text numbers"] = plant(t, db, map[string]any{"device": "t", "attempts": "abc", "progress": "lots",
			"deadline": "soon", "max_attempts": "x", "not_before": "later", "disruptive": "maybe"})
		ids["huge numbers"] = plant(t, db, map[string]any{"device": "u", "progress": 1000, "attempts": -7, "max_attempts": 1 << 40})
		ids["bad result"] = plant(t, db, map[string]any{"state": "succeeded", "result": "[1,", "device": "v", "ended": start.UnixNano()})
		ids["blob payload"] = plant(t, db, map[string]any{"device": "w", "payload": []byte{0xff, 0x00, 0xfe}})
	}, nil)
	ctx := context.Background()
	wantFailed := []string{"bad payload", "empty payload", "unknown kind", "no device", "blob payload"}
	for _, name := range wantFailed {
		got := h.await(ids[name], "failed", func(j Job) bool { return j.State == StateFailed })
		if !strings.HasPrefix(got.Error, "stored job is corrupt") || ex.callsOf(ids[name]) != 0 {
			t.Errorf("%s: %+v, %d calls", name, got, ex.callsOf(ids[name]))
		}
	}
	for _, name := range []string{"text numbers", "huge numbers"} {
		got := h.await(ids[name], "succeeded", func(j Job) bool { return j.State == StateSucceeded })
		if got.Progress != 100 || got.Attempts < 1 {
			t.Errorf("%s: %+v", name, got)
		}
	}
	if got, err := h.q.Get(ctx, ids["bad result"]); err != nil || got.Result != nil || got.State != StateSucceeded {
		t.Errorf("bad result: %+v, %v", got, err)
	}
	got, err := h.q.Get(ctx, ids["unknown state"])
	if err != nil || got.State != "exploded" || ex.callsOf(ids["unknown state"]) != 0 {
		t.Errorf("unknown state: %+v, %v", got, err)
	}
	if _, err := h.q.Cancel(ctx, ids["unknown state"]); err == nil {
		t.Error("cancel of an unknown state accepted")
	}
	counts, err := h.q.Counts(ctx)
	if err != nil || counts["exploded"] != 1 || counts[StateFailed] != len(wantFailed) {
		t.Errorf("Counts = %v, %v", counts, err)
	}
	list, err := h.q.List(ctx, Filter{})
	if err != nil || len(list) != len(ids) {
		t.Fatalf("List = %d jobs, %v", len(list), err)
	}
	for _, j := range list {
		if _, err := json.Marshal(j); err != nil {
			t.Errorf("job %s does not marshal: %v", j.ID, err)
		}
	}
	// The queue still works.
	j := h.submit(Spec{Kind: KindConfig, Device: "fresh"})
	h.awaitState(j.ID, StateSucceeded, ReasonNone)
}

func TestPrune(t *testing.T) {
	ex := newExec(nil)
	db := openDB(t, filepath.Join(t.TempDir(), "gw.db"))
	old := start.Add(-8 * 24 * time.Hour)
	var keep []string
	h := newHarnessDB(t, db, ex, func(*Queue) {
		plant(t, db, map[string]any{"state": "succeeded", "ended": old.UnixNano()})
		plant(t, db, map[string]any{"state": "failed", "ended": old.UnixNano()})
		keep = append(keep, plant(t, db, map[string]any{"state": "queued", "kind": KindReboot, "disruptive": 1, "created": old.UnixNano()}))
		for range 4 {
			plant(t, db, map[string]any{"state": "cancelled", "ended": start.UnixNano()})
		}
		keep = append(keep, plant(t, db, map[string]any{"state": "cancelled", "ended": start.UnixNano()}))
		keep = append(keep, plant(t, db, map[string]any{"state": "succeeded", "ended": start.UnixNano()}))
	}, func(o *Options) {
		o.MaxFinished = 2
		o.Windows = func() []config.Window { return nightly }
	})
	h.awaitState(keep[0], StateWaiting, ReasonWindow) // a pass ran
	all, err := h.q.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range all {
		got = append(got, j.ID)
	}
	sort.Strings(got)
	sort.Strings(keep)
	if strings.Join(got, ",") != strings.Join(keep, ",") {
		t.Errorf("kept %v, want %v", got, keep)
	}
}
