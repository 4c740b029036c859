package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/config"
)

var nightly = []config.Window{{Cron: "0 2 * * *", Duration: 2 * time.Hour, Timezone: "UTC"}}

// opening is the first 02:00 UTC after start.
var opening = time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)

func TestWindows(t *testing.T) {
	cases := []struct {
		name     string
		spec     Spec
		global   []config.Window
		device   []config.Window // SetWindows for the job's device
		waits    bool            // waits for a window before running
		openedAt time.Time       // when the window opens
	}{
		{"reboot waits for the gateway window", Spec{Kind: KindReboot, Device: "pump-1"}, nightly, nil, true, opening},
		{"forced reboot ignores the window", Spec{Kind: KindReboot, Device: "pump-1", Force: true}, nightly, nil, false, time.Time{}},
		{"config is not disruptive", Spec{Kind: KindConfig, Device: "pump-1"}, nightly, nil, false, time.Time{}},
		{"disruptive config waits", Spec{Kind: KindConfig, Device: "pump-1", Disruptive: true}, nightly, nil, true, opening},
		{"no windows: runs at once", Spec{Kind: KindReboot, Device: "pump-1"}, nil, nil, false, time.Time{}},
		{"device window replaces the gateway's", Spec{Kind: KindFirmware, Device: "pump-1"}, nightly,
			[]config.Window{{Cron: "30 13 * * *", Duration: time.Hour, Timezone: "UTC"}}, true, start.Add(90 * time.Minute)},
		{"device window open now", Spec{Kind: KindFactoryReset, Device: "pump-1"}, nightly,
			[]config.Window{{Cron: "0 11 * * *", Duration: 2 * time.Hour, Timezone: "UTC"}}, false, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exec := newExec(nil)
			h := newHarness(t, exec, func(o *Options) { o.Windows = func() []config.Window { return tc.global } })
			if err := h.q.SetWindows("pump-1", tc.device); err != nil {
				t.Fatalf("SetWindows: %v", err)
			}
			j := h.submit(tc.spec)
			if !tc.waits {
				got := h.awaitState(j.ID, StateSucceeded, ReasonNone)
				if got.Attempts != 1 || got.Progress != 100 || string(got.Result) != `{"ok":true}` {
					t.Errorf("finished job: %+v", got)
				}
				return
			}
			h.awaitState(j.ID, StateWaiting, ReasonWindow)
			h.clock.Set(tc.openedAt.Add(-time.Second))
			// Still closed a second before; the scheduler must not run it.
			if got, _ := h.q.Get(context.Background(), j.ID); got.State != StateWaiting || exec.callsOf(j.ID) != 0 {
				t.Fatalf("ran before the window: %s, %d calls", got.State, exec.callsOf(j.ID))
			}
			h.clock.Set(tc.openedAt)
			got := h.awaitState(j.ID, StateSucceeded, ReasonNone)
			if !got.Started.Equal(tc.openedAt) {
				t.Errorf("started at %v, want the opening %v", got.Started, tc.openedAt)
			}
		})
	}
}

func TestSetWindowsRejectsGarbage(t *testing.T) {
	h := newHarness(t, newExec(nil), nil)
	cases := []struct {
		name string
		ws   []config.Window
	}{
		{"bad cron", []config.Window{{Cron: "nope", Duration: time.Hour}}},
		{"zero duration", []config.Window{{Cron: "@daily"}}},
		{"bad zone", []config.Window{{Cron: "@daily", Duration: time.Hour, Timezone: "Nowhere/Else"}}},
		{"too many", make([]config.Window, MaxWindows+1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.q.SetWindows("d", tc.ws); err == nil {
				t.Errorf("SetWindows(%+v) accepted", tc.ws)
			}
		})
	}
}

func TestInUse(t *testing.T) {
	var inUse atomic.Bool
	inUse.Store(true)
	var checks atomic.Int32
	exec := newExec(nil)
	h := newHarness(t, exec, func(o *Options) {
		o.Recheck = time.Minute
		o.InUse = func(_ context.Context, device string) (bool, error) {
			checks.Add(1)
			if device == "broken" {
				return false, errors.New("read timeout")
			}
			return inUse.Load(), nil
		}
	})

	t.Run("refused then re-checked", func(t *testing.T) {
		h := h.sub(t)
		j := h.submit(Spec{Kind: KindReboot, Device: "pump-1"})
		w := h.awaitState(j.ID, StateWaiting, ReasonInUse)
		if exec.callsOf(j.ID) != 0 || w.Attempts != 0 || !strings.Contains(w.Error, "in use") {
			t.Fatalf("in use: %d calls, %+v", exec.callsOf(j.ID), w)
		}
		if !w.NotBefore.Equal(start.Add(time.Minute)) {
			t.Errorf("re-check at %v, want %v", w.NotBefore, start.Add(time.Minute))
		}
		before := checks.Load()
		h.clock.Advance(time.Minute) // still in use: checked again, still waiting
		h.await(j.ID, "second check", func(Job) bool { return checks.Load() > before })
		h.awaitState(j.ID, StateWaiting, ReasonInUse)
		inUse.Store(false)
		h.clock.Advance(time.Minute)
		got := h.awaitState(j.ID, StateSucceeded, ReasonNone)
		if got.Attempts != 1 || exec.callsOf(j.ID) != 1 {
			t.Errorf("after release: attempts %d, calls %d", got.Attempts, exec.callsOf(j.ID))
		}
		inUse.Store(true)
	})
	t.Run("force skips the rule", func(t *testing.T) {
		h := h.sub(t)
		before := checks.Load()
		j := h.submit(Spec{Kind: KindReboot, Device: "pump-2", Force: true})
		h.awaitState(j.ID, StateSucceeded, ReasonNone)
		if checks.Load() != before {
			t.Error("the in-use rule was checked for a forced job")
		}
	})
	t.Run("not disruptive: no check", func(t *testing.T) {
		h := h.sub(t)
		before := checks.Load()
		j := h.submit(Spec{Kind: KindConfig, Device: "pump-3"})
		h.awaitState(j.ID, StateSucceeded, ReasonNone)
		if checks.Load() != before {
			t.Error("the in-use rule was checked for a config job")
		}
	})
	t.Run("check error waits", func(t *testing.T) {
		h := h.sub(t)
		j := h.submit(Spec{Kind: KindFactoryReset, Device: "broken"})
		w := h.awaitState(j.ID, StateWaiting, ReasonInUse)
		if !strings.Contains(w.Error, "read timeout") || exec.callsOf(j.ID) != 0 {
			t.Errorf("check error: %+v, %d calls", w, exec.callsOf(j.ID))
		}
		if _, err := h.q.Cancel(context.Background(), j.ID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("executor refusal is a deferral", func(t *testing.T) {
		h := h.sub(t)
		var n atomic.Int32
		exec.mu.Lock()
		exec.fn = func(ctx context.Context, j Job, _ func(int, string)) (any, error) {
			if n.Add(1) == 1 {
				return nil, fmt.Errorf("plugin says: %w", ErrInUse)
			}
			return "done", nil
		}
		exec.mu.Unlock()
		j := h.submit(Spec{Kind: "method:flush", Device: "pump-4"})
		w := h.awaitState(j.ID, StateWaiting, ReasonInUse)
		if w.Attempts != 0 {
			t.Errorf("deferral counted: attempts %d", w.Attempts)
		}
		h.clock.Advance(time.Minute)
		got := h.awaitState(j.ID, StateSucceeded, ReasonNone)
		if got.Attempts != 1 || string(got.Result) != `"done"` {
			t.Errorf("got %+v", got)
		}
	})
}

func TestCancel(t *testing.T) {
	started := make(chan string, 10)
	exec := newExec(func(ctx context.Context, j Job, progress func(int, string)) (any, error) {
		progress(10, "erasing")
		started <- j.ID
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h := newHarness(t, exec, func(o *Options) { o.Windows = func() []config.Window { return nightly } })
	ctx := context.Background()

	t.Run("waiting", func(t *testing.T) {
		h := h.sub(t)
		j := h.submit(Spec{Kind: KindReboot, Device: "a"})
		h.awaitState(j.ID, StateWaiting, ReasonWindow)
		got, err := h.q.Cancel(ctx, j.ID)
		if err != nil || got.State != StateCancelled || got.Ended.IsZero() {
			t.Fatalf("Cancel = %+v, %v", got, err)
		}
		h.clock.Set(opening) // the window opens: nothing runs
		h.clock.Set(start)
		if exec.callsOf(j.ID) != 0 {
			t.Error("a cancelled job ran")
		}
	})
	t.Run("queued", func(t *testing.T) {
		h.stop() // nothing schedules: the job stays queued
		j := h.submit(Spec{Kind: KindConfig, Device: "b"})
		got, err := h.q.Cancel(ctx, j.ID)
		if err != nil || got.State != StateCancelled {
			t.Fatalf("Cancel = %+v, %v", got, err)
		}
		h.run()
	})
	t.Run("running", func(t *testing.T) {
		h := h.sub(t)
		j := h.submit(Spec{Kind: "method:selftest", Device: "c"})
		if id := <-started; id != j.ID {
			t.Fatalf("started %s, want %s", id, j.ID)
		}
		got, err := h.q.Cancel(ctx, j.ID)
		if err != nil || !got.CancelRequested {
			t.Fatalf("Cancel = %+v, %v", got, err)
		}
		end := h.awaitState(j.ID, StateCancelled, ReasonNone)
		if !strings.Contains(end.Error, "cancelled") || end.Progress != 10 || end.Message != "erasing" || end.Attempts != 1 {
			t.Errorf("cancelled job: %+v", end)
		}
	})
	t.Run("finished", func(t *testing.T) {
		h := h.sub(t)
		j := h.submit(Spec{Kind: KindConfig, Device: "d"})
		<-started
		if _, err := h.q.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		h.awaitState(j.ID, StateCancelled, ReasonNone)
		got, err := h.q.Cancel(ctx, j.ID)
		if !errors.Is(err, ErrFinished) || got.State != StateCancelled {
			t.Errorf("second Cancel = %+v, %v; want ErrFinished", got, err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		h := h.sub(t)
		if _, err := h.q.Cancel(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Cancel(nope) = %v, want ErrNotFound", err)
		}
	})
}

func TestDeadline(t *testing.T) {
	exec := newExec(func(ctx context.Context, j Job, _ func(int, string)) (any, error) {
		if j.Device == "slow" {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, nil
	})
	h := newHarness(t, exec, func(o *Options) { o.Windows = func() []config.Window { return nightly } })

	t.Run("waiting job", func(t *testing.T) {
		h := h.sub(t)
		j := h.submit(Spec{Kind: KindReboot, Device: "a", Deadline: start.Add(time.Hour)})
		h.awaitState(j.ID, StateWaiting, ReasonWindow)
		h.clock.Advance(time.Hour)
		got := h.awaitState(j.ID, StateFailed, ReasonDeadline)
		if got.Error != "deadline" || exec.callsOf(j.ID) != 0 {
			t.Errorf("got %+v, %d calls", got, exec.callsOf(j.ID))
		}
	})
	t.Run("running job", func(t *testing.T) {
		h := h.sub(t)
		now := h.clock.Now()
		j := h.submit(Spec{Kind: KindConfig, Device: "slow", Deadline: now.Add(time.Minute)})
		h.awaitState(j.ID, StateRunning, ReasonNone)
		h.clock.Advance(time.Minute)
		got := h.awaitState(j.ID, StateFailed, ReasonDeadline)
		if got.Attempts != 1 {
			t.Errorf("attempts %d", got.Attempts)
		}
	})
	t.Run("already passed", func(t *testing.T) {
		h := h.sub(t)
		j := h.submit(Spec{Kind: KindConfig, Device: "b", Deadline: h.clock.Now().Add(-time.Second)})
		h.awaitState(j.ID, StateFailed, ReasonDeadline)
	})
}

func TestRetry(t *testing.T) {
	errFlaky := errors.New("timeout")
	errFatal := errors.New("illegal data value")
	cases := []struct {
		name         string
		failures     int // attempts failing before success
		err          error
		maxAttempts  int
		wantState    State
		wantAttempts int
		wantError    string
	}{
		{"succeeds on the third", 2, errFlaky, 3, StateSucceeded, 3, ""},
		{"gives up after max", 5, errFlaky, 3, StateFailed, 3, "attempt 3 of 3: timeout"},
		{"single attempt", 5, errFlaky, 1, StateFailed, 1, "timeout"},
		{"fatal at once", 5, errFatal, 5, StateFailed, 1, "illegal data value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			exec := newExec(func(context.Context, Job, func(int, string)) (any, error) {
				if int(n.Add(1)) <= tc.failures {
					return nil, tc.err
				}
				return nil, nil
			})
			h := newHarness(t, exec, func(o *Options) {
				o.BackoffBase, o.BackoffMax = 10*time.Second, 30*time.Second
				o.Retryable = func(err error) bool { return errors.Is(err, errFlaky) }
			})
			j := h.submit(Spec{Kind: KindConfig, Device: "d", MaxAttempts: tc.maxAttempts})
			// Rand is 0.5: pauses are 3/4 of 10s, 20s, 30s (capped).
			pauses := []time.Duration{7500 * time.Millisecond, 15 * time.Second, 22500 * time.Millisecond, 22500 * time.Millisecond}
			for i := 1; i < tc.wantAttempts; i++ {
				w := h.await(j.ID, fmt.Sprintf("retry %d", i), func(j Job) bool {
					return j.State == StateWaiting && j.Reason == ReasonRetry && j.Attempts == i
				})
				if got := w.NotBefore.Sub(h.clock.Now()); got != pauses[i-1] {
					t.Errorf("pause after attempt %d = %v, want %v", i, got, pauses[i-1])
				}
				h.clock.Advance(pauses[i-1] - time.Millisecond)
				if exec.callsOf(j.ID) != i {
					t.Fatalf("retried before the back-off: %d calls", exec.callsOf(j.ID))
				}
				h.clock.Advance(time.Millisecond)
			}
			got := h.await(j.ID, string(tc.wantState), func(j Job) bool { return j.State.Final() })
			if got.State != tc.wantState || got.Attempts != tc.wantAttempts || got.Error != tc.wantError ||
				exec.callsOf(j.ID) != tc.wantAttempts {
				t.Errorf("got %s attempts=%d calls=%d error=%q; want %s %d %q", got.State, got.Attempts,
					exec.callsOf(j.ID), got.Error, tc.wantState, tc.wantAttempts, tc.wantError)
			}
		})
	}
}

func TestOffline(t *testing.T) {
	var online atomic.Bool
	exec := newExec(nil)
	h := newHarness(t, exec, func(o *Options) { o.Online = func(string) bool { return online.Load() } })
	j := h.submit(Spec{Kind: KindConfig, Device: "d"})
	h.awaitState(j.ID, StateWaiting, ReasonOffline)
	online.Store(true)
	h.q.Poke()
	h.awaitState(j.ID, StateSucceeded, ReasonNone)
}

// TestExclusivity runs many jobs at once and checks that no device ever
// runs two and no serial bus ever carries two, while a TCP bus does.
func TestExclusivity(t *testing.T) {
	const perDevice = 6
	devices := map[string]string{ // device -> bus
		"s1a": "rs485-1", "s1b": "rs485-1", "s1c": "rs485-1",
		"s2a": "rs485-2", "s2b": "rs485-2",
		"t1": "lan", "t2": "lan", "t3": "lan", "t4": "lan",
	}
	var mu sync.Mutex
	devCount := map[string]*counter{}
	busCount := map[string]*counter{}
	for d, b := range devices {
		devCount[d] = &counter{}
		if busCount[b] == nil {
			busCount[b] = &counter{}
		}
	}
	// TCP jobs hold until two TCP jobs overlap (or give up), proving
	// that the TCP bus is not serialised.
	overlap := make(chan struct{})
	var overlapOnce sync.Once
	exec := newExec(func(ctx context.Context, j Job, _ func(int, string)) (any, error) {
		mu.Lock()
		dc, bc := devCount[j.Device], busCount[j.Bus]
		mu.Unlock()
		dc.enter()
		bc.enter()
		defer dc.leave()
		defer bc.leave()
		if j.Bus == "lan" {
			if bc.cur.Load() >= 2 {
				overlapOnce.Do(func() { close(overlap) })
			}
			select {
			case <-overlap:
			case <-time.After(waitFor):
			case <-ctx.Done():
			}
		}
		for range 50 { // give any overlapping job a chance to show up
			runtime.Gosched()
		}
		return nil, nil
	})
	h := newHarness(t, exec, func(o *Options) { o.Serial = func(bus string) bool { return strings.HasPrefix(bus, "rs485") } })
	var ids []string
	var wg sync.WaitGroup
	var idsMu sync.Mutex
	for d, b := range devices {
		for range perDevice {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j, err := h.q.Submit(context.Background(), Spec{Kind: "method:poke", Device: d, Bus: b})
				if err != nil {
					t.Errorf("Submit: %v", err)
					return
				}
				idsMu.Lock()
				ids = append(ids, j.ID)
				idsMu.Unlock()
			}()
		}
	}
	wg.Wait()
	for _, id := range ids {
		h.await(id, "succeeded", func(j Job) bool { return j.State == StateSucceeded })
	}
	for d, c := range devCount {
		if m := c.max.Load(); m != 1 {
			t.Errorf("device %s: %d jobs at once, want 1", d, m)
		}
	}
	for b, c := range busCount {
		m := c.max.Load()
		switch {
		case strings.HasPrefix(b, "rs485") && m != 1:
			t.Errorf("serial bus %s: %d jobs at once, want 1", b, m)
		case b == "lan" && m < 2:
			t.Errorf("tcp bus %s: at most %d job at once, want concurrency", b, m)
		}
	}
	counts, err := h.q.Counts(context.Background())
	if err != nil || counts[StateSucceeded] != len(devices)*perDevice || counts[StateRunning] != 0 {
		t.Errorf("Counts = %v, %v", counts, err)
	}
}

func TestBlockedJobDoesNotBlockDevice(t *testing.T) {
	exec := newExec(nil)
	h := newHarness(t, exec, func(o *Options) { o.Windows = func() []config.Window { return nightly } })
	reboot := h.submit(Spec{Kind: KindReboot, Device: "d"})
	h.awaitState(reboot.ID, StateWaiting, ReasonWindow)
	cfg := h.submit(Spec{Kind: KindConfig, Device: "d"})
	h.awaitState(cfg.ID, StateSucceeded, ReasonNone)
	h.clock.Set(opening)
	h.awaitState(reboot.ID, StateSucceeded, ReasonNone)
}

func TestProgressAndSubscribe(t *testing.T) {
	reached := make(chan struct{})
	step := make(chan struct{})
	wait := func(ctx context.Context) error {
		select {
		case <-step:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	exec := newExec(func(ctx context.Context, j Job, progress func(int, string)) (any, error) {
		progress(-5, "start")   // clamped to 0; within ProgressEvery of the start: kept in memory
		progress(30, "writing") // the same
		reached <- struct{}{}
		if err := wait(ctx); err != nil {
			return nil, err
		}
		progress(60, "verifying") // a second later: stored
		if err := wait(ctx); err != nil {
			return nil, err
		}
		return map[string]int{"bytes": 42}, nil
	})
	var seen atomic.Int32
	h := newHarness(t, exec, func(o *Options) { o.ProgressEvery = time.Second })
	unsubscribe := h.q.Subscribe(func(Job) { seen.Add(1) })
	j := h.submit(Spec{Kind: KindFirmware, Device: "d", Force: true})
	<-reached
	if got, _ := h.q.Get(context.Background(), j.ID); got.Progress != 0 || got.Message != "" {
		t.Errorf("stored progress %d %q, want nothing yet (throttled since the start)", got.Progress, got.Message)
	}
	h.clock.Advance(2 * time.Second)
	step <- struct{}{}
	h.await(j.ID, "progress 60", func(j Job) bool { return j.Progress == 60 && j.Message == "verifying" })
	step <- struct{}{}
	got := h.awaitState(j.ID, StateSucceeded, ReasonNone)
	if got.Progress != 100 || string(got.Result) != `{"bytes":42}` || got.Message != "verifying" {
		t.Errorf("final %+v", got)
	}
	if seen.Load() == 0 {
		t.Error("second subscriber saw nothing")
	}
	unsubscribe()
}

func TestKeyAndSupersede(t *testing.T) {
	exec := newExec(nil)
	h := newHarness(t, exec, func(o *Options) { o.Windows = func() []config.Window { return nightly } })
	ctx := context.Background()

	a := h.submit(Spec{Kind: KindConfig, Device: "d", Key: "desired:d:7"})
	h.awaitState(a.ID, StateSucceeded, ReasonNone)
	again := h.submit(Spec{Kind: KindConfig, Device: "d", Key: "desired:d:7"})
	if again.ID != a.ID || again.State != StateSucceeded {
		t.Fatalf("same key gave %+v, want the finished job %s", again, a.ID)
	}
	if exec.callsOf(a.ID) != 1 {
		t.Errorf("completed job re-run: %d calls", exec.callsOf(a.ID))
	}

	old := h.submit(Spec{Kind: KindConfig, Device: "e", Disruptive: true, Payload: []byte(`{"v":1}`)})
	waiting := h.awaitState(old.ID, StateWaiting, ReasonWindow)
	other := h.submit(Spec{Kind: KindReboot, Device: "e"})
	h.awaitState(other.ID, StateWaiting, ReasonWindow)
	newer := h.submit(Spec{Kind: KindConfig, Device: "e", Disruptive: true, Payload: []byte(`{"v":2}`), Supersede: true})
	got, err := h.q.Get(ctx, old.ID)
	if err != nil || got.State != StateCancelled || got.Error != "superseded by "+newer.ID {
		t.Errorf("old config: %+v, %v", got, err)
	}
	if got.Version <= waiting.Version {
		t.Errorf("superseding did not count as a change: version %d, was %d", got.Version, waiting.Version)
	}
	if got, _ := h.q.Get(ctx, other.ID); got.State != StateWaiting {
		t.Errorf("a job of another kind was superseded: %+v", got)
	}
	list, err := h.q.List(ctx, Filter{Device: "e", States: []State{StateWaiting, StateQueued}})
	if err != nil || len(list) != 2 || list[0].ID != newer.ID || list[1].ID != other.ID {
		t.Errorf("List = %v, %v", list, err)
	}
	if l, _ := h.q.List(ctx, Filter{Kind: KindConfig, Limit: 1}); len(l) != 1 || l[0].ID != newer.ID {
		t.Errorf("List limit 1 = %v", l)
	}
}

func TestExecutorPanic(t *testing.T) {
	exec := newExec(func(context.Context, Job, func(int, string)) (any, error) { panic("boom") })
	h := newHarness(t, exec, nil)
	j := h.submit(Spec{Kind: KindConfig, Device: "d"})
	got := h.awaitState(j.ID, StateFailed, ReasonNone)
	if !strings.Contains(got.Error, "panicked: boom") {
		t.Errorf("error %q", got.Error)
	}
}

func TestUnstorableResult(t *testing.T) {
	exec := newExec(func(context.Context, Job, func(int, string)) (any, error) { return make(chan int), nil })
	h := newHarness(t, exec, nil)
	j := h.submit(Spec{Kind: KindConfig, Device: "d"})
	got := h.awaitState(j.ID, StateSucceeded, ReasonNone)
	if !strings.Contains(string(got.Result), "not storable") {
		t.Errorf("result %s", got.Result)
	}
}

func TestNewErrors(t *testing.T) {
	db := openDB(t, t.TempDir()+"/x.db")
	if _, err := New(context.Background(), nil, Options{Executor: newExec(nil)}); err == nil {
		t.Error("New without db accepted")
	}
	if _, err := New(context.Background(), db, Options{}); err == nil {
		t.Error("New without executor accepted")
	}
	q, err := New(context.Background(), db, Options{Executor: newExec(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	// A second Run while the first runs is refused; wait until the first is up.
	deadline := time.After(waitFor)
	for !q.active.Load() {
		select {
		case <-deadline:
			t.Fatal("Run did not start")
		default:
			runtime.Gosched()
		}
	}
	if err := q.Run(ctx); err == nil {
		t.Error("second Run accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestCancelStorm submits and cancels concurrently: every job ends final,
// and a job cancelled while pending never reaches the executor.
func TestCancelStorm(t *testing.T) {
	exec := newExec(func(ctx context.Context, j Job, _ func(int, string)) (any, error) {
		for range 20 {
			runtime.Gosched()
		}
		return nil, ctx.Err()
	})
	h := newHarness(t, exec, func(o *Options) { o.Serial = func(string) bool { return true } })
	ctx := context.Background()
	const n = 120
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		all       []string
		cancelled []string // cancelled while queued or waiting
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := h.q.Submit(ctx, Spec{Kind: KindConfig, Device: fmt.Sprintf("d%d", i%7), Bus: fmt.Sprintf("b%d", i%3)})
			if err != nil {
				t.Errorf("Submit: %v", err)
				return
			}
			mu.Lock()
			all = append(all, j.ID)
			mu.Unlock()
			if i%2 == 0 {
				return
			}
			got, err := h.q.Cancel(ctx, j.ID)
			if err != nil && !errors.Is(err, ErrFinished) {
				t.Errorf("Cancel: %v", err)
			}
			if err == nil && got.State == StateCancelled {
				mu.Lock()
				cancelled = append(cancelled, j.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, id := range all {
		h.await(id, "final", func(j Job) bool { return j.State.Final() })
	}
	for _, id := range cancelled {
		if c := exec.callsOf(id); c != 0 {
			t.Errorf("job %s cancelled while pending was executed %d times", id, c)
		}
	}
	counts, err := h.q.Counts(ctx)
	if err != nil || counts[StateSucceeded]+counts[StateCancelled] != n {
		t.Errorf("Counts = %v, %v", counts, err)
	}
}
