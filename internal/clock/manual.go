package clock

import (
	"slices"
	"sync"
	"time"
)

// Manual is a Clock that moves only when told to, for tests. Its timers
// fire, in the order they were made, when Advance or Set reaches them.
type Manual struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
	armed  chan struct{} // closed and replaced whenever a timer is armed
}

// NewManual returns a Manual clock reading start.
func NewManual(start time.Time) *Manual { return &Manual{now: start} }

// Now implements Clock.
func (c *Manual) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// TimerAt implements Clock.
func (c *Manual) TimerAt(at time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{c: c, at: at, ch: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.done = true
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	if c.armed != nil {
		close(c.armed)
		c.armed = nil
	}
	return t
}

// Advance moves the clock forward by d and fires the timers due.
func (c *Manual) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(c.now.Add(d))
}

// Set moves the clock to t and fires the timers due.
func (c *Manual) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(t)
}

func (c *Manual) setLocked(t time.Time) {
	c.now = t
	kept := c.timers[:0]
	for _, mt := range c.timers {
		if !mt.at.After(t) {
			mt.done = true
			mt.ch <- t
			continue
		}
		kept = append(kept, mt)
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

// Waiting is the number of timers armed and not yet due.
func (c *Manual) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitTimer waits up to limit (in real time) until a timer is armed for at,
// and reports whether one was. A test calls it before Advance: the code under
// test has then reached the wait that at ends, so moving the clock cannot
// race it.
func (c *Manual) WaitTimer(at time.Time, limit time.Duration) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		found := slices.ContainsFunc(c.timers, func(t *manualTimer) bool { return t.at.Equal(at) })
		if c.armed == nil {
			c.armed = make(chan struct{})
		}
		armed := c.armed
		c.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-armed:
		case <-deadline.C:
			return false
		}
	}
}

type manualTimer struct {
	c    *Manual
	at   time.Time
	ch   chan time.Time
	done bool // fired or stopped
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.timers = slices.DeleteFunc(t.c.timers, func(x *manualTimer) bool { return x == t })
	return true
}
