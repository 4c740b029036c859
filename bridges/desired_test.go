package bridges

import (
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

func configSpec() DeviceSpec {
	return DeviceSpec{ID: "pump-1", Bus: "rs485", DefaultPoll: time.Minute, Points: []PointSpec{
		{Name: "setpoint", Writable: true}, {Name: "mode", Writable: true}, {Name: "temperature"},
	}}
}

// configHarness runs one device with setpoint, mode and temperature.
func configHarness(t *testing.T) *harness {
	h := newHarness(t, nil)
	h.add(configSpec())
	h.plug.set("pump-1", "setpoint", 20.5)
	h.plug.set("pump-1", "mode", "auto")
	h.plug.set("pump-1", "temperature", 18.25)
	h.run()
	h.awaitCycle("pump-1", start)
	return h
}

// awaitConfig waits for a reported.config with status and version and
// returns every config section reported so far.
func awaitConfig(t *testing.T, h *harness, status string, version int64) []map[string]any {
	t.Helper()
	var out []map[string]any
	h.sink.Await(t, waitLimit, fmt.Sprintf("config %s v%d", status, version), func(evs []event) bool {
		out = sections(evs, "pump-1", "config")
		return len(out) > 0 && out[len(out)-1]["status"] == status && out[len(out)-1]["version"] == version
	})
	return out
}

func TestDesiredConfig(t *testing.T) {
	tests := []struct {
		name       string
		config     map[string]any
		refuse     map[string]string // plugin refuses these points
		wantStatus string
		wantErrors map[string]any
		wantWrites string // what the plugin was asked to write; "" none
	}{
		{"float applied", map[string]any{"setpoint": json.Number("22.5")}, nil,
			ConfigApplied, nil, "[{setpoint {4 false 0 0 22.5 }}]"},
		{"integer text is an Int", map[string]any{"setpoint": json.Number("22")}, nil,
			ConfigApplied, nil, "[{setpoint {2 false 22 0 0 }}]"},
		{"integral float64 is an Int", map[string]any{"setpoint": 22.0}, nil,
			ConfigApplied, nil, "[{setpoint {2 false 22 0 0 }}]"},
		{"several points in one write", map[string]any{"setpoint": 21.5, "mode": "manual", "gone": nil}, nil,
			ConfigApplied, nil, "[{mode {5 false 0 0 0 manual}} {setpoint {4 false 0 0 21.5 }}]"},
		{"empty config", map[string]any{}, nil, ConfigApplied, nil, ""},
		{"unknown point rejects all", map[string]any{"setpoint": 21.5, "bogus": 1}, nil,
			ConfigRejected, map[string]any{"bogus": `unknown point "bogus"`}, ""},
		{"read-only point", map[string]any{"temperature": 1}, nil,
			ConfigRejected, map[string]any{"temperature": `point "temperature" is not writable`}, ""},
		{"bad value type", map[string]any{"setpoint": map[string]any{"v": 1}, "mode": []any{"x"}}, nil,
			ConfigRejected, map[string]any{
				"setpoint": `point "setpoint": want a number, bool or string, got an object`,
				"mode":     `point "mode": want a number, bool or string, got an array`}, ""},
		{"plugin refuses one point", map[string]any{"setpoint": 99.5, "mode": "turbo"}, map[string]string{"mode": "value out of range"},
			ConfigRejected, map[string]any{"mode": "value out of range"}, "[{mode {5 false 0 0 0 turbo}} {setpoint {4 false 0 0 99.5 }}]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := configHarness(t)
			h.plug.with("pump-1", func(d *fakeDev) { maps.Copy(d.writeErr, tt.refuse) })
			if err := h.b.Desired("pump-1", tt.config, 3); err != nil {
				t.Fatalf("Desired: %v", err)
			}
			secs := awaitConfig(t, h, tt.wantStatus, 3)
			last := secs[len(secs)-1]
			gotErrs, _ := last["errors"].(map[string]any)
			if !maps.Equal(gotErrs, tt.wantErrors) {
				t.Fatalf("config %v: errors = %v, want %v", tt.config, gotErrs, tt.wantErrors)
			}
			if tt.wantWrites != "" && (len(secs) != 2 || secs[0]["status"] != ConfigPending) {
				t.Fatalf("config sections = %v, want pending then %s", secs, tt.wantStatus)
			}
			writes := ops(h.plug.log.All(), "write", "pump-1")
			got := ""
			if len(writes) > 0 {
				got = fmt.Sprint(writes[0].Writes)
			}
			if len(writes) > 1 || got != tt.wantWrites {
				t.Fatalf("writes = %v, want %s", writes, tt.wantWrites)
			}
		})
	}
}

