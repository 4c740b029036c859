package jobs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestAwait checks that Await sees a job's stored changes whether they
// happened before or after it was called, and gives up with ctx.
func TestAwait(t *testing.T) {
	release := make(chan struct{})
	exec := newExec(func(ctx context.Context, j Job, _ func(int, string)) (any, error) {
		switch j.Device {
		case "stuck":
			<-ctx.Done()
			return nil, ctx.Err()
		case "slow":
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return map[string]any{"device": j.Device}, nil
	})
	h := newHarness(t, exec, nil)
	final := func(j Job) bool { return j.State.Final() }
	ctx := context.Background()

	t.Run("already final", func(t *testing.T) {
		j := h.sub(t).submit(Spec{Kind: KindWrite, Device: "fast"})
		h.sub(t).awaitState(j.ID, StateSucceeded, ReasonNone)
		got, err := h.q.Await(ctx, j.ID, final)
		if err != nil || got.State != StateSucceeded || string(got.Result) != `{"device":"fast"}` {
			t.Fatalf("Await = %+v, %v; want succeeded with the result", got, err)
		}
	})
	t.Run("ends later", func(t *testing.T) {
		j := h.sub(t).submit(Spec{Kind: KindWrite, Device: "slow"})
		h.sub(t).awaitState(j.ID, StateRunning, ReasonNone)
		done := make(chan Job, 1)
		asked := make(chan struct{})
		var once sync.Once
		go func() {
			got, _ := h.q.Await(ctx, j.ID, func(j Job) bool {
				once.Do(func() { close(asked) })
				return j.State.Final()
			})
			done <- got
		}()
		// Await saw the job running, so the end reaches it as a change.
		<-asked
		close(release)
		select {
		case got := <-done:
			if got.State != StateSucceeded {
				t.Fatalf("Await returned %s, want succeeded", got.State)
			}
		case <-time.After(waitFor):
			t.Fatal("Await did not return after the job ended")
		}
	})
	t.Run("ctx ends first", func(t *testing.T) {
		j := h.sub(t).submit(Spec{Kind: KindWrite, Device: "stuck"})
		h.sub(t).awaitState(j.ID, StateRunning, ReasonNone)
		cctx, cancel := context.WithCancel(ctx)
		asked := make(chan struct{})
		var once sync.Once
		type answer struct {
			j   Job
			err error
		}
		done := make(chan answer, 1)
		go func() {
			got, err := h.q.Await(cctx, j.ID, func(j Job) bool {
				once.Do(func() { close(asked) })
				return j.State.Final()
			})
			done <- answer{got, err}
		}()
		<-asked // Await has looked at the running job
		cancel()
		a := <-done
		if !errors.Is(a.err, context.Canceled) || a.j.ID != j.ID || a.j.State != StateRunning {
			t.Fatalf("Await = %s %s, %v; want the running job and context.Canceled", a.j.ID, a.j.State, a.err)
		}
		if _, err := h.q.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		h.sub(t).awaitState(j.ID, StateCancelled, ReasonNone)
	})
	t.Run("unknown job", func(t *testing.T) {
		if _, err := h.q.Await(ctx, "nope", final); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Await(unknown) = %v, want ErrNotFound", err)
		}
	})
	h.q.mu.Lock()
	left := len(h.q.awaiters)
	h.q.mu.Unlock()
	if left != 0 {
		t.Errorf("%d awaiters left registered", left)
	}
}

// TestResultKeptOnFailure checks that what the executor returned next to
// an error is stored, for a retry and for the final failure.
func TestResultKeptOnFailure(t *testing.T) {
	errFlaky := errors.New("no answer")
	exec := newExec(func(context.Context, Job, func(int, string)) (any, error) {
		return map[string]any{"status": 504}, errFlaky
	})
	h := newHarness(t, exec, func(o *Options) {
		o.Retryable = func(err error) bool { return errors.Is(err, errFlaky) }
	})
	j := h.submit(Spec{Kind: KindWrite, Device: "d", MaxAttempts: 2})
	w := h.awaitState(j.ID, StateWaiting, ReasonRetry)
	if string(w.Result) != `{"status":504}` {
		t.Errorf("waiting for a retry: result %s", w.Result)
	}
	h.clock.Advance(time.Hour)
	f := h.awaitState(j.ID, StateFailed, ReasonNone)
	if string(f.Result) != `{"status":504}` || f.Error != "attempt 2 of 2: no answer" {
		t.Errorf("failed: result %s error %q", f.Result, f.Error)
	}
}
