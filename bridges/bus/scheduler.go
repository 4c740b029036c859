package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"
)

// Priority orders queued transactions; higher runs first.
type Priority int

// Priorities, lowest first.
const (
	PriorityPoll    Priority = iota // scheduled reads
	PriorityWrite                   // desired-configuration writes
	PriorityCommand                 // operator or technician: methods
	numPriorities
)

func (p Priority) String() string {
	switch p {
	case PriorityPoll:
		return "poll"
	case PriorityWrite:
		return "write"
	case PriorityCommand:
		return "command"
	}
	return fmt.Sprintf("priority(%d)", int(p))
}

// ErrBackoff is returned, wrapped, by Do for a poll or write to a device
// whose breaker is open: the bus was not touched.
var ErrBackoff = errors.New("device in back-off after repeated timeouts")

// Options configure a Scheduler.
type Options struct {
	Name   string           // bus name, for Stats and errors
	Policy Policy           // circuit breaker
	Now    func() time.Time // default time.Now
}

// Scheduler serialises the transactions of one bus. It is safe for
// concurrent use; the zero value is not usable, call New.
type Scheduler struct {
	name   string
	policy Policy
	now    func() time.Time

	mu       sync.Mutex
	busy     bool
	queues   [numPriorities][]*waiter
	breakers map[string]*breaker
	c        counters

	queued func(Priority) // test hook: called, unlocked, after a waiter is queued
}

type counters struct {
	transactions, timeouts, errors, fastFails uint64
}

// waiter is one queued Do. granted and ready are guarded by Scheduler.mu;
// ready is closed when the bus is handed to it.
type waiter struct {
	device  string
	ready   chan struct{}
	granted bool
}

// New returns a Scheduler for one bus.
func New(opts Options) *Scheduler {
	opts.Policy.applyDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Scheduler{name: opts.Name, policy: opts.Policy, now: opts.Now, breakers: make(map[string]*breaker)}
}

// Name returns the bus name.
func (s *Scheduler) Name() string { return s.name }

