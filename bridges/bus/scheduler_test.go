package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errTimeout = plugins.Errorf(plugins.CodeTimeout, "no answer")

// fakeNow is an adjustable clock for the breaker.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// hold starts a command transaction that keeps the bus until release is
// closed, and returns once it runs.
func hold(t *testing.T, s *Scheduler, wg *sync.WaitGroup, release <-chan struct{}) {
	t.Helper()
	running := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.Do(context.Background(), PriorityCommand, "holder", func(context.Context) error {
			close(running)
			<-release
			return nil
		})
	}()
	<-running
}

func TestSchedulerPriorityOrder(t *testing.T) {
	type item struct {
		prio  Priority
		label string
	}
	tests := []struct {
		name  string
		queue []item
		want  []string
	}{
		{"command queued behind polls runs next",
			[]item{{PriorityPoll, "p1"}, {PriorityPoll, "p2"}, {PriorityCommand, "c1"}},
			[]string{"c1", "p1", "p2"}},
		{"command before write before poll",
			[]item{{PriorityPoll, "p1"}, {PriorityWrite, "w1"}, {PriorityCommand, "c1"}},
			[]string{"c1", "w1", "p1"}},
		{"fifo within a priority",
			[]item{{PriorityPoll, "p1"}, {PriorityPoll, "p2"}, {PriorityPoll, "p3"}},
			[]string{"p1", "p2", "p3"}},
		{"mixed",
			[]item{{PriorityPoll, "p1"}, {PriorityCommand, "c1"}, {PriorityWrite, "w1"}, {PriorityCommand, "c2"}, {PriorityPoll, "p2"}, {PriorityWrite, "w2"}},
			[]string{"c1", "c2", "w1", "w2", "p1", "p2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{Name: "rs485"})
			queued := make(chan Priority)
			s.queued = func(p Priority) { queued <- p }
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				order   []string
				release = make(chan struct{})
			)
			hold(t, s, &wg, release)
			for _, it := range tt.queue {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := s.Do(context.Background(), it.prio, "dev-"+it.label, func(context.Context) error {
						mu.Lock()
						order = append(order, it.label)
						mu.Unlock()
						return nil
					})
					if err != nil {
						t.Errorf("Do %s: %v", it.label, err)
					}
				}()
				<-queued // queue strictly in table order
			}
			if d := s.Stats().QueueDepth; d != len(tt.queue) {
				t.Errorf("queue depth = %d, want %d", d, len(tt.queue))
			}
			close(release)
			wg.Wait()
			if fmt.Sprint(order) != fmt.Sprint(tt.want) {
				t.Errorf("queue %v ran %v, want %v", tt.queue, order, tt.want)
			}
			if st := s.Stats(); st.QueueDepth != 0 || st.Busy {
				t.Errorf("after drain: %+v", st)
			}
		})
	}
}

