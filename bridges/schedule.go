package bridges

import (
	"slices"
	"time"
)

// schedule is the poll plan of one device: when each point is next due.
// It is a pure value owned by the device's goroutine.
//
// Rule: after a point is polled, it is next due at the first multiple of
// its interval (counted from the zero time, so wall-clock aligned) after
// the time it was due. Points with the same interval therefore fall due at
// the same instants, and every point due at or before "now" goes in one
// Read. A point that fell more than a whole interval behind (the bus is
// saturated) is due again at once, but only once: missed cycles are
// dropped, never replayed in a burst.
type schedule struct {
	points []schedPoint
}

type schedPoint struct {
	name     string
	interval time.Duration
	next     time.Time
}

// newSchedule plans every point due at now, so the first cycle reads
// everything.
func newSchedule(points []PointSpec, def time.Duration, now time.Time) *schedule {
	s := &schedule{points: make([]schedPoint, len(points))}
	for i, p := range points {
		iv := p.Poll
		if iv <= 0 {
			iv = def
		}
		s.points[i] = schedPoint{name: p.Name, interval: iv, next: now}
	}
	return s
}

// next returns when the earliest point is due (zero when there are none).
func (s *schedule) next() time.Time {
	var t time.Time
	for _, p := range s.points {
		if t.IsZero() || p.next.Before(t) {
			t = p.next
		}
	}
	return t
}

// due returns the points due at now, in spec order, and the earliest due
// time among them; none when nothing is due.
func (s *schedule) due(now time.Time) (names []string, at time.Time) {
	for _, p := range s.points {
		if p.next.After(now) {
			continue
		}
		names = append(names, p.name)
		if at.IsZero() || p.next.Before(at) {
			at = p.next
		}
	}
	return names, at
}

// done advances the named points after a poll finished at now.
func (s *schedule) done(names []string, now time.Time) {
	for i := range s.points {
		p := &s.points[i]
		if !slices.Contains(names, p.name) {
			continue
		}
		n := p.next.Truncate(p.interval).Add(p.interval)
		if n.Before(now) {
			n = now.Truncate(p.interval)
		}
		p.next = n
	}
}

// expedite makes the named points (all when names is nil) due at now.
func (s *schedule) expedite(names []string, now time.Time) {
	for i := range s.points {
		if names == nil || slices.Contains(names, s.points[i].name) {
			if s.points[i].next.After(now) {
				s.points[i].next = now
			}
		}
	}
}
