// Package clock is the one injectable time source of Drover's schedulers:
// the bridges' poll schedule, the gateway's job queue and the hub's job
// engine all wait on a Clock, so their tests move time by hand with a
// Manual clock instead of sleeping.
package clock

import "time"

// Clock tells the time and wakes its user at a given time.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// TimerAt returns a timer that fires at t, at once when t has passed.
	// The deadline is absolute so that a manual clock moved between Now and
	// TimerAt cannot lose the wake-up.
	TimerAt(t time.Time) Timer
}

// Timer is the part of *time.Timer a scheduler uses. C delivers at most one
// value.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// Real is the wall clock. NowFunc, when set, replaces time.Now (the hub's
// tests shift the time the whole hub reads); the timers still run in real
// time, for the distance from NowFunc's now to the deadline.
type Real struct {
	NowFunc func() time.Time
}

// Now returns NowFunc() or, without one, time.Now().
func (c Real) Now() time.Time {
	if c.NowFunc != nil {
		return c.NowFunc()
	}
	return time.Now()
}

// TimerAt returns a real timer firing at t as Now reads the time.
func (c Real) TimerAt(t time.Time) Timer { return realTimer{time.NewTimer(t.Sub(c.Now()))} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }
