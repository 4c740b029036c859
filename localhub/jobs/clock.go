package jobs

import (
	"sync"
	"time"
)

// Clock tells the engine the time and wakes it at a given time.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// At returns a channel that is closed once the clock reaches t, and a
	// function that releases the wait (it does not close the channel).
	At(t time.Time) (<-chan struct{}, func())
}

// RealClock is wall-clock time; Now may be replaced (nil means time.Now)
// while timers still run in real time.
type RealClock struct {
	NowFunc func() time.Time
}

// Now implements Clock.
func (c RealClock) Now() time.Time {
	if c.NowFunc != nil {
		return c.NowFunc()
	}
	return time.Now()
}

// At implements Clock.
func (c RealClock) At(t time.Time) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	d := t.Sub(c.Now())
	if d <= 0 {
		close(ch)
		return ch, func() {}
	}
	tm := time.AfterFunc(d, func() { close(ch) })
	return ch, func() { tm.Stop() }
}

// FakeClock is a Clock that moves only when told to, for tests.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[*fakeWaiter]struct{}
}

type fakeWaiter struct {
	at time.Time
	ch chan struct{}
}

// NewFakeClock returns a FakeClock set to start.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, waiters: map[*fakeWaiter]struct{}{}}
}

// Now implements Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// At implements Clock.
func (c *FakeClock) At(t time.Time) (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &fakeWaiter{at: t, ch: make(chan struct{})}
	if !t.After(c.now) {
		close(w.ch)
		return w.ch, func() {}
	}
	c.waiters[w] = struct{}{}
	return w.ch, func() {
		c.mu.Lock()
		delete(c.waiters, w)
		c.mu.Unlock()
	}
}

// Advance moves the clock forward by d and wakes the waits that are due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for w := range c.waiters {
		if !w.at.After(c.now) {
			close(w.ch)
			delete(c.waiters, w)
		}
	}
}

// Waiting is the number of waits not yet due.
func (c *FakeClock) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}
