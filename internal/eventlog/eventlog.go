// Package eventlog is an append-only log for tests of concurrent code: the
// code under test adds what happened (a plugin call, a reported patch, a
// job change) and the test awaits a condition over everything added so
// far, woken by each addition rather than by polling or sleeping.
package eventlog

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Log is the log; its zero value is ready and it is safe for concurrent use.
type Log[T any] struct {
	mu     sync.Mutex
	items  []T
	notify chan struct{} // closed by the next Add; nil when nobody waits
}

// Add appends v and wakes every Await.
func (l *Log[T]) Add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
}

// All returns a copy of what was added, oldest first.
func (l *Log[T]) All() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.items)
}

// Await waits until pred holds for the log and returns a copy of it then.
// It fails t, naming what and showing the log, when limit passes first.
func (l *Log[T]) Await(t testing.TB, limit time.Duration, what string, pred func([]T) bool) []T {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		if pred(l.items) {
			items := slices.Clone(l.items)
			l.mu.Unlock()
			return items
		}
		if l.notify == nil {
			l.notify = make(chan struct{})
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; log: %v", what, l.All())
		}
	}
}
