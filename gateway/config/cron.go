package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
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
//
// The parsing and the search for the next time are robfig/cron's; this type
// adds what Drover promised before it used that library: 7 for Sunday,
// errors that name the field, no time zone inside the expression (windows
// have a timezone key), and a repeated hour that fires once.
type Schedule struct {
	spec  string
	sched cron.Schedule
}

// cronParser reads the five standard fields and the @ shorthands; a leading
// TZ= is refused before it is reached (the field count).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// cronFieldNames name the fields in errors, in order.
var cronFieldNames = [5]string{"minute", "hour", "day of month", "month", "day of week"}

// cronShorthands are the @ forms accepted (robfig's @every is not: a window
// opens at wall-clock times).
var cronShorthands = map[string]bool{
	"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
	"@daily": true, "@midnight": true, "@hourly": true,
}

// ParseCron parses a cron expression. The error says which field is wrong
// and why. An expression that can never fire (30 February) is an error.
func ParseCron(spec string) (*Schedule, error) {
	expr := strings.TrimSpace(spec)
	if strings.HasPrefix(expr, "@") {
		expr = strings.ToLower(expr)
		if !cronShorthands[expr] {
			return nil, fmt.Errorf("unknown shorthand %q (use @hourly, @daily, @weekly, @monthly or @yearly)", spec)
		}
	} else {
		parts := strings.Fields(expr)
		if len(parts) != 5 {
			return nil, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(parts))
		}
		// The parser skips empty list items; "1,,2" is more likely a typo.
		for i, p := range parts {
			if slices.Contains(strings.Split(p, ","), "") {
				return nil, fmt.Errorf("%s: empty list item in %q", cronFieldNames[i], p)
			}
		}
		parts[4] = sundayAsSeven(parts[4])
		expr = strings.Join(parts, " ")
	}
	sched, err := cronParser.Parse(expr)
	if err != nil {
		return nil, cronFieldError(strings.Fields(expr), err)
	}
	s := &Schedule{spec: spec, sched: sched}
	// Reject expressions that never fire, e.g. "0 0 30 2 *".
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("never fires (no month has that day)")
	}
	return s, nil
}

// cronFieldError names the field behind err, which the parser's errors do
// not: the first field that fails alone among stars is the culprit.
func cronFieldError(fields []string, err error) error {
	if len(fields) != len(cronFieldNames) {
		return err
	}
	for i, f := range fields {
		probe := []string{"*", "*", "*", "*", "*"}
		probe[i] = f
		if _, ferr := cronParser.Parse(strings.Join(probe, " ")); ferr != nil {
			if i == 4 {
				return fmt.Errorf("%s: %w (0 and 7 are Sunday)", cronFieldNames[i], ferr)
			}
			return fmt.Errorf("%s: %w", cronFieldNames[i], ferr)
		}
	}
	return err
}

// sundayAsSeven rewrites a day-of-week field so that 7, Sunday in classic
// cron, reaches the parser (whose range is 0-6) as 0: "7" and "7/n" become
// "0"; "a-7" becomes "a-6,0", and "a-7/n" becomes "a-6/n", with ",0" when
// the steps land on 7. Anything else is left for the parser to judge.
func sundayAsSeven(field string) string {
	items := strings.Split(field, ",")
	out := make([]string, 0, len(items)+1)
	for _, item := range items {
		rng, step, hasStep := strings.Cut(item, "/")
		lo, hi, isRange := strings.Cut(rng, "-")
		switch {
		case lo == "7" && (!isRange || hi == "7"):
			out = append(out, "0")
		case isRange && hi == "7":
			r := lo + "-6"
			if hasStep {
				r += "/" + step
			}
			out = append(out, r)
			if stepsReachSeven(lo, step, hasStep) {
				out = append(out, "0")
			}
		default:
			out = append(out, item)
		}
	}
	return strings.Join(out, ",")
}

// stepsReachSeven reports whether lo, lo+step, ... hits 7 (lo a number or a
// day name); false when either does not parse, so the parser reports it.
func stepsReachSeven(lo, step string, hasStep bool) bool {
	n, ok := dayNumbers[strings.ToLower(lo)]
	if !ok {
		v, err := strconv.Atoi(lo)
		if err != nil || v < 0 || v > 7 {
			return false
		}
		n = v
	}
	if !hasStep {
		return true
	}
	s, err := strconv.Atoi(step)
	return err == nil && s > 0 && (7-n)%s == 0
}

// dayNumbers are the weekday names cron accepts.
var dayNumbers = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// String returns the expression as written.
func (s *Schedule) String() string { return s.spec }

// Next returns the first time strictly after t that the schedule matches,
// at a whole minute in t's location, or the zero time if there is none
// within five years. A local time skipped by a daylight-saving jump does not
// fire that day; a repeated one fires once.
func (s *Schedule) Next(t time.Time) time.Time {
	n := s.sched.Next(t)
	// robfig/cron fires again in the repeated hour of a fall-back; a
	// maintenance window opens once a night.
	for !n.IsZero() && repeatedWallClock(n) {
		n = s.sched.Next(n)
	}
	return n
}

// maxDSTShift bounds how far a zone moves its clocks back at once (the
// largest in the tz database is an hour; Lord Howe's is half of one).
const maxDSTShift = 3 * time.Hour

// repeatedWallClock reports whether t's wall-clock time already happened
// shortly before, at t minus the clock shift: t lies in the second pass of
// a daylight-saving fall-back.
func repeatedWallClock(t time.Time) bool {
	_, after := t.Zone()
	_, before := t.Add(-maxDSTShift).Zone()
	if before <= after {
		return false
	}
	earlier := t.Add(-time.Duration(before-after) * time.Second)
	return earlier.Day() == t.Day() && earlier.Hour() == t.Hour() && earlier.Minute() == t.Minute()
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