func TestSchedulerOneAtATime(t *testing.T) {
	s := New(Options{Name: "rs485"})
	var inFlight, maxInFlight, ran atomic.Int64
	var wg sync.WaitGroup
	const workers, each = 32, 25
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				prio := Priority((w + i) % int(numPriorities))
				err := s.Do(context.Background(), prio, fmt.Sprintf("dev-%d", w%5), func(context.Context) error {
					n := inFlight.Add(1)
					for {
						m := maxInFlight.Load()
						if n <= m || maxInFlight.CompareAndSwap(m, n) {
							break
						}
					}
					runtime.Gosched()
					ran.Add(1)
					inFlight.Add(-1)
					return nil
				})
				if err != nil {
					t.Errorf("Do: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if m := maxInFlight.Load(); m != 1 {
		t.Errorf("max transactions in flight = %d, want 1", m)
	}
	if got, want := ran.Load(), int64(workers*each); got != want {
		t.Errorf("ran %d transactions, want %d", got, want)
	}
	if got := s.Stats().Transactions; got != workers*each {
		t.Errorf("Stats().Transactions = %d, want %d", got, workers*each)
	}
}

func TestBreaker(t *testing.T) {
	type step struct {
		name      string
		advance   time.Duration
		prio      Priority
		result    error // what the transaction returns if it runs
		wantRun   bool  // the transaction reached the bus
		wantState BreakerState
		wantUntil time.Duration // OpenUntil relative to start, when not closed
	}
	steps := []step{
		{"timeout 1 counts", 0, PriorityPoll, errTimeout, true, BreakerClosed, 0},
		{"timeout 2 counts", 0, PriorityPoll, errTimeout, true, BreakerClosed, 0},
		{"timeout 3 opens for 1s", 0, PriorityPoll, errTimeout, true, BreakerOpen, time.Second},
		{"poll fails fast", 0, PriorityPoll, nil, false, BreakerOpen, time.Second},
		{"write fails fast", 500 * time.Millisecond, PriorityWrite, nil, false, BreakerOpen, time.Second},
		{"command still runs, its timeout does not extend", 0, PriorityCommand, errTimeout, true, BreakerOpen, time.Second},
		{"probe after back-off times out: open for 2s", 500 * time.Millisecond, PriorityPoll, errTimeout, true, BreakerOpen, 3 * time.Second},
		{"still open", time.Second, PriorityPoll, nil, false, BreakerOpen, 3 * time.Second},
		{"probe times out again: open for 4s", time.Second, PriorityPoll, errTimeout, true, BreakerOpen, 7 * time.Second},
		{"probe answers: closed", 4 * time.Second, PriorityPoll, nil, true, BreakerClosed, 0},
		{"device error resets count", 0, PriorityPoll, errTimeout, true, BreakerClosed, 0},
		{"device error", 0, PriorityPoll, plugins.Errorf(plugins.CodeDeviceError, "exception 2"), true, BreakerClosed, 0},
		{"timeout 1 again", 0, PriorityPoll, errTimeout, true, BreakerClosed, 0},
		{"unavailable is neutral", 0, PriorityPoll, plugins.Errorf(plugins.CodeUnavailable, "port gone"), true, BreakerClosed, 0},
		{"timeout 2 again", 0, PriorityPoll, errTimeout, true, BreakerClosed, 0},
		{"timeout 3 reopens at the minimum back-off", 0, PriorityPoll, errTimeout, true, BreakerOpen, 8 * time.Second},
		{"command answer closes", 0, PriorityCommand, nil, true, BreakerClosed, 0},
	}
	clk := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	start := clk.Now()
	s := New(Options{Name: "rs485", Now: clk.Now,
		Policy: Policy{Threshold: 3, BackoffMin: time.Second, BackoffMax: 30 * time.Second, Jitter: -1}})
	for i, st := range steps {
		clk.Advance(st.advance)
		ran := false
		err := s.Do(context.Background(), st.prio, "dead", func(context.Context) error { ran = true; return st.result })
		if ran != st.wantRun {
			t.Fatalf("step %d %q: ran = %v, want %v", i, st.name, ran, st.wantRun)
		}
		if !st.wantRun && !errors.Is(err, ErrBackoff) {
			t.Fatalf("step %d %q: err = %v, want ErrBackoff", i, st.name, err)
		}
		if st.wantRun && !errors.Is(err, st.result) {
			t.Fatalf("step %d %q: err = %v, want %v", i, st.name, err, st.result)
		}
		b := s.Breaker("dead")
		if b.State != st.wantState {
			t.Fatalf("step %d %q: state = %v, want %v (%+v)", i, st.name, b.State, st.wantState, b)
		}
		if st.wantState != BreakerClosed && !b.OpenUntil.Equal(start.Add(st.wantUntil)) {
			t.Fatalf("step %d %q: open until +%v, want +%v", i, st.name, b.OpenUntil.Sub(start), st.wantUntil)
		}
		// Another device on the same bus is never affected.
		if err := s.Do(context.Background(), PriorityPoll, "alive", func(context.Context) error { return nil }); err != nil {
			t.Fatalf("step %d %q: other device: %v", i, st.name, err)
		}
	}
	stats := s.Stats()
	if stats.Timeouts != 10 || stats.FastFails != 3 || stats.Breakers["dead"].Opens != 4 {
		t.Errorf("stats = %+v", stats)
	}
}

func TestBreakerHalfOpenAllowsOneProbe(t *testing.T) {
	clk := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(Options{Name: "rs485", Now: clk.Now, Policy: Policy{Threshold: 1, BackoffMin: time.Second, Jitter: -1}})
	ctx := context.Background()
	_ = s.Do(ctx, PriorityPoll, "d", func(context.Context) error { return errTimeout })
	clk.Advance(time.Second)

	probing, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Do(ctx, PriorityPoll, "d", func(context.Context) error { close(probing); <-release; return nil })
	}()
	<-probing
	if st := s.Breaker("d").State; st != BreakerHalfOpen {
		t.Fatalf("during probe: state %v, want half-open", st)
	}
	for _, prio := range []Priority{PriorityPoll, PriorityWrite} {
		if err := s.Do(ctx, prio, "d", func(context.Context) error { return nil }); !errors.Is(err, ErrBackoff) {
			t.Errorf("%v during probe: err = %v, want ErrBackoff", prio, err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := s.Breaker("d").State; st != BreakerClosed {
		t.Fatalf("after probe: state %v, want closed", st)
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
		rand   float64
		want   []float64
	}{
		{"no jitter", -1, 0, []float64{1, 2, 4, 8, 16, 32, 60, 60, 60}},
		{"low jitter", 0.2, 0, []float64{0.9, 1.8, 3.6, 7.2, 14.4, 28.8, 54, 54, 54}},
		{"high jitter", 0.2, 1, []float64{1.1, 2.2, 4.4, 8.8, 17.6, 35.2, 66, 66, 66}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Policy{BackoffMin: time.Second, BackoffMax: time.Minute, Jitter: tt.jitter, Rand: func() float64 { return tt.rand }}
			p.applyDefaults()
			for level, w := range tt.want {
				want := time.Duration(w * float64(time.Second))
				if got := p.backoff(level); (got - want).Abs() > time.Millisecond {
					t.Errorf("backoff(%d) = %v, want %v", level, got, want)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	alive, gone := error(nil), context.Canceled
	tests := []struct {
		name      string
		err       error
		callerErr error
		want      outcome
	}{
		{"success", nil, alive, outcomeAnswer},
		{"plugin timeout", errTimeout, alive, outcomeTimeout},
		{"wrapped plugin timeout", fmt.Errorf("plugin modbus: %w", errTimeout), alive, outcomeTimeout},
		{"gateway target", plugins.Errorf(plugins.CodeGatewayTarget, "0x0B"), alive, outcomeTimeout},
		{"inner deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), alive, outcomeTimeout},
		{"caller deadline", context.DeadlineExceeded, context.DeadlineExceeded, outcomeNeutral},
		{"caller gave up on a plugin timeout", errTimeout, gone, outcomeNeutral},
		{"device exception", plugins.Errorf(plugins.CodeDeviceError, "x"), alive, outcomeAnswer},
		{"in use", plugins.Errorf(plugins.CodeInUse, "x"), alive, outcomeAnswer},
		{"unavailable", plugins.Errorf(plugins.CodeUnavailable, "x"), alive, outcomeNeutral},
		{"busy", plugins.Errorf(plugins.CodeBusy, "x"), alive, outcomeNeutral},
		{"plain error", errors.New("x"), alive, outcomeNeutral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err, tt.callerErr); got != tt.want {
				t.Errorf("classify(%v, %v) = %d, want %d", tt.err, tt.callerErr, got, tt.want)
			}
		})
	}
}

func TestSchedulerCancelWhileQueued(t *testing.T) {
	s := New(Options{Name: "rs485"})
	queued := make(chan Priority, 4)
	s.queued = func(p Priority) { queued <- p }
	var wg sync.WaitGroup
	release := make(chan struct{})
	hold(t, s, &wg, release)

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error)
	go func() {
		gaveUp <- s.Do(ctx, PriorityCommand, "d1", func(context.Context) error {
			t.Error("cancelled transaction ran")
			return nil
		})
	}()
	<-queued
	ranBehind := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Do(context.Background(), PriorityPoll, "d2", func(context.Context) error { close(ranBehind); return nil }); err != nil {
			t.Errorf("Do behind a cancelled waiter: %v", err)
		}
	}()
	<-queued
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Do: err = %v, want context.Canceled", err)
	}
	if d := s.Stats().QueueDepth; d != 1 {
		t.Errorf("queue depth after cancel = %d, want 1", d)
	}
	close(release)
	<-ranBehind
	wg.Wait()
}

func TestSchedulerSurvivesPanic(t *testing.T) {
	s := New(Options{Name: "rs485"})
	func() {
		defer func() { _ = recover() }()
		_ = s.Do(context.Background(), PriorityPoll, "d", func(context.Context) error { panic("driver bug") })
	}()
	if err := s.Do(context.Background(), PriorityPoll, "d", func(context.Context) error { return nil }); err != nil {
		t.Fatalf("after a panicking transaction: %v", err)
	}
}

func TestSchedulerRejectsBadInput(t *testing.T) {
	s := New(Options{Name: "rs485"})
	for _, p := range []Priority{-1, numPriorities, 99} {
		if err := s.Do(context.Background(), p, "d", func(context.Context) error { return nil }); err == nil {
			t.Errorf("priority %d accepted", p)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Do(ctx, PriorityPoll, "d", func(context.Context) error { t.Error("ran"); return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("done ctx: err = %v", err)
	}
}
