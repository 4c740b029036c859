package bridges

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/plugintest"
)

// TestWithPluginTestFake drives the bridge through plugintest.Fake served
// over real gRPC, so plugin error codes cross the process boundary as they
// do in production.
func TestWithPluginTestFake(t *testing.T) {
	ctx := context.Background()
	fake := plugintest.NewFake()
	p := plugintest.Connect(t, fake)
	if err := p.OpenBus(ctx, plugins.BusConfig{Name: "rs485", Config: json.RawMessage(`{"mode": "rtu"}`)}); err != nil {
		t.Fatalf("OpenBus: %v", err)
	}
	profile := `{"points": {"temperature": 21.5, "running": true, "setpoint": 20.5}, "in_use": "running", "model": "fake-pump"}`
	if err := p.Attach(ctx, plugins.DeviceConfig{ID: "pump-1", Bus: "rs485", Address: 3, Profile: json.RawMessage(profile)}); err != nil {
		t.Fatalf("Attach: %v", err)
	}

	h := newHarness(t, func(o *Options) { o.Plugins = PluginMap(map[string]plugins.Plugin{"fake": p}) })
	if err := h.b.Add(ctx, DeviceSpec{ID: "pump-1", Bus: "rs485", DefaultPoll: time.Second, Points: []PointSpec{
		{Name: "temperature"}, {Name: "running"}, {Name: "setpoint", Writable: true},
	}, InUse: &InUseRule{Point: "running", Equals: true}}, "fake"); err != nil {
		t.Fatalf("Add: %v", err)
	}
	h.run()
	h.awaitCycle("pump-1", start)

	evs := h.sink.Await(t, waitLimit, "device identity", func(evs []event) bool { return len(sections(evs, "pump-1", "device")) == 1 })
	if d := sections(evs, "pump-1", "device")[0]; d["model"] != "fake-pump" || d["firmwareVersion"] != "1.0.0" {
		t.Fatalf("reported.device = %v", d)
	}
	tests := []struct {
		name, method, payload string
		want                  int
		wantErr               string
	}{
		{"read", "read", `{"points": ["temperature"]}`, 200, ""},
		{"in use: the bridge refuses", "reboot", ``, 409, "device in use: running == true; pass force"},
		{"forced", "reboot", `{"force": true}`, 200, ""},
		{"plugin refuses a type mismatch", "write", `{"setpoint": "hot"}`, 500, "some points were not written"},
		{"plugin fault: timeout crosses gRPC as 504", "identify", "$fault:identify:error=timeout", 504, "scripted identify fault"},
		{"plugin fault: unsupported crosses gRPC as 404", "identify", "$fault:identify:error=unsupported", 404, "scripted identify fault"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := tt.payload
			if f, ok := strings.CutPrefix(payload, "$fault:"); ok {
				fake.Arm(splitFault(t, f))
				payload = ""
			}
			st, body := h.invoke("pump-1", tt.method, payload)
			if st != tt.want || (tt.wantErr != "" && !contains(body["error"], tt.wantErr)) {
				t.Fatalf("%s %s = %d %v; want %d %q", tt.method, tt.payload, st, body, tt.want, tt.wantErr)
			}
		})
	}

	// The forced reboot is watched: the first probe finds the device back.
	h.clk.Advance(time.Second)
	h.sink.Await(t, waitLimit, "reboot done", func(evs []event) bool {
		s := sections(evs, "pump-1", "reboot")
		return len(s) == 2 && s[1]["status"] == ManageDone
	})
	if err := h.b.Desired("pump-1", map[string]any{"setpoint": json.Number("22.5")}, 1); err != nil {
		t.Fatal(err)
	}
	h.sink.Await(t, waitLimit, "config applied", func(evs []event) bool {
		s := sections(evs, "pump-1", "config")
		return len(s) > 0 && s[len(s)-1]["status"] == ConfigApplied
	})
	// An int where the point holds a float: the plugin's type check decides.
	if err := h.b.Desired("pump-1", map[string]any{"setpoint": json.Number("23")}, 2); err != nil {
		t.Fatal(err)
	}
	evs = h.sink.Await(t, waitLimit, "config rejected by the plugin", func(evs []event) bool {
		s := sections(evs, "pump-1", "config")
		return len(s) > 0 && s[len(s)-1]["status"] == ConfigRejected
	})
	s := sections(evs, "pump-1", "config")
	if errs, _ := s[len(s)-1]["errors"].(map[string]any); errs["setpoint"] != "type mismatch" {
		t.Fatalf("config = %v", s[len(s)-1])
	}
}

func splitFault(t *testing.T, s string) (string, plugintest.Fault) {
	t.Helper()
	op, f, err := plugintest.ParseFault(s)
	if err != nil {
		t.Fatalf("ParseFault(%q): %v", s, err)
	}
	return op, f
}
