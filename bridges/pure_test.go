package bridges

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/plugins"
)

func TestScheduleCoalescesAlignedPoints(t *testing.T) {
	points := []PointSpec{
		{Name: "a", Poll: time.Second}, {Name: "b", Poll: time.Second},
		{Name: "c", Poll: 2 * time.Second}, {Name: "d"}, // device default: 3s
	}
	// Start off the grid: the first cycle reads everything, then all align.
	t0 := start.Add(300 * time.Millisecond)
	s := newSchedule(points, 3*time.Second, t0)
	want := []struct {
		at    time.Duration
		names string
	}{
		{300 * time.Millisecond, "[a b c d]"},
		{1 * time.Second, "[a b]"},
		{2 * time.Second, "[a b c]"},
		{3 * time.Second, "[a b d]"},
		{4 * time.Second, "[a b c]"},
		{5 * time.Second, "[a b]"},
		{6 * time.Second, "[a b c d]"},
	}
	now := t0
	for i, w := range want {
		names, at := s.due(now)
		if got := fmt.Sprint(names); got != w.names || !at.Equal(start.Add(w.at)) {
			t.Fatalf("cycle %d: due(+%v) = %s at +%v, want %s at +%v", i, now.Sub(start), got, at.Sub(start), w.names, w.at)
		}
		s.done(names, now)
		now = s.next()
	}
}

func TestScheduleDropsMissedCycles(t *testing.T) {
	s := newSchedule([]PointSpec{{Name: "a", Poll: time.Second}, {Name: "b", Poll: 2 * time.Second}}, time.Second, start)
	names, _ := s.due(start)
	// The cycle took 4.5 s (a saturated bus): one catch-up cycle, not four.
	late := start.Add(4500 * time.Millisecond)
	s.done(names, late)
	names, at := s.due(late)
	if fmt.Sprint(names) != "[a b]" || !at.Equal(start.Add(4*time.Second)) {
		t.Fatalf("after a slow cycle: due = %v at +%v, want [a b] at +4s", names, at.Sub(start))
	}
	s.done(names, late)
	if n := s.next(); !n.Equal(start.Add(5 * time.Second)) {
		t.Fatalf("next = +%v, want +5s", n.Sub(start))
	}
	if names, _ := s.due(late); names != nil {
		t.Fatalf("due again at once: %v", names)
	}
}

func TestChanged(t *testing.T) {
	tests := []struct {
		name     string
		prev     any
		cur      any
		deadband float64
		want     bool
	}{
		{"first value", nil, 1.0, 5, true},
		{"same float", 1.5, 1.5, 0, false},
		{"any float change without deadband", 1.5, 1.5000001, 0, true},
		{"within deadband", 20.0, 20.4, 0.5, false},
		{"at deadband is not beyond it", 20.0, 20.5, 0.5, false},
		{"beyond deadband", 20.0, 20.6, 0.5, true},
		{"beyond deadband downwards", 20.0, 19.4, 0.5, true},
		{"int within deadband", int64(100), int64(102), 5, false},
		{"int beyond deadband", int64(100), int64(106), 5, true},
		{"same int", int64(7), int64(7), 0, false},
		{"int change", int64(7), int64(8), 0, true},
		{"kind change int to float", int64(7), 7.0, 0, true},
		{"kind change within deadband compares values", int64(7), 7.2, 0.5, false},
		{"bool flip ignores deadband", false, true, 10, true},
		{"same bool", true, true, 0, false},
		{"string change", "auto", "manual", 10, true},
		{"same string", "auto", "auto", 0, false},
		{"bool to number", true, int64(1), 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := changed(tt.prev, tt.cur, tt.deadband); got != tt.want {
				t.Errorf("changed(%#v, %#v, %v) = %v, want %v", tt.prev, tt.cur, tt.deadband, got, tt.want)
			}
		})
	}
}

func TestValueFromJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    plugins.Value
		wantErr string
	}{
		{"json int", json.Number("42"), plugins.Value{Kind: plugins.KindInt, Int: 42}, ""},
		{"json negative", json.Number("-7"), plugins.Value{Kind: plugins.KindInt, Int: -7}, ""},
		{"json float", json.Number("21.5"), plugins.Value{Kind: plugins.KindFloat, Float: 21.5}, ""},
		{"json integral float text stays float", json.Number("50.0"), plugins.Value{Kind: plugins.KindFloat, Float: 50}, ""},
		{"json exponent", json.Number("1e3"), plugins.Value{Kind: plugins.KindFloat, Float: 1000}, ""},
		{"json big unsigned", json.Number("18446744073709551615"), plugins.Value{Kind: plugins.KindUint, Uint: math.MaxUint64}, ""},
		{"json too big", json.Number("1e400"), plugins.Value{}, "out of range"},
		{"json beyond uint64", json.Number("18446744073709551616"), plugins.Value{Kind: plugins.KindFloat, Float: 18446744073709551616}, ""},
		{"float64 integral", 50.0, plugins.Value{Kind: plugins.KindInt, Int: 50}, ""},
		{"float64 fraction", 0.25, plugins.Value{Kind: plugins.KindFloat, Float: 0.25}, ""},
		{"float64 NaN", math.NaN(), plugins.Value{}, "not finite"},
		{"float64 Inf", math.Inf(1), plugins.Value{}, "not finite"},
		{"int", 3, plugins.Value{Kind: plugins.KindInt, Int: 3}, ""},
		{"uint64 max", uint64(math.MaxUint64), plugins.Value{Kind: plugins.KindUint, Uint: math.MaxUint64}, ""},
		{"bool", true, plugins.Value{Kind: plugins.KindBool, Bool: true}, ""},
		{"string", "auto", plugins.Value{Kind: plugins.KindString, String: "auto"}, ""},
		{"null", nil, plugins.Value{}, "got null"},
		{"object", map[string]any{"a": 1}, plugins.Value{}, "got an object"},
		{"array", []any{1}, plugins.Value{}, "got an array"},
		{"other", struct{}{}, plugins.Value{}, "got struct {}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := valueFromJSON(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("valueFromJSON(%#v) err = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("valueFromJSON(%#v) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		v    plugins.Value
		want any
		ok   bool
	}{
		{plugins.Value{Kind: plugins.KindBool, Bool: true}, true, true},
		{plugins.Value{Kind: plugins.KindBool, Bool: false}, true, false},
		{plugins.Value{Kind: plugins.KindInt, Int: 1}, 1.0, true},
		{plugins.Value{Kind: plugins.KindFloat, Float: 1}, 1, true},
		{plugins.Value{Kind: plugins.KindInt, Int: 1}, true, false},
		{plugins.Value{Kind: plugins.KindString, String: "run"}, "run", true},
		{plugins.Value{}, true, false},
	}
	for _, tt := range tests {
		if got := matches(tt.v, tt.want); got != tt.ok {
			t.Errorf("matches(%+v, %#v) = %v, want %v", tt.v, tt.want, got, tt.ok)
		}
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, http.StatusOK},
		{plugins.Errorf(plugins.CodeTimeout, "x"), http.StatusGatewayTimeout},
		{fmt.Errorf("plugin modbus: %w", plugins.Errorf(plugins.CodeGatewayTarget, "x")), http.StatusGatewayTimeout},
		{plugins.Errorf(plugins.CodeUnavailable, "x"), http.StatusServiceUnavailable},
		{plugins.Errorf(plugins.CodeBusy, "x"), http.StatusServiceUnavailable},
		{plugins.Errorf(plugins.CodeGatewayPath, "x"), http.StatusServiceUnavailable},
		{fmt.Errorf("x: %w", bus.ErrBackoff), http.StatusServiceUnavailable},
		{plugins.Errorf(plugins.CodeInUse, "x"), http.StatusConflict},
		{plugins.Errorf(plugins.CodeNotFound, "x"), http.StatusNotFound},
		{plugins.Errorf(plugins.CodeUnsupported, "x"), http.StatusNotFound},
		{plugins.Errorf(plugins.CodeInvalid, "x"), http.StatusBadRequest},
		{plugins.Errorf(plugins.CodeDeviceError, "x"), http.StatusInternalServerError},
		{context.DeadlineExceeded, http.StatusGatewayTimeout},
		{context.Canceled, http.StatusServiceUnavailable},
		{errors.New("x"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		if got := statusOf(tt.err); got != tt.want {
			t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestAddRejectsBadSpecs(t *testing.T) {
	ok := DeviceSpec{ID: "pump-1", Bus: "rs485", Points: []PointSpec{{Name: "t"}}}
	tests := []struct {
		name    string
		edit    func(*DeviceSpec)
		plugin  string
		wantErr string
	}{
		{"empty id", func(s *DeviceSpec) { s.ID = "" }, "fake", "id is empty"},
		{"empty bus", func(s *DeviceSpec) { s.Bus = "" }, "fake", "bus is empty"},
		{"empty point name", func(s *DeviceSpec) { s.Points = append(s.Points, PointSpec{}) }, "fake", "name is empty"},
		{"duplicate point", func(s *DeviceSpec) { s.Points = append(s.Points, PointSpec{Name: "t"}) }, "fake", `duplicate name "t"`},
		{"negative poll", func(s *DeviceSpec) { s.Points[0].Poll = -time.Second }, "fake", "poll -1s"},
		{"tiny poll", func(s *DeviceSpec) { s.Points[0].Poll = time.Millisecond }, "fake", "at least 10ms"},
		{"tiny default poll", func(s *DeviceSpec) { s.DefaultPoll = time.Nanosecond }, "fake", "default poll"},
		{"NaN deadband", func(s *DeviceSpec) { s.Points[0].Deadband = math.NaN() }, "fake", "deadband"},
		{"negative deadband", func(s *DeviceSpec) { s.Points[0].Deadband = -1 }, "fake", "deadband"},
		{"in-use unknown point", func(s *DeviceSpec) { s.InUse = &InUseRule{Point: "running", Equals: true} }, "fake", `point "running"`},
		{"in-use object value", func(s *DeviceSpec) { s.InUse = &InUseRule{Point: "t", Equals: map[string]any{}} }, "fake", "equals"},
		{"method on an unknown point", func(s *DeviceSpec) {
			s.Methods = map[string]MethodSpec{"zero": {Points: map[string]any{"x": 0}}}
		}, "fake", `methods: zero: point "x" is not a point of the device`},
		{"method on a read-only point", func(s *DeviceSpec) {
			s.Methods = map[string]MethodSpec{"zero": {Points: map[string]any{"t": 0}}}
		}, "fake", `methods: zero: point "t" is not writable`},
		{"method with an object value", func(s *DeviceSpec) {
			s.Points[0].Writable = true
			s.Methods = map[string]MethodSpec{"zero": {Points: map[string]any{"t": []any{1}}}}
		}, "fake", `methods: zero: point "t": want a number, bool or string, got an array`},
		{"method writing nothing", func(s *DeviceSpec) { s.Methods = map[string]MethodSpec{"noop": {}} }, "fake", "noop writes no points"},
		{"method named like a built-in", func(s *DeviceSpec) {
			s.Points[0].Writable = true
			s.Methods = map[string]MethodSpec{"reboot": {Points: map[string]any{"t": 1}}}
		}, "fake", "reboot is a built-in method"},
		{"unknown plugin", func(*DeviceSpec) {}, "nope", `no plugin "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			spec := ok
			spec.Points = append([]PointSpec(nil), ok.Points...)
			tt.edit(&spec)
			err := h.b.Add(context.Background(), spec, tt.plugin)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Add(%+v) err = %v, want %q", spec, err, tt.wantErr)
			}
		})
	}
	t.Run("duplicate device", func(t *testing.T) {
		h := newHarness(t, nil)
		h.add(ok)
		if err := h.b.Add(context.Background(), ok, "fake"); err == nil || !strings.Contains(err.Error(), "already added") {
			t.Fatalf("second Add err = %v", err)
		}
	})
}
