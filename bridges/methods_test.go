package bridges

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

func methodSpec() DeviceSpec {
	return DeviceSpec{ID: "pump-1", Bus: "rs485", DefaultPoll: time.Second, Points: []PointSpec{
		{Name: "temperature"}, {Name: "setpoint", Writable: true}, {Name: "running"},
	}, InUse: &InUseRule{Point: "running", Equals: true}}
}

func methodHarness(t *testing.T, running bool) *harness {
	return methodHarnessWith(t, running, nil)
}

func methodHarnessWith(t *testing.T, running bool, tweak func(*Options)) *harness {
	h := newHarness(t, tweak)
	h.add(methodSpec())
	h.plug.set("pump-1", "temperature", 18.5)
	h.plug.set("pump-1", "setpoint", 20.5)
	h.plug.set("pump-1", "running", running)
	h.run()
	h.awaitCycle("pump-1", start)
	return h
}

func TestInvokeRejectsGarbage(t *testing.T) {
	tests := []struct {
		name, device, method, payload string
		want                          int
		wantErr                       string
	}{
		{"unknown device", "nope", "read", "", 404, `unknown device "nope"`},
		{"unknown method", "pump-1", "dance", "", 404, `unknown method "dance"`},
		{"method names are case-sensitive", "pump-1", "Reboot", "", 404, "unknown method"},
		{"read: not JSON", "pump-1", "read", "points please", 400, "bad payload for read"},
		{"read: truncated JSON", "pump-1", "read", `{"points": [`, 400, "bad payload for read"},
		{"read: trailing data", "pump-1", "read", `{"points": []} {}`, 400, "trailing data"},
		{"read: points not an array", "pump-1", "read", `{"points": "temperature"}`, 400, "bad payload for read"},
		{"read: point not a string", "pump-1", "read", `{"points": [1]}`, 400, "bad payload for read"},
		{"read: unknown field", "pump-1", "read", `{"pointz": ["temperature"]}`, 400, `unknown field "pointz"`},
		{"read: payload an array", "pump-1", "read", `["temperature"]`, 400, "bad payload for read"},
		{"read: unknown point", "pump-1", "read", `{"points": ["temperature", "nope"]}`, 404, `unknown point "nope"`},
		{"write: not JSON", "pump-1", "write", `setpoint=3`, 400, "bad payload for write"},
		{"write: an array", "pump-1", "write", `[1, 2]`, 400, "bad payload for write"},
		{"write: a number", "pump-1", "write", `5`, 400, "bad payload for write"},
		{"write: nothing", "pump-1", "write", ``, 400, "no points"},
		{"write: empty object", "pump-1", "write", `{}`, 400, "no points"},
		{"write: unknown point", "pump-1", "write", `{"nope": 1}`, 404, `unknown point "nope"`},
		{"write: read-only point", "pump-1", "write", `{"temperature": 1}`, 400, `point "temperature" is not writable`},
		{"write: object value", "pump-1", "write", `{"setpoint": {"v": 1}}`, 400, `point "setpoint": want a number, bool or string, got an object`},
		{"write: null value", "pump-1", "write", `{"setpoint": null}`, 400, "got null"},
		{"write: huge number", "pump-1", "write", `{"setpoint": 1e999}`, 400, "out of range"},
		{"identify: unexpected field", "pump-1", "identify", `{"x": 1}`, 400, "bad payload for identify"},
		{"reboot: force not a bool", "pump-1", "reboot", `{"force": "yes"}`, 400, "bad payload for reboot"},
		{"reboot: unknown field", "pump-1", "reboot", `{"forse": true}`, 400, `unknown field "forse"`},
		{"reboot: an array", "pump-1", "reboot", `[true]`, 400, "bad payload for reboot"},
		{"factoryReset: not JSON", "pump-1", "factoryReset", `\x00\x01`, 400, "bad payload for factoryReset"},
	}
	h := methodHarness(t, false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body := h.invoke(tt.device, tt.method, tt.payload)
			msg, _ := body["error"].(string)
			if st != tt.want || !strings.Contains(msg, tt.wantErr) {
				t.Fatalf("Invoke(%s, %s, %q) = %d %v; want %d with %q", tt.device, tt.method, tt.payload, st, body, tt.want, tt.wantErr)
			}
		})
	}
	// Nothing above reached the plugin beyond the poller's own calls.
	for _, x := range h.plug.log.All() {
		if x.Op != "read" && x.Op != "identify" {
			t.Errorf("garbage reached the plugin: %v", x)
		}
	}
}

