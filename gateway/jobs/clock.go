package jobs

import "time"

// Clock is the queue's time source: windows, back-offs, deadlines and
// re-checks all run on it, so tests drive time by hand.
type Clock interface {
	Now() time.Time
	// TimerAt returns a timer that fires at t, at once when t has passed.
	TimerAt(t time.Time) Timer
}

// Timer is the part of *time.Timer the queue uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// TimerAt returns a real timer firing at t.
func (SystemClock) TimerAt(t time.Time) Timer { return sysTimer{time.NewTimer(time.Until(t))} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }
