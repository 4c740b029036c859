package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestProgressMerged: the progress of concurrent jobs is written by one
// writer, at most once per ProgressEvery, all pending jobs in one
// transaction (one `updated` time); an attempt's progress never lands on
// the job once it ended.
func TestProgressMerged(t *testing.T) {
	type step struct {
		pct  int
		done chan struct{}
	}
	steps := map[string]chan step{}
	for _, d := range []string{"a", "b", "c"} {
		steps[d] = make(chan step)
	}
	started := make(chan struct{}, 3)
	exec := newExec(func(ctx context.Context, j Job, progress func(int, string)) (any, error) {
		started <- struct{}{} // the attempt's throttle counts from before this call
		for {
			select {
			case s := <-steps[j.Device]:
				if s.pct < 0 {
					close(s.done)
					return "ok", nil
				}
				progress(s.pct, fmt.Sprint("at ", s.pct))
				close(s.done)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	})
	h := newHarness(t, exec, func(o *Options) { o.ProgressEvery = time.Second })
	ids := map[string]string{}
	for _, d := range []string{"a", "b", "c"} {
		j := h.submit(Spec{Kind: KindFirmware, Device: d, Force: true})
		h.awaitState(j.ID, StateRunning, ReasonNone)
		ids[d] = j.ID
	}
	for range 3 {
		<-started
	}
	report := func(d string, pct int) {
		s := step{pct: pct, done: make(chan struct{})}
		steps[d] <- s
		<-s.done
	}
	stored := func(d string) Job {
		j, err := h.q.Get(context.Background(), ids[d])
		if err != nil {
			t.Fatal(err)
		}
		return j
	}

	// A second after the starts: a's update is written at once (the writer
	// has not written in the last second).
	h.clock.Advance(time.Second)
	report("a", 10)
	h.await(ids["a"], "a at 10", func(j Job) bool { return j.Progress == 10 })
	// b and c right after: they wait for the writer's next slot, a second
	// after its last write, and go together.
	report("b", 20)
	report("c", 30)
	if b, c := stored("b"), stored("c"); b.Progress != 0 || c.Progress != 0 {
		t.Fatalf("progress of b and c stored before the writer's next slot: %d, %d", b.Progress, c.Progress)
	}
	h.clock.Advance(time.Second)
	h.await(ids["b"], "b at 20", func(j Job) bool { return j.Progress == 20 })
	h.await(ids["c"], "c at 30", func(j Job) bool { return j.Progress == 30 })
	if b, c := stored("b"), stored("c"); !b.Updated.Equal(c.Updated) {
		t.Fatalf("b and c written apart (updated %v and %v), want one transaction", b.Updated, c.Updated)
	}
	// An update pending when the job ends is dropped: finish stores the latest.
	h.clock.Advance(time.Second)
	report("a", 50) // written at once or pending; either way finish has the last word
	report("a", -1)
	got := h.awaitState(ids["a"], StateSucceeded, ReasonNone)
	if got.Progress != 100 || got.Message != "at 50" {
		t.Fatalf("a ended with %+v", got)
	}
	for _, d := range []string{"b", "c"} {
		report(d, -1)
		h.awaitState(ids[d], StateSucceeded, ReasonNone)
	}
	h.clock.Advance(time.Second) // the writer may hold a's update for its slot
	h.q.writeProgress(context.Background())
	if a := stored("a"); a.Progress != 100 || a.State != StateSucceeded {
		t.Fatalf("a's progress written after its end: %+v", a)
	}
}