func TestDesiredConfigRefreshesWrittenPoints(t *testing.T) {
	h := configHarness(t)
	if err := h.b.Desired("pump-1", map[string]any{"setpoint": 23.5}, 1); err != nil {
		t.Fatal(err)
	}
	h.sink.Await(t, waitLimit, "new setpoint in reported.points", func(evs []event) bool {
		for _, p := range sections(evs, "pump-1", "points") {
			if p["setpoint"] == 23.5 {
				return true
			}
		}
		return false
	})
}

func TestDesiredConfigSameVersionIsNoOp(t *testing.T) {
	h := configHarness(t)
	cfg := map[string]any{"setpoint": 21.5}
	if err := h.b.Desired("pump-1", cfg, 4); err != nil {
		t.Fatal(err)
	}
	awaitConfig(t, h, ConfigApplied, 4)
	n := len(h.sink.All())
	for _, v := range []int64{4, 3} { // same again (reconnect), then stale
		if err := h.b.Desired("pump-1", map[string]any{"setpoint": 30.5}, v); err != nil {
			t.Fatal(err)
		}
	}
	// A later version is the event that proves the earlier calls were seen.
	if err := h.b.Desired("pump-1", map[string]any{"bogus": 1}, 5); err != nil {
		t.Fatal(err)
	}
	awaitConfig(t, h, ConfigRejected, 5)
	// (The re-read of the written point may publish meanwhile; only config
	// sections matter here.)
	if cfg := sections(h.sink.All()[n:], "pump-1", "config"); len(cfg) != 1 {
		t.Fatalf("config after repeats: %v, want only the v5 rejection", cfg)
	}
	if w := ops(h.plug.log.All(), "write", ""); len(w) != 1 {
		t.Fatalf("writes = %v, want the v4 one only", w)
	}
}

func TestDesiredConfigNewerVersionSupersedes(t *testing.T) {
	h := newHarness(t, nil)
	h.plug.gate = make(chan struct{})
	h.add(configSpec())
	h.plug.set("pump-1", "setpoint", 20.5)
	h.run()
	if err := h.b.Desired("pump-1", map[string]any{"setpoint": 21.5}, 1); err != nil {
		t.Fatal(err)
	}
	h.plug.entered.Await(t, waitLimit, "v1 write on the bus", func(s []string) bool { return len(s) == 1 })
	if err := h.b.Desired("pump-1", map[string]any{"setpoint": 22.5}, 2); err != nil {
		t.Fatal(err)
	}
	h.plug.gate <- struct{}{} // v1 completes
	h.plug.gate <- struct{}{} // v2
	secs := awaitConfig(t, h, ConfigApplied, 2)
	for _, s := range secs {
		if s["version"] == int64(1) && s["status"] != ConfigPending {
			t.Fatalf("superseded v1 reported %v", s)
		}
	}
	writes := ops(h.plug.log.All(), "write", "")
	if len(writes) != 2 || writes[1].Writes[0].Value.Float != 22.5 {
		t.Fatalf("writes = %v, want v1 then v2", writes)
	}
}

func TestDesiredConfigRetriesTransientFailures(t *testing.T) {
	h := configHarness(t) // DesiredRetry 10s
	h.plug.with("pump-1", func(d *fakeDev) { d.failNext["write"] = plugins.Errorf(plugins.CodeBusy, "bus busy") })
	if err := h.b.Desired("pump-1", map[string]any{"setpoint": 24.5}, 7); err != nil {
		t.Fatal(err)
	}
	h.sink.Await(t, waitLimit, "pending with the error", func(evs []event) bool {
		s := sections(evs, "pump-1", "config")
		return len(s) == 2 && s[1]["status"] == ConfigPending && s[1]["errors"] != nil
	})
	h.clk.Advance(10 * time.Second)
	secs := awaitConfig(t, h, ConfigApplied, int64(7))
	if last := secs[len(secs)-1]; last["errors"] != nil {
		t.Fatalf("applied with errors: %v", last)
	}
}

func TestDesiredUnknownDevice(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.b.Desired("nope", map[string]any{}, 1); err == nil {
		t.Fatal("Desired on an unknown device: no error")
	}
}
