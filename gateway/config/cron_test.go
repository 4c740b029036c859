package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseCron(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr string // empty: must parse
	}{
		{spec: "0 2 * * *"},
		{spec: "*/15 * * * *"},
		{spec: "0 8-18/2 * * mon-fri"},
		{spec: "30 1 1,15 * *"},
		{spec: "0 0 29 feb *"},
		{spec: "0 12 * * 7"},
		{spec: "5/20 * * * *"},
		{spec: "0 0 * JAN,Jul SUN"},
		{spec: "@daily"},
		{spec: "@hourly"},
		{spec: "  0 2 * * *  "},
		{spec: "", wantErr: "want 5 fields"},
		{spec: "0 2 * *", wantErr: "want 5 fields"},
		{spec: "0 2 * * * *", wantErr: "got 6"},
		{spec: "60 * * * *", wantErr: "minute: end of range (60) above maximum (59)"},
		{spec: "0 25 * * *", wantErr: "hour: end of range (25) above maximum (23)"},
		{spec: "0 0 0 * *", wantErr: "day of month: beginning of range (0) below minimum (1)"},
		{spec: "0 0 * 13 *", wantErr: "month: end of range (13) above maximum (12)"},
		{spec: "0 0 * * 8", wantErr: "day of week: end of range (8) above maximum (6): 8 (0 and 7 are Sunday)"},
		{spec: "0 0 * * fun", wantErr: "day of week: failed to parse int from fun"},
		{spec: "*/0 * * * *", wantErr: "minute: step of range should be a positive number"},
		{spec: "0 5-2 * * *", wantErr: "hour: beginning of range (5) beyond end of range (2)"},
		{spec: "0 0 30 2 *", wantErr: "never fires"},
		{spec: "1,,2 * * * *", wantErr: `minute: empty list item in "1,,2"`},
		{spec: "@sometimes", wantErr: "unknown shorthand"},
		{spec: "a b c d e", wantErr: "minute: failed to parse int from a"},
		{spec: "-1 * * * *", wantErr: "minute"},
		{spec: "@DAILY"},
		{spec: "@every 1h", wantErr: "unknown shorthand"},
		{spec: "TZ=UTC 0 2 * * *", wantErr: "got 6"},
		{spec: "0 0 * * 5-7"},
		{spec: "0 0 * * fri-7/2"},
		{spec: "0 0 * * 7/3"},
		{spec: "0 0 * * 8-7", wantErr: "day of week"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := ParseCron(tt.spec)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseCron(%q): %v", tt.spec, err)
				}
				if s.String() != tt.spec {
					t.Errorf("String() = %q, want %q", s.String(), tt.spec)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseCron(%q) error = %v, want %q", tt.spec, err, tt.wantErr)
			}
		})
	}
}

func TestScheduleNext(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	local := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name string
		spec string
		from time.Time
		want time.Time
	}{
		{"nightly later today", "0 2 * * *", utc("2026-03-10 01:00"), utc("2026-03-10 02:00")},
		{"nightly tomorrow", "0 2 * * *", utc("2026-03-10 02:00"), utc("2026-03-11 02:00")},
		{"strictly after", "* * * * *", utc("2026-03-10 02:00"), utc("2026-03-10 02:01")},
		{"seconds round up", "* * * * *", utc("2026-03-10 02:00").Add(30 * time.Second), utc("2026-03-10 02:01")},
		{"every 15 minutes", "*/15 * * * *", utc("2026-03-10 02:16"), utc("2026-03-10 02:30")},
		{"weekday", "0 9 * * mon", utc("2026-03-10 10:00"), utc("2026-03-16 09:00")},
		{"sunday as 7", "0 0 * * 7", utc("2026-03-10 00:00"), utc("2026-03-15 00:00")},
		{"dom or dow", "0 0 1 * fri", utc("2026-03-10 00:00"), utc("2026-03-13 00:00")},
		{"month rollover", "0 0 1 * *", utc("2026-12-15 00:00"), utc("2027-01-01 00:00")},
		{"leap day", "0 0 29 2 *", utc("2026-03-01 00:00"), utc("2028-02-29 00:00")},
		{"31st skips short months", "0 0 31 * *", utc("2026-04-01 00:00"), utc("2026-05-31 00:00")},
		{"range with step", "0 8-18/5 * * *", utc("2026-03-10 13:30"), utc("2026-03-10 18:00")},
		{"in local zone", "0 2 * * *", local("2026-06-01 03:00"), local("2026-06-02 02:00")},
		// 2026-03-29: Berlin skips 02:00-03:00; a 02:30 job does not fire that day.
		{"spring forward skips", "30 2 * * *", local("2026-03-29 00:00"), local("2026-03-30 02:30")},
		// 2026-10-25: 02:00-03:00 happens twice; the job fires once, in the
		// first pass (CEST).
		{"fall back fires once", "30 2 * * *", local("2026-10-25 00:00"), time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseCron(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Next(tt.from)
			if !got.Equal(tt.want) {
				t.Errorf("Next(%q, %s) = %s, want %s", tt.spec, tt.from, got, tt.want)
			}
		})
	}
	t.Run("fall back does not repeat", func(t *testing.T) {
		s, _ := ParseCron("30 2 * * *")
		first := s.Next(local("2026-10-25 00:00"))
		second := s.Next(first)
		if want := local("2026-10-26 02:30"); !second.Equal(want) {
			t.Errorf("after %s: Next = %s, want %s", first, second, want)
		}
	})
	t.Run("monotonic over a year", func(t *testing.T) {
		s, _ := ParseCron("*/7 */5 * * *")
		cur := local("2026-01-01 00:00")
		for i := 0; i < 5000; i++ {
			next := s.Next(cur)
			if !next.After(cur) {
				t.Fatalf("Next(%s) = %s is not after it", cur, next)
			}
			cur = next
		}
	})
}

