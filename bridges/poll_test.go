package bridges

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func pumpSpec(id string) DeviceSpec {
	return DeviceSpec{ID: id, Bus: "rs485", Points: []PointSpec{{Name: "temperature", Poll: time.Second}}}
}

func TestPointsDueTogetherArriveInOneRead(t *testing.T) {
	h := newHarness(t, nil)
	h.add(DeviceSpec{ID: "pump-1", Bus: "rs485", Points: []PointSpec{
		{Name: "a", Poll: time.Second}, {Name: "b", Poll: time.Second},
		{Name: "c", Poll: 2 * time.Second}, {Name: "d"}, // default 3s
	}})
	for _, p := range []string{"a", "b", "c", "d"} {
		h.plug.set("pump-1", p, 1)
	}
	h.run()
	h.awaitCycle("pump-1", start)
	for range 6 {
		h.tick(time.Second, "pump-1")
	}
	var got []string
	for _, x := range ops(h.plug.log.All(), "read", "pump-1") {
		got = append(got, fmt.Sprint(x.Points))
	}
	want := []string{"[a b c d]", "[a b]", "[a b c]", "[a b d]", "[a b c]", "[a b]", "[a b c d]"}
	if !slices.Equal(got, want) {
		t.Fatalf("reads = %v, want %v", got, want)
	}
}

func TestPublishesOnChangeWithDeadband(t *testing.T) {
	h := newHarness(t, nil)
	h.add(DeviceSpec{ID: "pump-1", Bus: "rs485", DefaultPoll: time.Second, Points: []PointSpec{
		{Name: "temperature", Deadband: 0.5}, {Name: "running"}, {Name: "mode"}, {Name: "count"},
	}})
	set := func(vals map[string]any) {
		for k, v := range vals {
			h.plug.set("pump-1", k, v)
		}
	}
	set(map[string]any{"temperature": 20.25, "running": false, "mode": "auto", "count": 7})
	h.run()
	h.awaitCycle("pump-1", start)

	steps := []struct {
		name string
		set  map[string]any
		want map[string]any // nil: nothing published
	}{
		{"nothing changed", nil, nil},
		{"temperature within deadband", map[string]any{"temperature": 20.5}, nil},
		{"still within deadband of the published value", map[string]any{"temperature": 20.75}, nil},
		{"beyond deadband of the published value", map[string]any{"temperature": 20.875}, map[string]any{"temperature": 20.875}},
		{"bool flip", map[string]any{"running": true}, map[string]any{"running": true}},
		{"string change and int change", map[string]any{"mode": "manual", "count": 8}, map[string]any{"mode": "manual", "count": int64(8)}},
		{"same string again", map[string]any{"mode": "manual"}, nil},
	}
	seen := len(h.sink.All())
	first := telemetry(h.sink.All(), "pump-1")
	wantFirst := map[string]any{"temperature": 20.25, "running": false, "mode": "auto", "count": int64(7)}
	if len(first) != 1 || !maps.Equal(first[0], wantFirst) {
		t.Fatalf("first cycle telemetry = %v, want %v", first, wantFirst)
	}
	for _, st := range steps {
		set(st.set)
		at := h.tick(time.Second, "pump-1")
		evs := h.sink.All()[seen:]
		seen += len(evs)
		tel := telemetry(evs, "pump-1")
		pts := sections(evs, "pump-1", "points")
		if st.want == nil {
			if len(tel) != 0 || len(pts) != 0 {
				t.Fatalf("%s: published %v", st.name, evs)
			}
			continue
		}
		if len(tel) != 1 || !maps.Equal(tel[0], st.want) || len(pts) != 1 || !maps.Equal(pts[0], st.want) {
			t.Fatalf("%s: published %v, want telemetry and reported.points %v", st.name, evs, st.want)
		}
		if e := evs[0]; !e.At.Equal(at) {
			t.Fatalf("%s: telemetry at +%v, want +%v", st.name, e.At.Sub(start), at.Sub(start))
		}
	}
	if st := h.b.Stats().Devices["pump-1"]; st.Polls != 8 || st.Changes != 8 || st.State != StateOnline {
		t.Fatalf("stats = %+v", st)
	}
}

func TestConnectionReportedOnTransitionsOnly(t *testing.T) {
	h := newHarness(t, nil) // threshold 2, back-off 4s
	h.add(pumpSpec("pump-1"))
	h.plug.set("pump-1", "temperature", 20)
	h.run()
	h.awaitCycle("pump-1", start)
	h.tick(time.Second, "pump-1") // online, polled twice

	h.plug.with("pump-1", func(d *fakeDev) { d.dead = true })
	h.tick(time.Second, "pump-1") // timeout 1: offline
	h.tick(time.Second, "pump-1") // timeout 2: breaker opens
	h.tick(time.Second, "pump-1") // fast fail: backoff
	h.tick(time.Second, "pump-1") // still backoff
	h.plug.with("pump-1", func(d *fakeDev) { d.dead = false })
	h.tick(time.Second, "pump-1") // +6: still in back-off until +7
	h.tick(time.Second, "pump-1") // +7: probe answers: online
	h.tick(time.Second, "pump-1")

	conns := sections(h.sink.All(), "pump-1", "connection")
	var states []string
	for _, c := range conns {
		states = append(states, fmt.Sprint(c["state"]))
	}
	if want := []string{StateOnline, StateOffline, StateBackoff, StateOnline}; !slices.Equal(states, want) {
		t.Fatalf("connection states = %v, want %v (%v)", states, want, conns)
	}
	off := conns[1]
	if off["lastSeen"] != start.Add(time.Second).Format(time.RFC3339) || off["lastError"] == nil {
		t.Fatalf("offline section = %v, want lastSeen +1s and an error", off)
	}
	if on := conns[3]; on["lastError"] != nil || on["lastSeen"] != start.Add(7*time.Second).Format(time.RFC3339) {
		t.Fatalf("online section = %v", on)
	}
}

