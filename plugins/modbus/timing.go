package modbus

import (
	"context"
	"runtime"
	"time"
)

// spinBelow is how close to a deadline sleepUntil stops trusting timers.
// Go timers on Linux fire up to ~1.1 ms late (measured: a 500 µs timer took
// 1.09 ms), which alone would cost a third of an RTU transaction at 115200
// baud, so the last stretch is a yielding spin. The spin costs at most this
// much CPU per transaction.
const spinBelow = 1500 * time.Microsecond

// sleepUntil waits until t or until ctx ends, with ~10 µs precision.
func sleepUntil(ctx context.Context, t time.Time) error {
	for {
		d := time.Until(t)
		if d <= 0 {
			return nil
		}
		if d > spinBelow {
			timer := time.NewTimer(d - spinBelow)
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		runtime.Gosched()
	}
}
