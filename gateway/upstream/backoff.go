package upstream

import "time"

// stableConnection is how long a connection must have lived for its loss not
// to count towards the backoff: a hub that accepts and then drops us at once
// (a twin of this gateway using the same identity, a hub that kicks us) is
// retried ever more slowly.
const stableConnection = time.Minute

// backoff returns the delay before the next connect after failures
// consecutive failures (≥ 1): full jitter, uniform in [0, cap) with
// cap = min(hi, lo·2^(failures-1)). rnd(n) returns a value in [0, n).
func backoff(failures int, lo, hi time.Duration, rnd func(int64) int64) time.Duration {
	if failures < 1 || hi <= 0 {
		return 0
	}
	ceiling := lo
	for i := 1; i < failures && ceiling < hi; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, hi)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(ceiling)))
}