// Do runs fn as one transaction for deviceID on the bus, after every
// transaction queued before it at its priority or higher, and never
// concurrently with another transaction of this Scheduler. It returns fn's
// error; ctx's error when ctx ends while queued (fn then never runs); or an
// error wrapping ErrBackoff when deviceID's breaker refuses a poll or write.
// fn gets ctx and should honour it.
func (s *Scheduler) Do(ctx context.Context, prio Priority, deviceID string, fn func(context.Context) error) error {
	if prio < PriorityPoll || prio >= numPriorities {
		return fmt.Errorf("bus %s: schedule %s: invalid %v", s.name, deviceID, prio)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if prio != PriorityCommand && s.blockedLocked(deviceID) {
		err := s.refuseLocked(deviceID)
		s.mu.Unlock()
		return err
	}
	if s.busy || s.depthLocked() > 0 {
		w := &waiter{device: deviceID, ready: make(chan struct{})}
		s.queues[prio] = append(s.queues[prio], w)
		hook := s.queued
		s.mu.Unlock()
		if hook != nil {
			hook(prio)
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			s.mu.Lock()
			if w.granted {
				s.releaseLocked() // handed the bus just now: pass it on
			} else {
				s.removeLocked(prio, w)
			}
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Lock()
	} else {
		s.busy = true
	}
	// The bus is ours and s.mu is held.
	probe := false
	if prio != PriorityCommand {
		b := s.breakerLocked(deviceID)
		wasOpen := b.state == BreakerOpen
		if !b.admit(s.now()) {
			err := s.refuseLocked(deviceID)
			s.releaseLocked()
			s.mu.Unlock()
			return err
		}
		probe = wasOpen
	}
	s.mu.Unlock()
	return s.run(ctx, deviceID, probe, fn)
}

// run executes fn holding the bus and records its outcome; the deferred
// part also runs when fn panics, so the bus is never left held.
func (s *Scheduler) run(ctx context.Context, deviceID string, probe bool, fn func(context.Context) error) (err error) {
	defer func() {
		o := classify(err, ctx.Err())
		s.mu.Lock()
		defer s.mu.Unlock()
		s.c.transactions++
		switch {
		case o == outcomeTimeout:
			s.c.timeouts++
		case err != nil:
			s.c.errors++
		}
		if b, ok := s.breakers[deviceID]; ok || o != outcomeNeutral {
			if !ok {
				b = s.breakerLocked(deviceID)
			}
			b.record(o, probe, s.now(), &s.policy)
		}
		s.releaseLocked()
	}()
	return fn(ctx)
}

// blockedLocked says whether deviceID's breaker refuses polls and writes
// now, without changing it.
func (s *Scheduler) blockedLocked(deviceID string) bool {
	b, ok := s.breakers[deviceID]
	if !ok {
		return false
	}
	switch b.state {
	case BreakerOpen:
		return s.now().Before(b.openUntil)
	case BreakerHalfOpen:
		return true
	}
	return false
}

func (s *Scheduler) refuseLocked(deviceID string) error {
	s.c.fastFails++
	b := s.breakers[deviceID]
	if b != nil && b.state == BreakerOpen {
		return fmt.Errorf("bus %s: device %s: %w (retry in %s)", s.name, deviceID, ErrBackoff,
			b.openUntil.Sub(s.now()).Round(time.Millisecond))
	}
	return fmt.Errorf("bus %s: device %s: %w (probe running)", s.name, deviceID, ErrBackoff)
}

func (s *Scheduler) breakerLocked(deviceID string) *breaker {
	b, ok := s.breakers[deviceID]
	if !ok {
		b = &breaker{}
		s.breakers[deviceID] = b
	}
	return b
}

// releaseLocked hands the bus to the first waiter of the highest priority,
// or marks it idle.
func (s *Scheduler) releaseLocked() {
	for p := numPriorities - 1; p >= PriorityPoll; p-- {
		if q := s.queues[p]; len(q) > 0 {
			w := q[0]
			q[0] = nil
			s.queues[p] = q[1:]
			w.granted = true
			close(w.ready)
			return
		}
	}
	s.busy = false
}

func (s *Scheduler) removeLocked(prio Priority, w *waiter) {
	q := s.queues[prio]
	for i, x := range q {
		if x == w {
			s.queues[prio] = append(q[:i:i], q[i+1:]...)
			return
		}
	}
}

func (s *Scheduler) depthLocked() int {
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return n
}

// Forget drops deviceID's breaker (the device was removed).
func (s *Scheduler) Forget(deviceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.breakers, deviceID)
}

// Stats is a snapshot of a bus's counters.
type Stats struct {
	Bus          string                  `json:"bus"`
	Transactions uint64                  `json:"transactions"` // transactions that ran on the bus
	Timeouts     uint64                  `json:"timeouts"`     // of which the device did not answer
	Errors       uint64                  `json:"errors"`       // of which failed otherwise
	FastFails    uint64                  `json:"fastFails"`    // polls and writes refused with ErrBackoff
	QueueDepth   int                     `json:"queueDepth"`   // transactions waiting now
	Busy         bool                    `json:"busy"`         // a transaction is running now
	Breakers     map[string]BreakerStats `json:"breakers"`     // per device that ever timed out or answered
}

// BreakerStats describes one device's breaker.
type BreakerStats struct {
	State               BreakerState  `json:"state"`
	ConsecutiveTimeouts int           `json:"consecutiveTimeouts"`
	Opens               uint64        `json:"opens"`              // times it opened
	Backoff             time.Duration `json:"backoff"`            // length of the last back-off
	OpenUntil           time.Time     `json:"openUntil,omitzero"` // end of the back-off while open
}

// Stats returns a snapshot.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Bus: s.name, Transactions: s.c.transactions, Timeouts: s.c.timeouts, Errors: s.c.errors,
		FastFails: s.c.fastFails, QueueDepth: s.depthLocked(), Busy: s.busy,
		Breakers: make(map[string]BreakerStats, len(s.breakers)),
	}
	for id, b := range maps.All(s.breakers) {
		st.Breakers[id] = b.stats()
	}
	return st
}

// Breaker returns deviceID's breaker state (closed when unknown).
func (s *Scheduler) Breaker(deviceID string) BreakerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.breakers[deviceID]; ok {
		return b.stats()
	}
	return BreakerStats{}
}

func (b *breaker) stats() BreakerStats {
	bs := BreakerStats{State: b.state, ConsecutiveTimeouts: b.consecutive, Opens: b.opens, Backoff: b.lastBackoff}
	if b.state != BreakerClosed {
		bs.OpenUntil = b.openUntil
	}
	return bs
}
