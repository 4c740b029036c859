package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed five-field cron expression:
//
//	minute hour day-of-month month day-of-week
//
// Each field is *, a number, a range a-b, a list a,b,c, or a step */n or
// a-b/n. Months may be written JAN-DEC and weekdays SUN-SAT (0 and 7 are
// both Sunday). As in classic cron, when both day-of-month and day-of-week
// are restricted, a day matching either one matches. The shorthands
// @yearly (@annually), @monthly, @weekly, @daily (@midnight) and @hourly are
// accepted. Times are matched in the location of the time given to Next.
type Schedule struct {
	spec                          string
	minute, hour, dom, month, dow uint64 // bit i set = value i matches
	domStar, dowStar              bool
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is the name of value min+i
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

var cronShorthands = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseCron parses a cron expression. The error says which field is wrong
// and why. An expression that can never fire (30 February) is an error.
func ParseCron(spec string) (*Schedule, error) {
	expr := strings.TrimSpace(spec)
	if strings.HasPrefix(expr, "@") {
		e, ok := cronShorthands[strings.ToLower(expr)]
		if !ok {
			return nil, fmt.Errorf("unknown shorthand %q (use @hourly, @daily, @weekly, @monthly or @yearly)", expr)
		}
		expr = e
	}
	parts := strings.Fields(expr)
	if len(parts) != 5 {
		return nil, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(parts))
	}
	s := &Schedule{spec: spec}
	sets := []*uint64{&s.minute, &s.hour, &s.dom, &s.month, &s.dow}
	for i, p := range parts {
		bits, err := parseCronField(p, cronFields[i])
		if err != nil {
			return nil, err
		}
		*sets[i] = bits
	}
	if s.dow&(1<<7) != 0 { // 7 is Sunday too
		s.dow |= 1
	}
	s.domStar = parts[2] == "*" || parts[2] == "?"
	s.dowStar = parts[4] == "*" || parts[4] == "?"
	// Reject expressions that never fire, e.g. "0 0 30 2 *".
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("never fires (no month has that day)")
	}
	return s, nil
}

func parseCronField(text string, f cronField) (uint64, error) {
	var bits uint64
	for _, item := range strings.Split(text, ",") {
		if item == "" {
			return 0, fmt.Errorf("%s: empty list item in %q", f.name, text)
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("%s: bad step %q (1..%d)", f.name, stepText, f.max)
			}
			step = n
		}
		lo, hi := f.min, f.max
		if f.name == "day of week" {
			hi = 6 // "*" is 0-6; 7 is only an alias
		}
		switch {
		case rng == "*" || rng == "?":
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = cronValue(a, f); err != nil {
				return 0, err
			}
			hi = lo
			if isRange {
				if hi, err = cronValue(b, f); err != nil {
					return 0, err
				}
				if hi < lo {
					return 0, fmt.Errorf("%s: range %s goes backwards", f.name, rng)
				}
			} else if hasStep {
				hi = f.max // "5/15" means 5-max/15
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func cronValue(text string, f cronField) (int, error) {
	for i, name := range f.names {
		if strings.EqualFold(text, name) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(text)
	if err != nil {
		return 0, fmt.Errorf("%s: bad value %q", f.name, text)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%s: %d out of range %d-%d", f.name, v, f.min, f.max)
	}
	return v, nil
}

// String returns the expression as written.
func (s *Schedule) String() string { return s.spec }

func (s *Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dow
	case s.dowStar:
		return dom
	}
	return dom || dow
}

// cronHorizon bounds the search of Next: 8 years covers every 29 February.
const cronHorizon = 8 * 366 * 24 * time.Hour

// Next returns the first time strictly after t that the schedule matches,
// at a whole minute in t's location, or the zero time if there is none
// within eight years. A local time skipped by a daylight-saving jump does not
// fire that day; a repeated one fires once.
func (s *Schedule) Next(t time.Time) time.Time {
	loc := t.Location()
	limit := t.Add(cronHorizon)
	// Start at the next whole minute.
	cur := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, loc).Add(time.Minute)
	if !cur.After(t) {
		cur = cur.Add(time.Minute)
	}
	for cur.Before(limit) {
		y, mo, d := cur.Date()
		h, mi := cur.Hour(), cur.Minute()
		var next time.Time
		switch {
		case s.month&(1<<uint(mo)) == 0:
			next = time.Date(y, mo+1, 1, 0, 0, 0, 0, loc)
		case !s.dayMatches(cur):
			next = time.Date(y, mo, d+1, 0, 0, 0, 0, loc)
		case s.hour&(1<<uint(h)) == 0:
			next = time.Date(y, mo, d, h+1, 0, 0, 0, loc)
		case s.minute&(1<<uint(mi)) == 0:
			next = time.Date(y, mo, d, h, mi+1, 0, 0, loc)
		default:
			return cur
		}
		// time.Date normalises into the repeated hour of a DST fall-back to
		// its first occurrence, which can lie before cur: always move forward.
		if !next.After(cur) {
			next = cur.Add(time.Minute)
		}
		cur = next
	}
	return time.Time{}
}

// Next returns the next opening of the window strictly after t, in the
// window's time zone. The window must have passed Validate.
func (w *Window) Next(t time.Time) time.Time {
	if w.sched == nil {
		return time.Time{}
	}
	return w.sched.Next(t.In(w.location()))
}

// Active reports whether the window is open at t and, if so, when it closes.
// The window must have passed Validate.
func (w *Window) Active(t time.Time) (bool, time.Time) {
	if w.sched == nil || w.Duration <= 0 {
		return false, time.Time{}
	}
	// The latest opening in (t-Duration, t] keeps the window open at t.
	start := w.sched.Next(t.Add(-w.Duration).In(w.location()))
	if start.IsZero() || start.After(t) {
		return false, time.Time{}
	}
	// Overlapping openings extend the window.
	end := start.Add(w.Duration)
	for {
		n := w.sched.Next(start)
		if n.IsZero() || n.After(t) {
			break
		}
		start, end = n, n.Add(w.Duration)
	}
	return true, end
}

// Schedule returns the parsed cron expression (nil before Validate).
func (w *Window) Schedule() *Schedule { return w.sched }

// Location returns the window's time zone (Local before Validate).
func (w *Window) Location() *time.Location { return w.location() }

func (w *Window) location() *time.Location {
	if w.loc == nil {
		return time.Local
	}
	return w.loc
}
