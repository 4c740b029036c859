package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/internal/eventlog"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/plugintest"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"
	"go.uber.org/goleak"
)

// waitLimit bounds every wait for an event; reaching it fails the test.
const waitLimit = 15 * time.Second

// recorder is an append-only log that tests can wait on.
type recorder[T any] = eventlog.Log[T]

// testPlugin is plugintest.Fake taking gateway profiles: Attach turns the
// profile's points list into the Fake's {"points": {name: value}} with
// the values of initial (else the type's zero). After hold, every Write
// waits for a value on the gate (or its ctx); writes logs the device of
// every Write on entry.
type testPlugin struct {
	*plugintest.Fake
	initial map[string]any
	writes  recorder[string]
	flashes recorder[string] // the device of every Flash, on entry

	mu   sync.Mutex
	gate chan struct{}
}

// hold makes every Write wait for a value on the returned channel; release
// ends that.
func (p *testPlugin) hold() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
	return p.gate
}

func (p *testPlugin) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = nil
}

// ValidateBus accepts the test gateway's buses: the Fake knows only its
// own keys, not the gateway's defaults.
func (p *testPlugin) ValidateBus(context.Context, json.RawMessage) ([]plugins.FieldError, error) {
	return nil, nil
}

// ValidateProfile accepts the test profile (gateway-level methods and
// in_use included), as the real plugins do.
func (p *testPlugin) ValidateProfile(context.Context, json.RawMessage) ([]plugins.FieldError, error) {
	return nil, nil
}

// Flash records the device, then flashes as the Fake does.
func (p *testPlugin) Flash(ctx context.Context, req plugins.FlashRequest, progress func(plugins.FlashEvent)) error {
	p.flashes.Add(req.DeviceID)
	return p.Fake.Flash(ctx, req, progress)
}

func newTestPlugin(initial map[string]any) *testPlugin {
	return &testPlugin{Fake: plugintest.NewFake(), initial: initial}
}

// OpenBus drops the bus keys: the Fake knows only name, plugin and mode.
func (p *testPlugin) OpenBus(ctx context.Context, b plugins.BusConfig) error {
	return p.Fake.OpenBus(ctx, plugins.BusConfig{Name: b.Name})
}

