package host

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/hashicorp/go-hclog"
)

func TestBackoff(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 2 * time.Second
	for _, tc := range []struct {
		name    string
		attempt int
		r       float64
		want    time.Duration
	}{
		{"first, no jitter", 0, 0, 50 * time.Millisecond},
		{"first, most jitter", 0, 0.999999, 99999950 * time.Nanosecond},
		{"second doubles", 1, 0, 100 * time.Millisecond},
		{"fifth", 4, 0.5, 1200 * time.Millisecond},
		{"capped", 5, 0, time.Second},
		{"capped, full", 5, 1, 2 * time.Second},
		{"huge attempt", 1000, 0, time.Second},
		{"shift overflow", 62, 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.attempt, lo, hi, tc.r); got != tc.want {
				t.Errorf("backoff(%d, r=%v) = %v, want %v", tc.attempt, tc.r, got, tc.want)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateStopped: "stopped", StateStarting: "starting", StateUp: "up", StateDown: "down", 9: "state(9)", -1: "state(-1)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d) = %q, want %q", int(s), got, want)
		}
	}
}

type recHandler struct {
	mu    sync.Mutex
	level slog.Level
	recs  []slog.Record
	attrs []slog.Attr
}

func (h *recHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recHandler{level: h.level, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h *recHandler) WithGroup(string) slog.Handler { return h }
func (h *recHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

func TestHCLogAdapter(t *testing.T) {
	h := &recHandler{level: slog.LevelDebug}
	l := newHCLog(slog.New(h)).Named("drover-plugin-x").With("k", "v")

	if l.GetLevel() != hclog.Debug || l.IsTrace() || !l.IsDebug() {
		t.Errorf("level %v", l.GetLevel())
	}
	l.Trace("dropped")
	l.Info("bus opened", "bus", "b1", "timestamp", "2025-11-25T20:41:00.123Z", "plugin", "/x/drover-plugin-x", 7, "odd key", "dangling")
	l.Error("boom", "timestamp", "0001-01-01T00:00:00.000Z")
	l.Log(hclog.Off, "never")
	l.StandardLogger(nil).Print("from std log")

	if len(h.recs) != 3 {
		t.Fatalf("%d records, want 3", len(h.recs))
	}
	r := h.recs[0]
	if r.Message != "bus opened" || r.Level != slog.LevelInfo {
		t.Errorf("record %v %q", r.Level, r.Message)
	}
	if want := time.Date(2025, 11, 25, 20, 41, 0, 123e6, time.UTC); !r.Time.Equal(want) {
		t.Errorf("time %v, want the plugin's %v", r.Time, want)
	}
	got := attrs(r)
	if got["k"] != "v" || got["bus"] != "b1" || got["7"] != "odd key" || got[hclog.MissingKey] != "dangling" ||
		got["executable"] != "/x/drover-plugin-x" {
		t.Errorf("attrs %v", got)
	}
	if _, ok := got["timestamp"]; ok {
		t.Error("timestamp kept as an attribute")
	}
	if h.recs[1].Time.Year() < 2000 {
		t.Errorf("zero plugin timestamp used: %v", h.recs[1].Time)
	}
	if !strings.Contains(h.recs[2].Message, "from std log") {
		t.Errorf("std log record %q", h.recs[2].Message)
	}
}

func TestTail(t *testing.T) {
	tl := newTail(2)
	for _, s := range []string{"one", "\n", "two\nthree", "\n", "  \n", "partial"} {
		_, _ = tl.Write([]byte(s))
	}
	if got, want := tl.suffix(), "; plugin stderr: two | three"; got != want {
		t.Errorf("suffix %q, want %q", got, want)
	}
	if got := newTail(2).suffix(); got != "" {
		t.Errorf("empty tail suffix %q", got)
	}
}

func TestLevelFor(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  string
	}{
		{plugins.LevelTrace, "debug"},
		{slog.LevelDebug, "debug"},
		{slog.LevelInfo, "info"},
		{slog.LevelWarn, "warn"},
		{slog.LevelError, "error"},
	} {
		if got := levelFor(slog.New(&recHandler{level: tc.level})); got != tc.want {
			t.Errorf("levelFor(%v) = %q, want %q", tc.level, got, tc.want)
		}
	}
}
