package jobs

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/config"
)

func TestSpecNormalize(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	cases := []struct {
		name    string
		spec    Spec
		wantErr string // substring; "" for success
		check   func(t *testing.T, s Spec)
	}{
		{"config", Spec{Kind: KindConfig, Device: "pump-1", Payload: json.RawMessage(`{"setpoint":2}`)}, "", func(t *testing.T, s Spec) {
			if s.Disruptive || s.Source != SourceTechnician || s.MaxAttempts != 3 {
				t.Errorf("defaults: %+v", s)
			}
		}},
		{"reboot is disruptive", Spec{Kind: KindReboot, Device: "d"}, "", func(t *testing.T, s Spec) {
			if !s.Disruptive || string(s.Payload) != "null" {
				t.Errorf("got disruptive=%v payload=%s", s.Disruptive, s.Payload)
			}
		}},
		{"factoryReset is disruptive", Spec{Kind: KindFactoryReset, Device: "d"}, "", func(t *testing.T, s Spec) {
			if !s.Disruptive {
				t.Error("not disruptive")
			}
		}},
		{"firmware is disruptive", Spec{Kind: KindFirmware, Device: "d", MaxAttempts: 7}, "", func(t *testing.T, s Spec) {
			if !s.Disruptive || s.MaxAttempts != 7 {
				t.Errorf("got %+v", s)
			}
		}},
		{"write is not disruptive", Spec{Kind: KindWrite, Device: "d", Source: SourceHubMethod}, "", func(t *testing.T, s Spec) {
			if s.Disruptive {
				t.Error("write is disruptive")
			}
		}},
		{"custom method", Spec{Kind: "method:calibrate", Device: "d", Source: SourceHubMethod, Disruptive: true}, "", nil},
		{"payload whitespace trimmed", Spec{Kind: KindConfig, Device: "d", Payload: json.RawMessage("  {} \n")}, "", func(t *testing.T, s Spec) {
			if string(s.Payload) != "{}" {
				t.Errorf("payload %q", s.Payload)
			}
		}},
		{"no device", Spec{Kind: KindConfig}, "device is required", nil},
		{"no kind", Spec{Device: "d"}, "unknown kind", nil},
		{"unknown kind", Spec{Kind: "explode", Device: "d"}, "unknown kind", nil},
		{"method without name", Spec{Kind: "method:", Device: "d"}, "non-empty name", nil},
		{"method with space", Spec{Kind: "method:a b", Device: "d"}, "non-empty name", nil},
		{"device with newline", Spec{Kind: KindConfig, Device: "a\nb"}, "device", nil},
		{"device too long", Spec{Kind: KindConfig, Device: long}, "device", nil},
		{"bad UTF-8 bus", Spec{Kind: KindConfig, Device: "d", Bus: "\xff\xfe"}, "bus", nil},
		{"bad payload", Spec{Kind: KindConfig, Device: "d", Payload: json.RawMessage(`{"a":`)}, "not valid JSON", nil},
		{"payload too big", Spec{Kind: KindConfig, Device: "d", Payload: json.RawMessage(`"` + strings.Repeat("a", MaxPayload) + `"`)}, "over the limit", nil},
		{"unknown source", Spec{Kind: KindConfig, Device: "d", Source: "cloud"}, "unknown source", nil},
		{"negative attempts", Spec{Kind: KindConfig, Device: "d", MaxAttempts: -1}, "maxAttempts", nil},
		{"too many attempts", Spec{Kind: KindConfig, Device: "d", MaxAttempts: MaxAttempts + 1}, "maxAttempts", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			err := s.normalize(3)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("normalize(%+v): %v", tc.spec, err)
				}
				if tc.check != nil {
					tc.check(t, s)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("normalize(%+v) = %v, want ErrInvalid containing %q", tc.spec, err, tc.wantErr)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const s = time.Second
	cases := []struct {
		name      string
		attempt   int
		base, max time.Duration
		r         float64
		want      time.Duration
	}{
		{"first, no jitter", 1, s, time.Minute, 0, s / 2},
		{"first, full jitter", 1, s, time.Minute, 0.999999999, s - 1},
		{"second doubles", 2, s, time.Minute, 0, s},
		{"third", 3, s, time.Minute, 0.5, 3 * s},
		{"capped", 20, s, 10 * s, 0, 5 * s},
		{"huge attempt does not overflow", 1 << 30, s, time.Hour, 0, 30 * time.Minute},
		{"max below base", 3, 4 * s, s, 0, 2 * s},
		{"zero base", 3, 0, s, 0.5, 0},
		{"bad r", 1, s, s, -3, s / 2},
		{"NaN r", 1, s, s, nan(), s / 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.attempt, tc.base, tc.max, tc.r); got != tc.want {
				t.Errorf("backoff(%d, %v, %v, %v) = %v, want %v", tc.attempt, tc.base, tc.max, tc.r, got, tc.want)
			}
		})
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestDecide(t *testing.T) {
	now := start
	later := now.Add(time.Hour)
	free := env{now: now, recheck: time.Minute, online: true, windowOpen: true}
	with := func(f func(*env)) env { e := free; f(&e); return e }
	cases := []struct {
		name string
		job  Job
		env  env
		want verdict
	}{
		{"free job runs", Job{State: StateQueued}, free, verdict{act: actRun}},
		{"corrupt fails", Job{State: StateQueued, corrupt: "bad"}, free, verdict{act: actFail, msg: "bad"}},
		{"deadline passed", Job{State: StateWaiting, Deadline: now}, free, verdict{act: actFail, reason: ReasonDeadline, msg: "deadline"}},
		{"back-off holds", Job{State: StateWaiting, NotBefore: later}, free, verdict{act: actHold, wake: later}},
		{"back-off vs earlier deadline", Job{State: StateWaiting, NotBefore: later, Deadline: now.Add(time.Minute)}, free,
			verdict{act: actHold, wake: now.Add(time.Minute)}},
		{"window closed", Job{State: StateQueued, Disruptive: true}, with(func(e *env) { e.windowOpen = false; e.nextWindow = later }),
			verdict{act: actWait, reason: ReasonWindow, wake: later}},
		{"window closed but forced", Job{State: StateQueued, Disruptive: true, Force: true}, with(func(e *env) { e.windowOpen = false }),
			verdict{act: actRun}},
		{"window closed, not disruptive", Job{State: StateQueued}, with(func(e *env) { e.windowOpen = false }), verdict{act: actRun}},
		{"offline", Job{State: StateQueued}, with(func(e *env) { e.online = false }),
			verdict{act: actWait, reason: ReasonOffline, wake: now.Add(time.Minute)}},
		{"device busy", Job{State: StateQueued}, with(func(e *env) { e.deviceBusy = true }), verdict{act: actWait, reason: ReasonDeviceBusy}},
		{"bus busy", Job{State: StateQueued}, with(func(e *env) { e.busBusy = true }), verdict{act: actWait, reason: ReasonBusBusy}},
		{"window before busy", Job{State: StateQueued, Disruptive: true}, with(func(e *env) { e.windowOpen = false; e.deviceBusy = true }),
			verdict{act: actWait, reason: ReasonWindow}},
		{"interrupted verifies", Job{State: StateInterrupted, Disruptive: true, Deadline: now}, with(func(e *env) { e.windowOpen = false }),
			verdict{act: actVerify}},
		{"interrupted offline", Job{State: StateInterrupted}, with(func(e *env) { e.online = false }),
			verdict{act: actWait, reason: ReasonOffline, wake: now.Add(time.Minute)}},
		{"interrupted busy device", Job{State: StateInterrupted}, with(func(e *env) { e.deviceBusy = true }),
			verdict{act: actWait, reason: ReasonDeviceBusy}},
		{"interrupted back-off", Job{State: StateInterrupted, NotBefore: later}, free, verdict{act: actHold, wake: later}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(tc.job, tc.env); got != tc.want {
				t.Errorf("decide(%+v, %+v) = %+v, want %+v", tc.job, tc.env, got, tc.want)
			}
		})
	}
}

// loadedWindows returns windows compiled by config.Load.
func loadedWindows(t *testing.T) []config.Window {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := "gateway:\n  id: gw-test\nmaintenance:\n  windows:\n    - cron: \"0 2 * * *\"\n      duration: 2h\n      timezone: UTC\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	if c.Maintenance.Windows[0].Schedule() == nil {
		t.Fatal("config.Load left the window uncompiled")
	}
	return c.Maintenance.Windows
}

