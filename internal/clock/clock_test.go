package clock

import (
	"testing"
	"time"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fired reports whether t has delivered a value, without waiting.
func fired(t Timer) bool {
	select {
	case <-t.C():
		return true
	default:
		return false
	}
}

func TestManual(t *testing.T) {
	tests := []struct {
		name      string
		at        time.Duration // timer deadline after base
		stop      bool          // stop the timer before moving the clock
		advance   time.Duration
		wantFired bool
		wantWait  int // timers still armed after the move
	}{
		{name: "deadline passed fires at once", at: 0, wantFired: true},
		{name: "deadline in the past fires at once", at: -time.Minute, wantFired: true},
		{name: "not yet due", at: time.Minute, advance: 59 * time.Second, wantWait: 1},
		{name: "due exactly", at: time.Minute, advance: time.Minute, wantFired: true},
		{name: "overdue", at: time.Minute, advance: time.Hour, wantFired: true},
		{name: "stopped never fires", at: time.Minute, stop: true, advance: time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewManual(base)
			tm := c.TimerAt(base.Add(tc.at))
			if tc.stop && !tm.Stop() {
				t.Fatal("Stop of an armed timer = false")
			}
			c.Advance(tc.advance)
			if got := fired(tm); got != tc.wantFired {
				t.Errorf("timer at +%v, clock +%v: fired %v, want %v", tc.at, tc.advance, got, tc.wantFired)
			}
			if got := c.Waiting(); got != tc.wantWait {
				t.Errorf("Waiting = %d, want %d", got, tc.wantWait)
			}
			if armed := tc.wantWait > 0; tm.Stop() != armed {
				t.Errorf("Stop = %v, want %v (true only while armed)", !armed, armed)
			}
			if want := base.Add(tc.advance); !c.Now().Equal(want) {
				t.Errorf("Now = %v, want %v", c.Now(), want)
			}
		})
	}
}

func TestManualSetFiresInOrder(t *testing.T) {
	c := NewManual(base)
	early, late := c.TimerAt(base.Add(time.Second)), c.TimerAt(base.Add(2*time.Second))
	c.Set(base.Add(time.Second))
	if !fired(early) || fired(late) {
		t.Fatal("Set to the first deadline must fire only the first timer")
	}
	c.Set(base.Add(2 * time.Second))
	if !fired(late) {
		t.Fatal("Set to the second deadline must fire the second timer")
	}
}

func TestManualWaitTimer(t *testing.T) {
	c := NewManual(base)
	at := base.Add(time.Minute)
	if c.WaitTimer(at, time.Millisecond) {
		t.Fatal("WaitTimer with no timer armed = true")
	}
	done := make(chan bool)
	go func() { done <- c.WaitTimer(at, 10*time.Second) }()
	c.TimerAt(base.Add(time.Second)) // another deadline does not end the wait
	c.TimerAt(at)
	if !<-done {
		t.Fatal("WaitTimer did not see the timer armed for its deadline")
	}
}

func TestReal(t *testing.T) {
	shifted := time.Now().Add(-time.Hour)
	c := Real{NowFunc: func() time.Time { return shifted }}
	if !c.Now().Equal(shifted) {
		t.Fatalf("Now = %v, want NowFunc's %v", c.Now(), shifted)
	}
	// The timer runs for the distance from NowFunc's now: an hour after the
	// shifted now is about now on the wall clock, but an hour away here.
	tm := c.TimerAt(shifted.Add(time.Hour))
	if !tm.Stop() {
		t.Fatal("a timer an hour away must still be armed")
	}
	due := Real{}.TimerAt(time.Now().Add(-time.Second))
	select {
	case <-due.C():
	case <-time.After(10 * time.Second):
		t.Fatal("a past deadline did not fire")
	}
}
