package jobs

import "time"

// backoff is the pause after failed attempt number attempt (1-based):
// base·2^(attempt-1), capped at max, with "equal jitter": half of it fixed,
// the other half scaled by r in [0,1). Spreading retries keeps a bus that
// just lost many devices from being hit by all their retries at once.
func backoff(attempt int, base, max time.Duration, r float64) time.Duration {
	if base <= 0 {
		return 0
	}
	if max < base {
		max = base
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 { // d <= 0: overflow
		d = max
	}
	if r < 0 || r >= 1 || r != r { // r != r: NaN
		r = 0
	}
	half := d / 2
	return half + time.Duration(float64(d-half)*r)
}
