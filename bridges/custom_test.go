package bridges

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/drover-iot/drover/plugins"
)

// customSpec is methodSpec with a writable counter_reset point and two
// custom methods.
func customSpec() DeviceSpec {
	s := methodSpec()
	s.Points = append(s.Points, PointSpec{Name: "counter_reset", Writable: true}, PointSpec{Name: "mode", Writable: true})
	s.Methods = map[string]MethodSpec{
		"resetCounters": {Points: map[string]any{"counter_reset": true}},
		"eco":           {Points: map[string]any{"setpoint": 18.5, "mode": int64(2)}, Disruptive: true},
	}
	return s
}

func customHarness(t *testing.T, running bool) *harness {
	t.Helper()
	h := newHarness(t, nil)
	h.add(customSpec())
	for p, v := range map[string]any{"temperature": 18.5, "setpoint": 20.5, "running": running, "counter_reset": false, "mode": int64(1)} {
		h.plug.set("pump-1", p, v)
	}
	h.run()
	h.awaitCycle("pump-1", start)
	return h
}

// TestCustomMethods runs custom methods: their writes, the in-use rule of
// a disruptive one, and their answers.
func TestCustomMethods(t *testing.T) {
	tests := []struct {
		name       string
		running    bool
		method     string
		payload    string
		refuse     map[string]string // the device refuses these points
		want       int
		wantBody   string // fmt of the body; "" to skip
		wantErr    string
		wantWrite  string // fmt of the plugin write; "" for none
		wantInUseQ bool   // the in-use point was read first
	}{
		{"not disruptive: no in-use check", true, "resetCounters", "", nil, 200,
			"map[results:map[counter_reset:map[ok:true readBack:true]]]", "", "[{counter_reset {1 true 0 0 0 }}]", false},
		{"disruptive, idle", false, "eco", "", nil, 200,
			"map[results:map[mode:map[ok:true readBack:2] setpoint:map[ok:true readBack:18.5]]]", "",
			"[{mode {2 false 2 0 0 }} {setpoint {4 false 0 0 18.5 }}]", true},
		{"disruptive, in use", true, "eco", "", nil, 409, "", "device in use: running == true; pass force", "", true},
		{"disruptive, in use, forced", true, "eco", `{"force": true}`, nil, 200, "", "",
			"[{mode {2 false 2 0 0 }} {setpoint {4 false 0 0 18.5 }}]", false},
		{"device refuses a point", false, "eco", "", map[string]string{"mode": "illegal data value"}, 500,
			"", "eco: some points were not written", "[{mode {2 false 2 0 0 }} {setpoint {4 false 0 0 18.5 }}]", true},
		{"bad payload", false, "resetCounters", `{"forse": true}`, nil, 400, "", `bad payload for resetCounters: json: unknown field "forse"`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := customHarness(t, tt.running)
			h.plug.with("pump-1", func(d *fakeDev) {
				for k, v := range tt.refuse {
					d.writeErr[k] = v
				}
			})
			before := len(ops(h.plug.log.All(), "read", "pump-1"))
			st, body := h.invoke("pump-1", tt.method, tt.payload)
			if st != tt.want || (tt.wantBody != "" && fmt.Sprint(body) != tt.wantBody) || (tt.wantErr != "" && !contains(body["error"], tt.wantErr)) {
				t.Fatalf("%s %s = %d %v; want %d %s %q", tt.method, tt.payload, st, body, tt.want, tt.wantBody, tt.wantErr)
			}
			writes := ops(h.plug.log.All(), "write", "pump-1")
			got := ""
			if len(writes) > 0 {
				got = fmt.Sprint(writes[0].Writes)
			}
			if len(writes) > 1 || got != tt.wantWrite {
				t.Fatalf("plugin writes = %v, want %s", writes, tt.wantWrite)
			}
			reads := ops(h.plug.log.All(), "read", "pump-1")[before:]
			inUseRead := len(reads) > 0 && len(reads[0].Points) == 1 && reads[0].Points[0] == "running"
			if inUseRead != tt.wantInUseQ {
				t.Fatalf("in-use read = %v (reads %v), want %v", inUseRead, reads, tt.wantInUseQ)
			}
		})
	}
}

func TestUnknownMethodListsCustomMethods(t *testing.T) {
	h := customHarness(t, false)
	st, body := h.invoke("pump-1", "dance", "")
	want := `unknown method "dance": device pump-1 has read, write, identify, reboot, factoryReset, eco, resetCounters`
	if st != 404 || body["error"] != want {
		t.Fatalf("got %d %v, want 404 %q", st, body, want)
	}
}

// TestCheck checks that Check answers like Invoke for bad calls, accepts
// good ones, and never reaches the plugin.
func TestCheck(t *testing.T) {
	h := customHarness(t, true)
	h.b.PluginState("fake", false) // Check does not care: whoever runs it waits
	tests := []struct {
		device, method, payload string
		want                    int
		wantErr                 string
	}{
		{"pump-1", "write", `{"setpoint": 21.5}`, 0, ""},
		{"pump-1", "read", `{"points": ["temperature"]}`, 0, ""},
		{"pump-1", "identify", ``, 0, ""},
		{"pump-1", "reboot", `{"force": true}`, 0, ""},
		{"pump-1", "factoryReset", ``, 0, ""},
		{"pump-1", "eco", ``, 0, ""},
		{"pump-1", "resetCounters", `{"force": false}`, 0, ""},
		{"nope", "write", `{"setpoint": 1}`, 404, `unknown device "nope"`},
		{"pump-1", "dance", ``, 404, `unknown method "dance"`},
		{"pump-1", "write", `{"nope": 1}`, 404, `unknown point "nope"`},
		{"pump-1", "write", `{"temperature": 1}`, 400, "not writable"},
		{"pump-1", "write", `{}`, 400, "no points"},
		{"pump-1", "read", `{"points": ["nope"]}`, 404, `unknown point "nope"`},
		{"pump-1", "identify", `{"x": 1}`, 400, "bad payload for identify"},
		{"pump-1", "reboot", `{"force": 1}`, 400, "bad payload for reboot"},
		{"pump-1", "eco", `[1]`, 400, "bad payload for eco"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.payload, func(t *testing.T) {
			st, body := h.b.Check(tt.device, tt.method, json.RawMessage(tt.payload))
			m, _ := body.(map[string]any)
			msg, _ := m["error"].(string)
			if st != tt.want || !strings.Contains(msg, tt.wantErr) {
				t.Fatalf("Check(%s, %s, %q) = %d %v; want %d %q", tt.device, tt.method, tt.payload, st, body, tt.want, tt.wantErr)
			}
		})
	}
	if w := ops(h.plug.log.All(), "write", ""); len(w) != 0 {
		t.Fatalf("Check reached the plugin: %v", w)
	}
	t.Run("unsupported capability", func(t *testing.T) {
		h := newHarness(t, nil)
		spec := customSpec()
		spec.ID, spec.Capabilities = "ro-1", []plugins.Capability{plugins.CapRead}
		h.add(spec)
		st, body := h.b.Check("ro-1", "resetCounters", nil)
		if st != 404 || !contains(body.(map[string]any)["error"], "does not support write") {
			t.Fatalf("Check on a read-only plugin = %d %v", st, body)
		}
	})
}
