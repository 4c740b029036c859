package bridges

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// handOver is one call of Options.SubmitConfig.
type handOver struct {
	Device  string
	Version int64
	Config  map[string]any
}

// handOverHarness is configHarness with Options.SubmitConfig recording
// into the returned log (failing with err when set).
func handOverHarness(t *testing.T, err error) (*harness, *recorder[handOver]) {
	t.Helper()
	subs := &recorder[handOver]{}
	h := newHarness(t, func(o *Options) {
		o.SubmitConfig = func(id string, v int64, cfg map[string]any) error {
			subs.Add(handOver{id, v, maps.Clone(cfg)})
			return err
		}
	})
	h.add(configSpec())
	h.plug.set("pump-1", "setpoint", 20.5)
	h.plug.set("pump-1", "mode", "auto")
	h.plug.set("pump-1", "temperature", 18.25)
	h.run()
	h.awaitCycle("pump-1", start)
	return h, subs
}

// TestSubmitConfigHandsOver checks that with Options.SubmitConfig the
// poller never writes a config itself, and that ApplyConfig writes it,
// reports it and refreshes the written point.
func TestSubmitConfigHandsOver(t *testing.T) {
	h, subs := handOverHarness(t, nil)
	cfg := map[string]any{"setpoint": 23.5}
	if err := h.b.Desired("pump-1", cfg, 4); err != nil {
		t.Fatal(err)
	}
	got := subs.Await(t, waitLimit, "hand-over of v4", func(s []handOver) bool { return len(s) == 1 })
	if got[0].Device != "pump-1" || got[0].Version != 4 || got[0].Config["setpoint"] != 23.5 {
		t.Fatalf("handed over %+v", got[0])
	}
	awaitConfig(t, h, ConfigPending, 4)
	// A whole poll cycle and the standalone retry delay pass: a poller that
	// meant to write would have done it before polling (writes go first).
	h.tick(time.Minute, "pump-1")
	if w := ops(h.plug.log.All(), "write", ""); len(w) != 0 {
		t.Fatalf("the poller wrote a handed-over config: %v", w)
	}
	// Repeats and stale versions are not handed over again.
	for _, v := range []int64{4, 3} {
		if err := h.b.Desired("pump-1", cfg, v); err != nil {
			t.Fatal(err)
		}
	}

	res, err := h.b.ApplyConfig(context.Background(), "pump-1", 4, cfg)
	if err != nil || res.Status != ConfigApplied || res.Version != 4 || res.Errors != nil {
		t.Fatalf("ApplyConfig = %+v, %v; want applied v4", res, err)
	}
	awaitConfig(t, h, ConfigApplied, 4)
	if w := ops(h.plug.log.All(), "write", ""); len(w) != 1 {
		t.Fatalf("writes = %v, want one", w)
	}
	h.sink.Await(t, waitLimit, "new setpoint in reported.points", func(evs []event) bool {
		for _, p := range sections(evs, "pump-1", "points") {
			if p["setpoint"] == 23.5 {
				return true
			}
		}
		return false
	})
	if n := len(subs.All()); n != 1 {
		t.Fatalf("%d hand-overs, want 1", n)
	}
	// Settled: applying it again answers the same without a write.
	if res, err := h.b.ApplyConfig(context.Background(), "pump-1", 4, cfg); err != nil || res.Status != ConfigApplied {
		t.Fatalf("second ApplyConfig = %+v, %v", res, err)
	}
	if w := ops(h.plug.log.All(), "write", ""); len(w) != 1 {
		t.Fatalf("writes after a repeat = %v, want one", w)
	}
}