// TestSundayAsSeven checks which days the forms with 7 match: 7 is Sunday,
// as 0 is.
func TestSundayAsSeven(t *testing.T) {
	// 2026-03-01 is a Sunday.
	tests := []struct {
		dow  string
		want []time.Weekday
	}{
		{"7", []time.Weekday{time.Sunday}},
		{"0,7", []time.Weekday{time.Sunday}},
		{"5-7", []time.Weekday{time.Sunday, time.Friday, time.Saturday}},
		{"sat-7", []time.Weekday{time.Sunday, time.Saturday}},
		{"1-7/2", []time.Weekday{time.Sunday, time.Monday, time.Wednesday, time.Friday}},
		{"2-7/2", []time.Weekday{time.Tuesday, time.Thursday, time.Saturday}},
		{"7/3", []time.Weekday{time.Sunday}},
		{"7-7", []time.Weekday{time.Sunday}},
		{"mon", []time.Weekday{time.Monday}},
	}
	for _, tt := range tests {
		t.Run(tt.dow, func(t *testing.T) {
			s, err := ParseCron("0 12 * * " + tt.dow)
			if err != nil {
				t.Fatalf("ParseCron(day of week %q): %v", tt.dow, err)
			}
			var got []time.Weekday
			cur := time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC)
			for range 7 {
				next := s.Next(cur)
				if next.Sub(cur) > 7*24*time.Hour || len(got) > 0 && next.Weekday() == got[0] {
					break
				}
				got = append(got, next.Weekday())
				cur = next
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("day of week %q fires on %v, want %v", tt.dow, got, tt.want)
			}
		})
	}
}

// TestScheduleFallBackWest is the fall-back rule west of UTC, where
// time.Date picks the first pass of a repeated hour rather than the second.
func TestScheduleFallBackWest(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseCron("30 1 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-11-01: New York repeats 01:00-02:00 (EDT, then EST).
	first := s.Next(time.Date(2026, 11, 1, 0, 0, 0, 0, ny))
	if want := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC); !first.Equal(want) {
		t.Fatalf("Next = %s, want the first pass %s", first, want.In(ny))
	}
	if second, want := s.Next(first), time.Date(2026, 11, 2, 1, 30, 0, 0, ny); !second.Equal(want) {
		t.Errorf("after %s: Next = %s, want %s", first, second, want)
	}
}

func TestWindowActive(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name    string
		cron    string
		dur     time.Duration
		t       time.Time
		active  bool
		wantEnd time.Time
	}{
		{"before", "0 2 * * *", 2 * time.Hour, at("2026-03-10 01:59"), false, time.Time{}},
		{"at opening", "0 2 * * *", 2 * time.Hour, at("2026-03-10 02:00"), true, at("2026-03-10 04:00")},
		{"inside", "0 2 * * *", 2 * time.Hour, at("2026-03-10 03:59"), true, at("2026-03-10 04:00")},
		{"at closing", "0 2 * * *", 2 * time.Hour, at("2026-03-10 04:00"), false, time.Time{}},
		{"across midnight", "0 23 * * *", 3 * time.Hour, at("2026-03-11 01:00"), true, at("2026-03-11 02:00")},
		{"overlapping openings", "0 * * * *", 90 * time.Minute, at("2026-03-10 05:10"), true, at("2026-03-10 06:30")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Gateway: Gateway{ID: "gw"}, Maintenance: Maintenance{Windows: []Window{{Cron: tt.cron, Duration: tt.dur, Timezone: "UTC"}}}}
			applyDefaults(c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			w := &c.Maintenance.Windows[0]
			active, end := w.Active(tt.t)
			if active != tt.active || !end.Equal(tt.wantEnd) {
				t.Errorf("Active(%s) = %v, %s; want %v, %s", tt.t, active, end, tt.active, tt.wantEnd)
			}
			if next := w.Next(tt.t); !next.After(tt.t) {
				t.Errorf("Next(%s) = %s", tt.t, next)
			}
		})
	}
}

// FuzzParseCron feeds garbage to the parser: it must never panic, and a
// schedule it accepts must produce increasing times.
func FuzzParseCron(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "*/5 1-3 * jan mon", "@daily", "0 0 31 2 *", "99 * * * *", "1-/ * * * *", "*/9999999999999 * * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseCron(spec)
		if err != nil {
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if next := s.Next(from); !next.After(from) {
			t.Fatalf("ParseCron(%q) accepted but Next = %s", spec, next)
		}
	})
}