func TestWindowsOpen(t *testing.T) {
	nightly := config.Window{Cron: "0 2 * * *", Duration: 2 * time.Hour, Timezone: "UTC"}
	berlin := config.Window{Cron: "0 2 * * *", Duration: time.Hour, Timezone: "Europe/Berlin"}
	day := func(h, m int) time.Time { return time.Date(2026, 3, 3, h, m, 0, 0, time.UTC) }
	compile := func(t *testing.T, ws ...config.Window) []window {
		var out []window
		for _, w := range ws {
			c, err := compileWindow(w)
			if err != nil {
				t.Fatalf("compileWindow(%+v): %v", w, err)
			}
			out = append(out, c)
		}
		return out
	}
	sources := map[string]func(t *testing.T) []window{
		"fallback": func(t *testing.T) []window { return compile(t, nightly) },
		"compiled": func(t *testing.T) []window { return compile(t, loadedWindows(t)...) },
	}
	cases := []struct {
		name     string
		at       time.Time
		open     bool
		nextOpen time.Time
	}{
		{"before", day(1, 59), false, day(2, 0)},
		{"opening", day(2, 0), true, time.Time{}},
		{"inside", day(3, 59), true, time.Time{}},
		{"closing", day(4, 0), false, day(2, 0).AddDate(0, 0, 1)},
		{"noon", day(12, 0), false, day(2, 0).AddDate(0, 0, 1)},
	}
	for _, src := range sortedKeys(sources) {
		for _, tc := range cases {
			t.Run(src+"/"+tc.name, func(t *testing.T) {
				open, next := windowsOpen(sources[src](t), tc.at)
				if open != tc.open || !next.Equal(tc.nextOpen) {
					t.Errorf("windowsOpen at %v = %v, %v; want %v, %v", tc.at, open, next, tc.open, tc.nextOpen)
				}
			})
		}
	}
	t.Run("no windows means always", func(t *testing.T) {
		if open, _ := windowsOpen(nil, day(12, 0)); !open {
			t.Error("closed without windows")
		}
	})
	t.Run("any of several", func(t *testing.T) {
		ws := compile(t, nightly, berlin) // Berlin 02:00 is 01:00 UTC in winter
		if open, _ := windowsOpen(ws, day(1, 30)); !open {
			t.Error("Berlin window not open at 01:30 UTC")
		}
		if open, next := windowsOpen(ws, day(0, 30)); open || !next.Equal(day(1, 0)) {
			t.Errorf("at 00:30 UTC: open=%v next=%v, want closed until 01:00", open, next)
		}
	})
}

