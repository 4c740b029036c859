package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/drover-iot/drover/gateway/config"
)

// MaxWindows bounds the windows of one device (desired.maintenance).
const MaxWindows = 64

// window is a compiled maintenance window. A window compiled by
// config.Validate (gateway.yaml, or the gateway's desired overlay) is used
// as is; one built elsewhere (a device's desired.maintenance) is compiled
// here with config.ParseCron, because config offers no exported way to
// compile a lone Window.
type window struct {
	cw    *config.Window // compiled by config; nil for the fallback below
	sched *config.Schedule
	loc   *time.Location
	dur   time.Duration
}

// compileWindow checks w and compiles it.
func compileWindow(w config.Window) (window, error) {
	if w.Duration <= 0 {
		return window{}, fmt.Errorf("window %q: duration must be positive", w.Cron)
	}
	if w.Schedule() != nil {
		c := w
		return window{cw: &c}, nil
	}
	s, err := config.ParseCron(w.Cron)
	if err != nil {
		return window{}, fmt.Errorf("window %q: %w", w.Cron, err)
	}
	tz := w.Timezone
	if tz == "" {
		tz = "Local"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return window{}, fmt.Errorf("window %q: time zone %q: %w", w.Cron, tz, err)
	}
	return window{sched: s, loc: loc, dur: w.Duration}, nil
}

// active reports whether the window is open at t.
func (w window) active(t time.Time) bool {
	if w.cw != nil {
		open, _ := w.cw.Active(t)
		return open
	}
	// Open at t when an opening lies in (t-dur, t] (as config.Window.Active).
	start := w.sched.Next(t.Add(-w.dur).In(w.loc))
	return !start.IsZero() && !start.After(t)
}

// next returns the next opening strictly after t (zero if none).
func (w window) next(t time.Time) time.Time {
	if w.cw != nil {
		return w.cw.Next(t)
	}
	return w.sched.Next(t.In(w.loc))
}

// windowsOpen reports whether disruptive work may run at now under ws and,
// if not, when the next window opens (zero when none ever does). No
// windows at all means no restriction.
func windowsOpen(ws []window, now time.Time) (bool, time.Time) {
	if len(ws) == 0 {
		return true, time.Time{}
	}
	var next time.Time
	for _, w := range ws {
		if w.active(now) {
			return true, time.Time{}
		}
		if n := w.next(now); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return false, next
}

// ParseMaintenance parses a desired.maintenance section of a device twin:
//
//	{"windows": [{"cron": "0 2 * * *", "duration": "2h", "timezone": "Europe/Berlin"}]}
//
// Durations are Go duration strings; timezone defaults to Local. Other keys
// of the section are ignored (the twin layout may grow); unknown keys of a
// window are errors. JSON null or an empty section returns no windows.
// Every window is checked as SetWindows would.
func ParseMaintenance(raw json.RawMessage) ([]config.Window, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var sec struct {
		Windows []json.RawMessage `json:"windows"`
	}
	if err := json.Unmarshal(raw, &sec); err != nil {
		return nil, fmt.Errorf("parse desired.maintenance: %w", err)
	}
	if len(sec.Windows) > MaxWindows {
		return nil, fmt.Errorf("parse desired.maintenance: %d windows, at most %d", len(sec.Windows), MaxWindows)
	}
	out := make([]config.Window, 0, len(sec.Windows))
	for i, rw := range sec.Windows {
		var w struct {
			Cron     string `json:"cron"`
			Duration string `json:"duration"`
			Timezone string `json:"timezone"`
		}
		dec := json.NewDecoder(bytes.NewReader(rw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			return nil, fmt.Errorf("parse desired.maintenance.windows[%d]: %w", i, err)
		}
		d, err := time.ParseDuration(w.Duration)
		if err != nil {
			return nil, fmt.Errorf("parse desired.maintenance.windows[%d].duration: %w", i, err)
		}
		cw := config.Window{Cron: w.Cron, Duration: d, Timezone: w.Timezone}
		if _, err := compileWindow(cw); err != nil {
			return nil, fmt.Errorf("parse desired.maintenance.windows[%d]: %w", i, err)
		}
		out = append(out, cw)
	}
	return out, nil
}