// TestApplyConfigOutcomes runs ApplyConfig against the outcomes a job
// must tell apart.
func TestApplyConfigOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		config     map[string]any
		desired    bool // Desired was called first (else: a restarted bridge)
		arm        func(d *fakeDev)
		pluginDown bool
		wantStatus string
		wantErrs   map[string]string
		wantErr    []error // errors.Is targets; nil for success
		wantWrites int
		reported   string // last reported.config status
	}{
		{"applied", map[string]any{"setpoint": 21.5}, true, nil, false, ConfigApplied, nil, nil, 1, ConfigApplied},
		{"unseen version is planned first", map[string]any{"setpoint": 21.5}, false, nil, false, ConfigApplied, nil, nil, 1, ConfigApplied},
		{"refused by the device", map[string]any{"setpoint": 21.5, "mode": "turbo"}, true,
			func(d *fakeDev) { d.writeErr["mode"] = "illegal data value" }, false,
			ConfigRejected, map[string]string{"mode": "illegal data value"}, nil, 1, ConfigRejected},
		{"rejected by the plan", map[string]any{"temperature": 3}, false, nil, false,
			ConfigRejected, map[string]string{"temperature": `point "temperature" is not writable`}, nil, 0, ConfigRejected},
		{"no answer is transient", map[string]any{"setpoint": 21.5}, true,
			func(d *fakeDev) { d.failNext["write"] = plugins.Errorf(plugins.CodeTimeout, "no answer") }, false,
			ConfigPending, map[string]string{"setpoint": "no answer"}, []error{ErrTransient}, 1, ConfigPending},
		{"busy bus: nothing sent", map[string]any{"setpoint": 21.5}, true,
			func(d *fakeDev) { d.failNext["write"] = plugins.Errorf(plugins.CodeBusy, "bus busy") }, false,
			ConfigPending, map[string]string{"setpoint": "bus busy"}, []error{ErrTransient, ErrNotSent}, 1, ConfigPending},
		{"plugin down: nothing sent", map[string]any{"setpoint": 21.5}, true, nil, true,
			ConfigPending, nil, []error{ErrTransient, ErrNotSent}, 0, ConfigPending},
		{"device error is final", map[string]any{"setpoint": 21.5}, true,
			func(d *fakeDev) { d.failNext["write"] = plugins.Errorf(plugins.CodeDeviceError, "exception 4") }, false,
			ConfigRejected, map[string]string{"setpoint": "exception 4"}, nil, 1, ConfigRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := handOverHarness(t, nil)
			if tt.arm != nil {
				h.plug.with("pump-1", tt.arm)
			}
			if tt.desired {
				if err := h.b.Desired("pump-1", tt.config, 2); err != nil {
					t.Fatal(err)
				}
			}
			if tt.pluginDown {
				h.b.PluginState("fake", false)
			}
			res, err := h.b.ApplyConfig(context.Background(), "pump-1", 2, tt.config)
			for _, target := range tt.wantErr {
				if !errors.Is(err, target) {
					t.Errorf("ApplyConfig err = %v, want it to wrap %v", err, target)
				}
			}
			if tt.wantErr == nil && err != nil {
				t.Errorf("ApplyConfig err = %v, want none", err)
			}
			if (len(tt.wantErr) == 1) && errors.Is(err, ErrNotSent) {
				t.Errorf("ApplyConfig err = %v: says not sent, but the device was addressed", err)
			}
			for k, want := range tt.wantErrs {
				if got := res.Errors[k]; !contains(got, want) {
					t.Errorf("result errors[%s] = %q, want %q", k, got, want)
				}
			}
			if res.Status != tt.wantStatus || res.Version != 2 || len(res.Errors) != len(tt.wantErrs) {
				t.Errorf("ApplyConfig(%v) = %+v, want %s v2 with errors %v", tt.config, res, tt.wantStatus, tt.wantErrs)
			}
			if w := ops(h.plug.log.All(), "write", ""); len(w) != tt.wantWrites {
				t.Errorf("writes = %v, want %d", w, tt.wantWrites)
			}
			if tt.pluginDown {
				return // reported.config stays pending; reported.connection moved
			}
			awaitConfig(t, h, tt.reported, 2)
		})
	}
}

