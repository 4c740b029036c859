package eventlog

import (
	"runtime"
	"testing"
	"time"
)

// TestAwait: Await returns once an Add makes the condition hold, with
// everything added up to then, and fails the test when the limit passes.
func TestAwait(t *testing.T) {
	var l Log[int]
	done := make(chan []int)
	go func() {
		done <- l.Await(t, 10*time.Second, "three items", func(xs []int) bool { return len(xs) == 3 })
	}()
	for i := range 3 {
		l.Add(i)
	}
	if got := <-done; len(got) != 3 || got[2] != 2 {
		t.Fatalf("Await returned %v", got)
	}
	if all := l.All(); len(all) != 3 {
		t.Fatalf("All = %v", all)
	}

	ft := &fatalRecorder{TB: t}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		l.Await(ft, time.Millisecond, "never", func([]int) bool { return false })
	}()
	<-finished
	if !ft.failed {
		t.Fatal("Await past its limit did not fail the test")
	}
}

// fatalRecorder notes Fatalf and ends the goroutine as testing does.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit()
}
