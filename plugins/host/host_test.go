package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/host"
	"github.com/drover-iot/drover/plugins/plugintest"
	"go.uber.org/goleak"
)

// pluginDir holds the fake plugin, built once, under every name the tests
// use.
var pluginDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "drover-host-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := plugintest.BuildFakeInto(dir, plugintest.ModeGarbage, plugintest.ModeBadCookie,
		plugintest.ModeBadVersion, "fake2"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginDir = dir
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

var (
	bus = plugins.BusConfig{Name: "bus-1", Config: json.RawMessage(`{"name":"bus-1","plugin":"fake"}`)}
	dev = plugins.DeviceConfig{ID: "pump-1", Bus: "bus-1", Address: 3,
		Profile: json.RawMessage(`{"points":{"temperature":21.5,"running":false}}`)}
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// events records a Host's events for tests to wait on, without ever
// blocking the supervisor.
type events struct {
	mu     sync.Mutex
	evs    []host.Event
	next   int
	notify chan struct{}
}

func record(h *host.Host) *events {
	e := &events{notify: make(chan struct{}, 1)}
	h.OnState(func(ev host.Event) {
		e.mu.Lock()
		e.evs = append(e.evs, ev)
		e.mu.Unlock()
		select {
		case e.notify <- struct{}{}:
		default:
		}
	})
	return e
}

// waitFor returns the first event after the last one returned that matches
// ok, failing the test after a deadline.
func (e *events) waitFor(t *testing.T, what string, ok func(host.Event) bool) host.Event {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		for e.next < len(e.evs) {
			ev := e.evs[e.next]
			e.next++
			if ok(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.notify:
		case <-deadline.C:
			e.mu.Lock()
			defer e.mu.Unlock()
			t.Fatalf("timed out waiting for %s; events: %+v", what, e.evs)
		}
	}
}

func state(s host.State) func(host.Event) bool {
	return func(ev host.Event) bool { return ev.State == s }
}

// runHost runs h until the test ends and checks that Run returns.
func runHost(t *testing.T, h *host.Host) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStart(t *testing.T) {
	inst, err := host.Start(callCtx(t), host.Options{Dir: pluginDir, Logger: discard()}, "fake")
	if err != nil {
		t.Fatal(err)
	}
	d := inst.Description()
	if d.Name != "fake" || d.Version == "" || len(d.Capabilities) != 7 {
		t.Errorf("description %+v", d)
	}
	if inst.PID() <= 0 {
		t.Errorf("pid %d", inst.PID())
	}
	if err := inst.Ping(callCtx(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
	inst.Close()
	if inst.ExitStatus() == "" {
		t.Error("no exit status after Close")
	}
	inst.Close() // idempotent
}

func TestStartFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{plugintest.ModeGarbage, []string{"handshake failed", "Unrecognized remote plugin message", "not a plugin handshake"}},
		{plugintest.ModeBadCookie, []string{"handshake failed", "not meant to be executed directly"}},
		{plugintest.ModeBadVersion, []string{"handshake failed", "99"}},
		{"missing", []string{"drover-plugin-missing not found"}},
		{"../etc", []string{"invalid name"}},
		{"", []string{"invalid name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := host.Start(callCtx(t), host.Options{Dir: pluginDir, Logger: discard(), StartTimeout: 5 * time.Second}, tc.name)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts host.Options
	}{
		{"no dir", host.Options{Plugins: []string{"fake"}}},
		{"bad name", host.Options{Dir: pluginDir, Plugins: []string{"a/b"}}},
		{"duplicate", host.Options{Dir: pluginDir, Plugins: []string{"fake", "fake"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := host.New(tc.opts); err == nil {
				t.Errorf("New(%+v) succeeded", tc.opts)
			}
		})
	}
}

func TestHandleBeforeRun(t *testing.T) {
	h, err := host.New(host.Options{Dir: pluginDir, Plugins: []string{"fake"}, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Plugin("modbus"); plugins.CodeOf(err) != plugins.CodeNotFound {
		t.Errorf("Plugin(unconfigured): %v", err)
	}
	p, err := h.Plugin("fake")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Read(t.Context(), "pump-1", nil)
	if plugins.CodeOf(err) != plugins.CodeUnavailable {
		t.Errorf("Read before Run: %v, want unavailable", err)
	}
	if err := p.Detach(t.Context(), "pump-1"); err != nil {
		t.Errorf("Detach while down: %v, want nil (nothing to detach)", err)
	}
	st := h.Status()
	if len(st) != 1 || st[0].State != host.StateStopped {
		t.Errorf("status %+v", st)
	}
}

// setup runs a host with the given plugins and returns it with its events
// after every plugin is up.
func setup(t *testing.T, opts host.Options) (*host.Host, *events) {
	t.Helper()
	opts.Dir = pluginDir
	if opts.Logger == nil {
		opts.Logger = discard()
	}
	h, err := host.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ev := record(h)
	runHost(t, h)
	for _, name := range opts.Plugins {
		p, _ := h.Plugin(name)
		if err := p.WaitUp(callCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	return h, ev
}

func attach(t *testing.T, p plugins.Plugin) {
	t.Helper()
	if err := p.OpenBus(callCtx(t), bus); err != nil {
		t.Fatalf("OpenBus: %v", err)
	}
	if err := p.Attach(callCtx(t), dev); err != nil {
		t.Fatalf("Attach: %v", err)
	}
}

func arm(t *testing.T, p plugins.Plugin, fault string) {
	t.Helper()
	_, err := p.Write(callCtx(t), dev.ID, []plugins.PointWrite{{Point: plugintest.FaultPoint,
		Value: plugins.Value{Kind: plugins.KindString, String: fault}}})
	if err != nil {
		t.Fatalf("arm %s: %v", fault, err)
	}
}

func readTemperature(t *testing.T, p plugins.Plugin) {
	t.Helper()
	vs, err := p.Read(callCtx(t), dev.ID, []string{"temperature"})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(vs) != 1 || vs[0].Value.Float != 21.5 {
		t.Fatalf("Read: %+v", vs)
	}
}

func TestSupervisorStartsAndStops(t *testing.T) {
	h, ev := setup(t, host.Options{Plugins: []string{"fake", "fake2"}})
	for _, name := range []string{"fake", "fake2"} {
		p, _ := h.Plugin(name)
		d, err := p.Describe(callCtx(t))
		if err != nil || d.Name != name {
			t.Errorf("Describe %s: %+v, %v", name, d, err)
		}
	}
	up := ev.waitFor(t, "up", state(host.StateUp))
	if up.Generation != 1 || up.Version != "0.1.0" {
		t.Errorf("up event %+v", up)
	}
	for _, st := range h.Status() {
		if st.State != host.StateUp || st.PID <= 0 || st.Version != "0.1.0" || st.Restarts != 0 {
			t.Errorf("status %+v", st)
		}
	}
}

func TestSupervisorRestartsCrashedPlugin(t *testing.T) {
	h, ev := setup(t, host.Options{Plugins: []string{"fake"}, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second})
	p, _ := h.Plugin("fake")
	attach(t, p)
	readTemperature(t, p)

	// While the plugin is down, calls fail at once. The check runs inside
	// the callback, which the supervisor calls before it waits to restart.
	downCall := make(chan error, 1)
	h.OnState(func(e host.Event) {
		if e.State == host.StateDown {
			_, err := p.Read(t.Context(), dev.ID, nil)
			select {
			case downCall <- err:
			default:
			}
		}
	})

	arm(t, p, "read:crash=7")
	_, err := p.Read(callCtx(t), dev.ID, nil)
	if plugins.CodeOf(err) != plugins.CodeUnavailable {
		t.Errorf("in-flight Read during crash: %v (code %v), want unavailable", err, plugins.CodeOf(err))
	}
	down := ev.waitFor(t, "down", state(host.StateDown))
	if down.Err == nil || !strings.Contains(down.Err.Error(), "exit status 7") {
		t.Errorf("down event error %v, want the exit status", down.Err)
	}
	if err := <-downCall; plugins.CodeOf(err) != plugins.CodeUnavailable {
		t.Errorf("Read while down: %v, want unavailable", err)
	}
	ev.waitFor(t, "starting", state(host.StateStarting))
	up := ev.waitFor(t, "up again", state(host.StateUp))
	if up.Generation != 2 || len(up.Replay) != 0 {
		t.Errorf("up event %+v", up)
	}

	// The device was re-attached by the handle: no OpenBus/Attach here.
	readTemperature(t, p)
	st := h.Status()[0]
	if st.Restarts != 1 || st.Buses != 1 || st.Devices != 1 || !strings.Contains(st.LastError, "exit status 7") {
		t.Errorf("status %+v", st)
	}
}

func TestSupervisorKillsHungPlugin(t *testing.T) {
	h, ev := setup(t, host.Options{Plugins: []string{"fake"}, BackoffMin: 50 * time.Millisecond,
		PingInterval: 100 * time.Millisecond, PingTimeout: 300 * time.Millisecond})
	p, _ := h.Plugin("fake")
	attach(t, p)
	firstPID := h.Status()[0].PID

	arm(t, p, "read:hang") // the process stops itself (SIGSTOP)
	readErr := make(chan error, 1)
	go func() {
		_, err := p.Read(callCtx(t), dev.ID, nil)
		readErr <- err
	}()
	down := ev.waitFor(t, "down", state(host.StateDown))
	if down.Err == nil || !strings.Contains(down.Err.Error(), "hangs") || !strings.Contains(down.Err.Error(), "killed") {
		t.Errorf("down event error %v, want a hang and a kill", down.Err)
	}
	if err := <-readErr; plugins.CodeOf(err) != plugins.CodeUnavailable {
		t.Errorf("Read stuck in the hung plugin: %v, want unavailable", err)
	}
	ev.waitFor(t, "up again", state(host.StateUp))
	readTemperature(t, p)
	if pid := h.Status()[0].PID; pid == firstPID {
		t.Errorf("still pid %d after restart", pid)
	}
}

func TestSupervisorReportsBadPlugin(t *testing.T) {
	opts := host.Options{Dir: pluginDir, Plugins: []string{plugintest.ModeBadCookie}, Logger: discard(),
		BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond}
	h, err := host.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ev := record(h)
	runHost(t, h)
	for i := range 2 { // it keeps trying, with backoff
		down := ev.waitFor(t, "down", state(host.StateDown))
		if down.Err == nil || !strings.Contains(down.Err.Error(), "not meant to be executed directly") {
			t.Errorf("attempt %d: down error %v", i, down.Err)
		}
	}
	st := h.Status()[0]
	if st.State == host.StateUp || !strings.Contains(st.LastError, "handshake failed") {
		t.Errorf("status %+v", st)
	}
}

func TestReplayFailureIsReported(t *testing.T) {
	h, ev := setup(t, host.Options{Plugins: []string{"fake"}, BackoffMin: 20 * time.Millisecond})
	p, _ := h.Plugin("fake")
	attach(t, p)
	other := dev
	other.ID, other.Bus = "pump-2", "bus-2"
	if err := p.OpenBus(callCtx(t), plugins.BusConfig{Name: "bus-2"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(callCtx(t), other); err != nil {
		t.Fatal(err)
	}
	if err := p.CloseBus(callCtx(t), "bus-2"); err != nil { // forgotten: pump-2 cannot come back
		t.Fatal(err)
	}
	arm(t, p, "describe:crash")
	_, _ = p.Describe(callCtx(t))
	up := ev.waitFor(t, "up after crash", func(e host.Event) bool { return e.State == host.StateUp && e.Generation == 2 })
	if len(up.Replay) != 1 || up.Replay[0].Device != "pump-2" || plugins.CodeOf(up.Replay[0].Err) != plugins.CodeNotFound {
		t.Errorf("replay errors %+v", up.Replay)
	}
	readTemperature(t, p)
}

// capture is a slog handler that keeps records for tests to wait on.
type capture struct {
	mu     *sync.Mutex
	recs   *[]map[string]string
	notify chan struct{}
	attrs  []slog.Attr
}

func newCapture() *capture {
	return &capture{mu: new(sync.Mutex), recs: new([]map[string]string), notify: make(chan struct{}, 1)}
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) WithGroup(string) slog.Handler            { return c }
func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	cc := *c
	cc.attrs = append(append([]slog.Attr(nil), c.attrs...), as...)
	return &cc
}

func (c *capture) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	for _, a := range c.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	*c.recs = append(*c.recs, m)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return nil
}

func (c *capture) waitFor(t *testing.T, msg string) map[string]string {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, m := range *c.recs {
			if m["msg"] == msg {
				c.mu.Unlock()
				return m
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline.C:
			t.Fatalf("no log record %q", msg)
		}
	}
}

func TestPluginLogsReachHostLogger(t *testing.T) {
	c := newCapture()
	h, _ := setup(t, host.Options{Plugins: []string{"fake"}, Logger: slog.New(c)})
	p, _ := h.Plugin("fake")
	attach(t, p)

	m := c.waitFor(t, "bus opened") // logged by the Fake inside the plugin process
	if m["plugin"] != "fake" || m["bus"] != "bus-1" || m["level"] != "INFO" {
		t.Errorf("forwarded record %v", m)
	}
	m = c.waitFor(t, "device attached")
	if m["device"] != "pump-1" || m["address"] != "3" {
		t.Errorf("forwarded record %v", m)
	}
	if m := c.waitFor(t, "plugin started"); m["plugin"] != "fake" {
		t.Errorf("host record %v", m)
	}
}