func TestDeadDeviceDoesNotStallTheBus(t *testing.T) {
	h := newHarness(t, nil) // threshold 2, back-off 4s doubling to 32s
	devices := []string{"dead", "pump-1", "pump-2"}
	for _, id := range devices {
		h.add(pumpSpec(id))
		h.plug.set(id, "temperature", 20)
	}
	h.plug.with("dead", func(d *fakeDev) { d.dead = true })
	h.run()
	for _, id := range devices {
		h.awaitCycle(id, start)
	}
	const seconds = 40
	for range seconds {
		h.tick(time.Second, devices...)
	}
	log := h.plug.log.All()
	// Every cycle of the live devices ran: one read per second each.
	for _, id := range devices[1:] {
		if n := len(ops(log, "read", id)); n != seconds+1 {
			t.Errorf("%s: %d reads, want %d", id, n, seconds+1)
		}
	}
	// The dead device reached the bus only for its first timeouts and one
	// probe per back-off: identify + read at 0 (opens, 4s), probes at +4
	// (8s), +12 (16s), +28 (32s).
	dead := ops(log, "", "dead")
	var at []string
	for _, x := range dead {
		at = append(at, x.Op)
	}
	if len(dead) != 5 {
		t.Errorf("dead device used the bus %d times (%v), want 5 in %ds", len(dead), at, seconds)
	}
	if m := h.plug.maxInFlight.Load(); m != 1 {
		t.Errorf("max plugin calls in flight = %d, want 1", m)
	}
	st := h.b.Stats()
	if b := st.Buses["rs485"].Breakers["dead"]; b.Opens != 4 || b.Backoff != 32*time.Second {
		t.Errorf("dead breaker = %+v, want 4 opens, last back-off 32s", b)
	}
	if d := st.Devices["dead"]; d.State != StateBackoff || d.Errors != seconds+1 {
		t.Errorf("dead device stats = %+v", d)
	}
}

func TestPluginDownPausesAndMarks(t *testing.T) {
	h := newHarness(t, nil)
	h.add(pumpSpec("pump-1"))
	h.plug.set("pump-1", "temperature", 20)
	h.run()
	h.awaitCycle("pump-1", start)

	h.b.PluginState("fake", false)
	h.b.PluginState("fake", false) // repeated: no second report
	h.sink.Await(t, waitLimit, "plugin-down", func(evs []event) bool {
		c := sections(evs, "pump-1", "connection")
		return len(c) == 2 && c[1]["state"] == StatePluginDown
	})
	reads := len(ops(h.plug.log.All(), "read", ""))
	for range 5 {
		h.clk.Advance(time.Second)
	}
	if st, body := h.invoke("pump-1", "read", ""); st != 503 || !contains(body["error"], "plugin fake is down") {
		t.Fatalf("read while down: %d %v", st, body)
	}
	if n := len(ops(h.plug.log.All(), "read", "")); n != reads {
		t.Fatalf("polled while the plugin was down: %d reads, had %d", n, reads)
	}
	h.b.PluginState("fake", true)
	// Back up: everything is polled at once, without waiting for the schedule.
	h.plug.log.Await(t, waitLimit, "read after plugin up", func(l []txn) bool { return len(ops(l, "read", "")) > reads })
	h.sink.Await(t, waitLimit, "online again", func(evs []event) bool {
		c := sections(evs, "pump-1", "connection")
		return len(c) == 3 && c[2]["state"] == StateOnline
	})
}

func TestAddWhileRunningAndRemove(t *testing.T) {
	h := newHarness(t, nil)
	h.run()
	h.add(pumpSpec("pump-1"))
	h.plug.set("pump-1", "temperature", 20)
	h.awaitCycle("pump-1", start)
	h.b.Remove("pump-1")
	h.b.Remove("pump-1") // twice: nothing
	n := len(h.sink.All())
	h.clk.Advance(10 * time.Second)
	if st, _ := h.invoke("pump-1", "read", ""); st != 404 {
		t.Fatalf("read after Remove: %d, want 404", st)
	}
	if err := h.b.Desired("pump-1", map[string]any{}, 1); err == nil {
		t.Fatal("Desired after Remove: no error")
	}
	if got := h.sink.All(); len(got) != n {
		t.Fatalf("sink calls after Remove: %v", got[n:])
	}
	if _, ok := h.b.Stats().Devices["pump-1"]; ok {
		t.Fatal("removed device still in Stats")
	}
	// Re-adding works and polls again.
	h.add(pumpSpec("pump-1"))
	h.plug.log.Await(t, waitLimit, "poll after re-add", func(l []txn) bool { return len(ops(l, "read", "pump-1")) >= 2 })
}

func contains(v any, sub string) bool {
	s, ok := v.(string)
	return ok && strings.Contains(s, sub)
}