// TestApplyConfigTransientThenApplied checks that a version that failed
// for a transient reason stays pending until a later ApplyConfig applies
// it, with the errors reported in between.
func TestApplyConfigTransientThenApplied(t *testing.T) {
	h, _ := handOverHarness(t, nil)
	h.plug.with("pump-1", func(d *fakeDev) { d.failNext["write"] = plugins.Errorf(plugins.CodeTimeout, "no answer") })
	cfg := map[string]any{"setpoint": 24.5}
	if err := h.b.Desired("pump-1", cfg, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := h.b.ApplyConfig(context.Background(), "pump-1", 7, cfg); !errors.Is(err, ErrTransient) {
		t.Fatalf("first ApplyConfig err = %v, want ErrTransient", err)
	}
	h.sink.Await(t, waitLimit, "pending with the error", func(evs []event) bool {
		s := sections(evs, "pump-1", "config")
		return len(s) == 2 && s[1]["status"] == ConfigPending && s[1]["errors"] != nil
	})
	res, err := h.b.ApplyConfig(context.Background(), "pump-1", 7, cfg)
	if err != nil || res.Status != ConfigApplied {
		t.Fatalf("second ApplyConfig = %+v, %v; want applied", res, err)
	}
	if secs := awaitConfig(t, h, ConfigApplied, 7); secs[len(secs)-1]["errors"] != nil {
		t.Fatalf("applied with errors: %v", secs[len(secs)-1])
	}
}

// TestApplyConfigSuperseded checks both ways a newer version supersedes
// an older one handed over: before its write, and while it is on the bus.
func TestApplyConfigSuperseded(t *testing.T) {
	t.Run("before the write", func(t *testing.T) {
		h, subs := handOverHarness(t, nil)
		for v, sp := range []float64{21.5, 22.5} { // versions 1 and 2
			if err := h.b.Desired("pump-1", map[string]any{"setpoint": sp}, int64(v+1)); err != nil {
				t.Fatal(err)
			}
		}
		subs.Await(t, waitLimit, "two hand-overs", func(s []handOver) bool { return len(s) == 2 })
		res, err := h.b.ApplyConfig(context.Background(), "pump-1", 1, map[string]any{"setpoint": 21.5})
		if err != nil || res.Status != ConfigSuperseded {
			t.Fatalf("ApplyConfig(v1) = %+v, %v; want superseded", res, err)
		}
		if w := ops(h.plug.log.All(), "write", ""); len(w) != 0 {
			t.Fatalf("a superseded version was written: %v", w)
		}
	})
	t.Run("while writing", func(t *testing.T) {
		h, _ := handOverHarness(t, nil)
		h.plug.gate = make(chan struct{})
		v1 := map[string]any{"setpoint": 21.5}
		if err := h.b.Desired("pump-1", v1, 1); err != nil {
			t.Fatal(err)
		}
		type outcome struct {
			res ConfigResult
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			res, err := h.b.ApplyConfig(context.Background(), "pump-1", 1, v1)
			done <- outcome{res, err}
		}()
		h.plug.entered.Await(t, waitLimit, "v1 write on the bus", func(s []string) bool { return len(s) == 1 })
		if err := h.b.Desired("pump-1", map[string]any{"setpoint": 22.5}, 2); err != nil {
			t.Fatal(err)
		}
		h.plug.gate <- struct{}{} // v1 completes
		o := <-done
		if o.err != nil || o.res.Status != ConfigSuperseded {
			t.Fatalf("ApplyConfig(v1) = %+v, %v; want superseded", o.res, o.err)
		}
		for _, s := range sections(h.sink.All(), "pump-1", "config") {
			if s["version"] == int64(1) && s["status"] != ConfigPending {
				t.Fatalf("superseded v1 reported %v", s)
			}
		}
	})
}

// TestSubmitConfigFailureFallsBack checks that a version the gateway could
// not take is written by the poller after all.
func TestSubmitConfigFailureFallsBack(t *testing.T) {
	h, subs := handOverHarness(t, errors.New("database is locked"))
	if err := h.b.Desired("pump-1", map[string]any{"setpoint": 25.5}, 3); err != nil {
		t.Fatal(err)
	}
	subs.Await(t, waitLimit, "the failed hand-over", func(s []handOver) bool { return len(s) == 1 })
	awaitConfig(t, h, ConfigApplied, 3)
}

func TestApplyConfigUnknownDevice(t *testing.T) {
	h, _ := handOverHarness(t, nil)
	if _, err := h.b.ApplyConfig(context.Background(), "nope", 1, nil); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("ApplyConfig(unknown) = %v, want ErrUnknownDevice", err)
	}
}
