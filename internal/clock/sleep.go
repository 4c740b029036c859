package clock

import (
	"context"
	"time"
)

// Sleep waits d of real time or until ctx ends, and reports whether it
// slept the whole time (false: ctx ended). A d of zero or less returns at
// once, false only when ctx has already ended, so a caller's loop still
// stops on a cancelled context without a timer race. It is for the
// simulators' and plugins' line timing, which runs on the wall clock.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