func TestParseMaintenance(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		want    int
		wantErr string
	}{
		{"null", `null`, 0, ""},
		{"empty", ``, 0, ""},
		{"no windows", `{"other": 1}`, 0, ""},
		{"one", `{"windows":[{"cron":"0 2 * * *","duration":"2h","timezone":"Europe/Berlin"}]}`, 1, ""},
		{"local default", `{"windows":[{"cron":"@daily","duration":"30m"}]}`, 1, ""},
		{"two", `{"windows":[{"cron":"0 2 * * *","duration":"2h"},{"cron":"0 14 * * 6","duration":"1h","timezone":"UTC"}]}`, 2, ""},
		{"not an object", `[1,2]`, 0, "parse desired.maintenance"},
		{"windows not a list", `{"windows": 3}`, 0, "parse desired.maintenance"},
		{"window not an object", `{"windows": ["x"]}`, 0, "windows[0]"},
		{"unknown key", `{"windows":[{"cron":"0 2 * * *","duration":"2h","tz":"UTC"}]}`, 0, "unknown field"},
		{"bad cron", `{"windows":[{"cron":"61 2 * * *","duration":"2h"}]}`, 0, "minute"},
		{"never fires", `{"windows":[{"cron":"0 0 30 2 *","duration":"2h"}]}`, 0, "never fires"},
		{"no duration", `{"windows":[{"cron":"0 2 * * *"}]}`, 0, "duration"},
		{"number duration", `{"windows":[{"cron":"0 2 * * *","duration":7200}]}`, 0, "windows[0]"},
		{"negative duration", `{"windows":[{"cron":"0 2 * * *","duration":"-1h"}]}`, 0, "positive"},
		{"bad zone", `{"windows":[{"cron":"0 2 * * *","duration":"1h","timezone":"Mars/Olympus"}]}`, 0, "time zone"},
		{"truncated", `{"windows":[{"cron":`, 0, "parse desired.maintenance"},
		{"too many", `{"windows":[` + strings.TrimSuffix(strings.Repeat(`{"cron":"@daily","duration":"1h"},`, MaxWindows+1), ",") + `]}`, 0, "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := ParseMaintenance(json.RawMessage(tc.raw))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseMaintenance(%s) = %v, want error containing %q", tc.raw, err, tc.wantErr)
				}
				return
			}
			if err != nil || len(ws) != tc.want {
				t.Fatalf("ParseMaintenance(%s) = %d windows, %v; want %d", tc.raw, len(ws), err, tc.want)
			}
		})
	}
}

func FuzzParseMaintenance(f *testing.F) {
	f.Add(`{"windows":[{"cron":"0 2 * * *","duration":"2h","timezone":"UTC"}]}`)
	f.Add(`{"windows":[{"cron":"*/0 * * * *","duration":"1ns"}]}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, raw string) {
		ws, err := ParseMaintenance(json.RawMessage(raw))
		if err != nil {
			return
		}
		for _, w := range ws {
			c, err := compileWindow(w)
			if err != nil {
				t.Fatalf("parsed window does not compile: %v", err)
			}
			c.active(start)
			c.next(start)
		}
	})
}
