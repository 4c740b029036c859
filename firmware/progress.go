package firmware

import "time"

// Percent is done out of total as 0–100, rounded down (100 only when done).
func Percent(done, total int64) int {
	if total <= 0 || done <= 0 {
		return 0
	}
	if done >= total {
		return 100
	}
	return int(done * 100 / total)
}

// Throttle decides which progress values become reported patches, so that
// reported.firmware.progress stays true at every step while a long transfer
// writes a bounded number of patches: the first value, then a value at least
// Step points above the last reported one and at least Interval after it,
// and 100 always. With Step 5 a phase writes at most 21 patches however many
// chunks it moves. Start a new Throttle for each phase (downloading,
// applying).
type Throttle struct {
	// Step is the least rise in points worth a patch (default 5).
	Step int
	// Interval is the least time between two patches (default 1 s); 100 is
	// never held back.
	Interval time.Duration

	reported bool
	last     int
	lastAt   time.Time
}

// Report says whether progress p (0–100) at now should be reported, and
// records it when so.
func (t *Throttle) Report(p int, now time.Time) bool {
	step, interval := t.Step, t.Interval
	if step <= 0 {
		step = 5
	}
	if interval <= 0 {
		interval = time.Second
	}
	p = min(max(p, 0), 100)
	switch {
	case !t.reported:
	case p == t.last:
		return false
	case p == 100:
	case p < t.last+step || now.Sub(t.lastAt) < interval:
		return false
	}
	t.reported, t.last, t.lastAt = true, p, now
	return true
}