func (p *testPlugin) Attach(ctx context.Context, dc plugins.DeviceConfig) error {
	var prof struct {
		Points []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"points"`
		InUse *struct {
			Point string `json:"point"`
		} `json:"in_use"`
	}
	if err := json.Unmarshal(dc.Profile, &prof); err != nil {
		return fmt.Errorf("test plugin: profile: %w", err)
	}
	points := map[string]any{}
	for _, pt := range prof.Points {
		v, ok := p.initial[pt.Name]
		if !ok {
			v = zeroOf(pt.Type)
		}
		points[pt.Name] = v
	}
	fake := map[string]any{"points": points, "read_back": true}
	if prof.InUse != nil {
		fake["in_use"] = prof.InUse.Point
	}
	raw, err := json.Marshal(fake)
	if err != nil {
		return err
	}
	dc.Profile = raw
	return p.Fake.Attach(ctx, dc)
}

func zeroOf(typ string) any {
	switch typ {
	case "bool":
		return false
	case "string":
		return ""
	case "float32", "float64":
		return json.Number("0.0")
	}
	return 0
}

func (p *testPlugin) Write(ctx context.Context, id string, values []plugins.PointWrite) ([]plugins.WriteResult, error) {
	p.writes.Add(id)
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return p.Fake.Write(ctx, id, values)
}

// value reads one point of a device from the fake.
func (p *testPlugin) value(t testing.TB, device, point string) any {
	t.Helper()
	vals, err := p.Fake.Read(context.Background(), device, []string{point})
	if err != nil || len(vals) != 1 {
		t.Fatalf("read %s.%s from the fake: %v %v", device, point, vals, err)
	}
	switch v := vals[0].Value; v.Kind {
	case plugins.KindBool:
		return v.Bool
	case plugins.KindInt:
		return v.Int
	case plugins.KindFloat:
		return v.Float
	case plugins.KindString:
		return v.String
	}
	return nil
}

// report is one sink.Reported call.
type report struct {
	Device string
	Patch  map[string]any
}

// section returns the last reported value of key for device.
func section(rs []report, device, key string) map[string]any {
	var out map[string]any
	for _, r := range rs {
		if s, ok := r.Patch[key].(map[string]any); r.Device == device && ok {
			out = s
		}
	}
	return out
}

// teeSink records every report and passes it on.
type teeSink struct {
	rec  *recorder[report]
	next bridges.Sink
}

func (s teeSink) Reported(id string, patch map[string]any) {
	s.rec.Add(report{id, patch})
	s.next.Reported(id, patch)
}

func (s teeSink) Telemetry(id string, values map[string]any, at time.Time) {
	s.next.Telemetry(id, values, at)
}

// The test gateway: bus line1 of the test plugin with pump-1 and pump-2.
const (
	testGatewayYAML = `gateway:
  id: gw-test
  data_dir: data
  local_api: 127.0.0.1:0
plugins:
  dir: .
profiles_dir: profiles
buses:
  - name: line1
    plugin: fake
devices:
  - { id: pump-1, bus: line1, address: 1, profile: pump, poll: 50ms }
  - { id: pump-2, bus: line1, address: 2, profile: pump, poll: 50ms }
`
	testProfileYAML = `name: pump
plugin: fake
points:
  - { name: setpoint, type: float32, writable: true }
  - { name: mode, type: int16, writable: true }
  - { name: counter_reset, type: bool, writable: true }
  - { name: running, type: bool }
  - { name: temperature, type: float32 }
methods:
  reboot: { action: restart }
  resetCounters: { points: { counter_reset: true } }
  eco: { points: { setpoint: 18.5, mode: 2 }, disruptive: true }
in_use: { point: running, equals: true }
`
)

// writeGateway writes the test gateway's files into dir (a maintenance
// section appended when given) and returns the gateway.yaml path.
func writeGateway(t testing.TB, dir, maintenance string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "profiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	gw := filepath.Join(dir, "gateway.yaml")
	for path, text := range map[string]string{gw: testGatewayYAML + maintenance, filepath.Join(dir, "profiles", "pump.yaml"): testProfileYAML} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return gw
}

// stack is the gateway's device side without the plugin host, uplink and
// local API: the real configuration, database, bridges, job queue and
// device wiring (addDevice, deviceDesired, deviceMethod), over testPlugin.
type stack struct {
	t       testing.TB
	d       *Daemon
	plug    *testPlugin
	reports *recorder[report]
	changes *recorder[jobs.Job] // every stored job change
	stop    func()
}

// stackOptions tune newStack.
type stackOptions struct {
	maintenance string // appended to gateway.yaml
	initial     map[string]any
	tuneJobs    func(*jobs.Options)
	beforeRun   func(s *stack) // after the devices are added, before the queue runs
}

// newStack starts a stack on dir (files written when missing); the test's
// cleanup stops it.
func newStack(t testing.TB, dir string, o stackOptions) *stack {
	t.Helper()
	path := filepath.Join(dir, "gateway.yaml")
	if _, err := os.Stat(path); err != nil {
		path = writeGateway(t, dir, o.maintenance)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	s := &stack{t: t, plug: newTestPlugin(o.initial), reports: &recorder[report]{}, changes: &recorder[jobs.Job]{}}
	d := &Daemon{opts: Options{Version: "test"}, log: discard(), now: time.Now, base: cfg, cfg: cfg,
		children: map[string]*child{}, devState: map[string]map[string]any{}, ready: make(chan struct{}), tuneJobs: o.tuneJobs}
	s.d = d
	if err := os.MkdirAll(cfg.Gateway.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.openState(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.runCtx = ctx
	d.plugin = func(string) (plugins.Plugin, error) { return s.plug, nil }
	opts := d.bridgeOptions(d.plugin)
	opts.Sink = teeSink{rec: s.reports, next: opts.Sink}
	d.bridges = bridges.New(opts)
	if err := d.openJobs(ctx); err != nil {
		t.Fatal(err)
	}
	d.jobs.Subscribe(s.changes.Add)
	d.wg.Add(1)
	go func() { defer d.wg.Done(); _ = d.bridges.Run(ctx) }()
	d.restoreGatewayDesired(ctx) // as Run does: the overlay decides the devices
	cfg = d.cfg
	for i := range cfg.Buses {
		if err := d.openBus(ctx, &cfg.Buses[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range cfg.Devices {
		if err := d.addDevice(ctx, cfg, &cfg.Devices[i]); err != nil {
			t.Fatal(err)
		}
	}
	if o.beforeRun != nil {
		o.beforeRun(s)
	}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); _ = d.jobs.Run(ctx) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			d.stopChildren()
			d.closeState() // waits for the goroutines
		})
	}
	t.Cleanup(s.stop)
	return s
}

// awaitOnline waits until the device reported connection.state online.
func (s *stack) awaitOnline(device string) {
	s.t.Helper()
	s.reports.Await(s.t, waitLimit, device+" online", func(rs []report) bool {
		return section(rs, device, "connection")["state"] == bridges.StateOnline
	})
}

// desired delivers a device's desired document as its link would.
func (s *stack) desired(device string, doc map[string]any, version int64) {
	s.t.Helper()
	l := s.d.childLink(device)
	if l == nil {
		s.t.Fatalf("no link for %s", device)
	}
	l.onDesired(doc, version)
}

// method calls a device method as the hub would.
func (s *stack) method(device, name, payload string) (int, map[string]any) {
	s.t.Helper()
	return s.methodFrom(jobs.SourceHubMethod, device, name, payload)
}

func (s *stack) methodFrom(src jobs.Source, device, name, payload string) (int, map[string]any) {
	s.t.Helper()
	st, resp := s.d.deviceMethod(context.Background(), device, name, json.RawMessage(payload), src)
	raw, err := json.Marshal(resp)
	if err != nil {
		s.t.Fatalf("%s %s: answer does not encode: %v", device, name, err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		s.t.Fatalf("%s %s: answer %s is not an object: %v", device, name, raw, err)
	}
	return st, body
}

// awaitJob waits until job id satisfies ok and returns it.
func (s *stack) awaitJob(id, what string, ok func(jobs.Job) bool) jobs.Job {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	j, err := s.d.jobs.Await(ctx, id, ok)
	if err != nil {
		s.t.Fatalf("job %s: %s: %v (now %s/%s attempts %d error %q)", id, what, err, j.State, j.Reason, j.Attempts, j.Error)
	}
	return j
}

// jobsOf lists a device's jobs, oldest first.
func (s *stack) jobsOf(device string) []jobs.Job {
	s.t.Helper()
	js, err := s.d.jobs.List(context.Background(), jobs.Filter{Device: device})
	if err != nil {
		s.t.Fatal(err)
	}
	slices.Reverse(js)
	return js
}

// twinReported returns the device's reported properties from the twin cache.
func (s *stack) twinReported(device string) map[string]any {
	s.t.Helper()
	tw, err := s.d.cache.Get(context.Background(), device)
	if err != nil {
		s.t.Fatal(err)
	}
	return tw.Reported
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