func TestInvokeReadWriteIdentify(t *testing.T) {
	h := methodHarness(t, false)
	tests := []struct {
		name, method, payload string
		want                  int
		wantBody              string
	}{
		{"read some", "read", `{"points": ["temperature", "temperature"]}`, 200, `map[values:map[temperature:18.5]]`},
		{"read all", "read", ``, 200, `map[values:map[running:false setpoint:20.5 temperature:18.5]]`},
		{"read null payload", "read", `null`, 200, `map[values:map[running:false setpoint:20.5 temperature:18.5]]`},
		{"write", "write", `{"setpoint": 21.5}`, 200, `map[results:map[setpoint:map[ok:true readBack:21.5]]]`},
		{"identify", "identify", ``, 200, `map[firmwareVersion:1.0.0 manufacturer:Acme model:pump serial:SN-pump-1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body := h.invoke("pump-1", tt.method, tt.payload)
			if st != tt.want || fmt.Sprint(body) != tt.wantBody {
				t.Fatalf("Invoke(%s, %q) = %d %v; want %d %s", tt.method, tt.payload, st, body, tt.want, tt.wantBody)
			}
		})
	}
	t.Run("write refused by the device", func(t *testing.T) {
		h.plug.with("pump-1", func(d *fakeDev) { d.writeErr["setpoint"] = "illegal data value" })
		st, body := h.invoke("pump-1", "write", `{"setpoint": 99.5}`)
		if st != 500 || fmt.Sprint(body["results"]) != "map[setpoint:map[error:illegal data value ok:false]]" {
			t.Fatalf("got %d %v", st, body)
		}
	})
	t.Run("device errors map to statuses", func(t *testing.T) {
		for _, c := range []struct {
			code plugins.Code
			want int
		}{{plugins.CodeTimeout, 504}, {plugins.CodeUnavailable, 503}, {plugins.CodeDeviceError, 500}, {plugins.CodeUnsupported, 404}} {
			h.plug.with("pump-1", func(d *fakeDev) { d.failNext["identify"] = plugins.Errorf(c.code, "scripted") })
			if st, body := h.invoke("pump-1", "identify", ""); st != c.want || !contains(body["error"], "scripted") {
				t.Errorf("identify with %v: %d %v, want %d", c.code, st, body, c.want)
			}
		}
	})
	t.Run("read of a dead device", func(t *testing.T) {
		h.plug.with("pump-1", func(d *fakeDev) { d.failNext["read"] = plugins.Errorf(plugins.CodeTimeout, "no answer") })
		if st, body := h.invoke("pump-1", "read", `{"points": ["temperature"]}`); st != 504 {
			t.Fatalf("got %d %v, want 504", st, body)
		}
	})
}

func TestRebootInUseRule(t *testing.T) {
	tests := []struct {
		name       string
		running    bool
		pluginSays bool // the plugin's own in-use check (the bridge's is forced past)
		method     string
		payload    string
		want       int
		wantErr    string
		wantCall   bool // the plugin's reboot/reset was called
		wantForce  bool
	}{
		{"idle: reboot", false, false, "reboot", "", 200, "", true, false},
		{"in use: refused", true, false, "reboot", "", 409, "device in use: running == true; pass force", false, false},
		{"in use: force false is refused", true, false, "reboot", `{"force": false}`, 409, "pass force", false, false},
		{"in use: forced", true, false, "reboot", `{"force": true}`, 200, "", true, true},
		{"in use: factory reset refused", true, false, "factoryReset", "", 409, "device in use: running == true", false, false},
		{"idle per bridge, plugin says in use", false, true, "reboot", "", 409, "device in use", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := methodHarness(t, tt.running)
			if tt.pluginSays {
				h.plug.with("pump-1", func(d *fakeDev) { d.failNext["reboot"] = plugins.Errorf(plugins.CodeInUse, "running is true") })
			}
			st, body := h.invoke("pump-1", tt.method, tt.payload)
			if st != tt.want || (tt.wantErr != "" && !contains(body["error"], tt.wantErr)) {
				t.Fatalf("%s %s = %d %v; want %d %q", tt.method, tt.payload, st, body, tt.want, tt.wantErr)
			}
			op := map[string]string{"reboot": "reboot", "factoryReset": "factory_reset"}[tt.method]
			calls := ops(h.plug.log.All(), op, "pump-1")
			if (len(calls) == 1) != tt.wantCall || (tt.wantCall && calls[0].Force != tt.wantForce) {
				t.Fatalf("plugin calls = %v, want call %v force %v", calls, tt.wantCall, tt.wantForce)
			}
			if st == 409 {
				if s := sections(h.sink.All(), "pump-1", "reboot"); len(s) != 0 {
					t.Fatalf("refusal reported %v", s)
				}
			}
		})
	}
}

func TestRebootStatusSequence(t *testing.T) {
	// Threshold 3: two silent probes do not open the breaker.
	h := methodHarnessWith(t, false, func(o *Options) { o.Breaker.Threshold = 3 })
	h.plug.with("pump-1", func(d *fakeDev) { d.afterRbt, d.fwAfter = 2, "1.1.0" })
	h.sink.Await(t, waitLimit, "identity at start", func(evs []event) bool { return len(sections(evs, "pump-1", "device")) == 1 })
	readsBefore := len(ops(h.plug.log.All(), "read", ""))

	st, body := h.invoke("pump-1", "reboot", `{}`)
	if st != 200 || body["status"] != ManageRebooting {
		t.Fatalf("reboot = %d %v", st, body)
	}
	if st, body := h.invoke("pump-1", "factoryReset", `{"force": true}`); st != 409 || !contains(body["error"], "already in progress") {
		t.Fatalf("second management command = %d %v, want 409", st, body)
	}
	// Silent twice, then it answers with its new firmware.
	for i := 1; i <= 3; i++ {
		// Advance only once the bridge waits for its next probe: advancing
		// earlier would move the probe a second further out.
		awaitTimer(t, h.clk, h.clk.Now().Add(time.Second))
		h.clk.Advance(time.Second)
		h.plug.log.Await(t, waitLimit, fmt.Sprintf("probe %d", i), func(l []txn) bool { return len(ops(l, "identify", "")) == 1+i })
	}
	evs := h.sink.Await(t, waitLimit, "reboot done", func(evs []event) bool {
		s := sections(evs, "pump-1", "reboot")
		return len(s) == 2 && s[1]["status"] == ManageDone
	})
	reboot := sections(evs, "pump-1", "reboot")
	if reboot[0]["status"] != ManageRebooting || reboot[0]["lastReboot"] != start.Format(time.RFC3339) {
		t.Fatalf("first reboot section = %v", reboot[0])
	}
	dev := sections(evs, "pump-1", "device")
	if len(dev) != 2 || dev[1]["firmwareVersion"] != "1.1.0" {
		t.Fatalf("device sections = %v, want the new firmware after the reboot", dev)
	}
	probes := ops(h.plug.log.All(), "identify", "")
	if probes[1].Err == nil || probes[2].Err == nil || probes[3].Err != nil {
		t.Fatalf("probes = %v, want two timeouts then an answer", probes)
	}
	// Polling paused while waiting: up to the answering probe (the 4th
	// identify), the only reads are the polls before and the in-use check.
	reads, identifies := 0, 0
	for _, x := range h.plug.log.All() {
		if x.Op == "identify" {
			if identifies++; identifies == 4 {
				break
			}
		}
		if x.Op == "read" {
			reads++
		}
	}
	if reads != readsBefore+1 {
		t.Fatalf("%d reads before the device came back, want %d polls + the in-use check", reads, readsBefore)
	}
	h.plug.log.Await(t, waitLimit, "poll after reboot", func(l []txn) bool { return len(ops(l, "read", "")) > readsBefore+1 })
}

func TestFactoryResetFailsWhenDeviceStaysSilent(t *testing.T) {
	h := methodHarness(t, false) // RebootProbe 1s, RebootTimeout 5s
	h.plug.with("pump-1", func(d *fakeDev) { d.afterRbt = 1000 })
	if st, body := h.invoke("pump-1", "factoryReset", ""); st != 200 || body["status"] != ManageResetting {
		t.Fatalf("factoryReset = %d %v", st, body)
	}
	for range 6 {
		h.clk.Advance(time.Second)
	}
	evs := h.sink.Await(t, waitLimit, "reset failed", func(evs []event) bool {
		s := sections(evs, "pump-1", "factoryReset")
		return len(s) == 2 && s[1]["status"] == ManageFailed
	})
	s := sections(evs, "pump-1", "factoryReset")
	if s[0]["status"] != ManageResetting || s[0]["lastReset"] == nil || !contains(s[1]["error"], "did not answer within 5s after factoryReset") {
		t.Fatalf("factoryReset sections = %v", s)
	}
	// The device is silent to probes at most once per back-off (threshold 2,
	// back-off 4s): far fewer than one probe per second.
	if n := len(ops(h.plug.log.All(), "identify", "")); n > 1+3 {
		t.Fatalf("%d identify calls, want at most 4", n)
	}
}

func TestRebootPluginFailureIsReported(t *testing.T) {
	h := methodHarness(t, false)
	h.plug.with("pump-1", func(d *fakeDev) { d.failNext["reboot"] = plugins.Errorf(plugins.CodeTimeout, "no answer") })
	st, body := h.invoke("pump-1", "reboot", `{"force": true}`)
	if st != 504 {
		t.Fatalf("reboot = %d %v, want 504", st, body)
	}
	s := sections(h.sink.All(), "pump-1", "reboot")
	if len(s) != 1 || s[0]["status"] != ManageFailed || !contains(s[0]["error"], "no answer") {
		t.Fatalf("reboot sections = %v", s)
	}
	// And another attempt is allowed.
	if st, _ := h.invoke("pump-1", "reboot", `{"force": true}`); st != 200 {
		t.Fatalf("second reboot = %d", st)
	}
}

func TestMethodsOfUnsupportedCapabilities(t *testing.T) {
	h := newHarness(t, nil)
	spec := methodSpec()
	spec.Capabilities = []plugins.Capability{plugins.CapRead}
	h.add(spec)
	for _, m := range []string{"write", "identify", "reboot", "factoryReset"} {
		payload := ""
		if m == "write" {
			payload = `{"setpoint": 1}`
		}
		if st, body := h.invoke("pump-1", m, payload); st != 404 || !contains(body["error"], "does not support") {
			t.Errorf("%s = %d %v, want 404", m, st, body)
		}
	}
}
