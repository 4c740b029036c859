package bridges

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/internal/eventlog"
	"github.com/drover-iot/drover/plugins"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait for an event; reaching it fails the test.
const waitLimit = 10 * time.Second

// start is aligned to every interval the tests use.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// recorder is an append-only log that tests can wait on.
type recorder[T any] = eventlog.Log[T]

// awaitTimer waits until a timer is armed for at: the code under test has
// reached the wait that at ends, so advancing the clock now cannot race it.
func awaitTimer(t testing.TB, c *clock.Manual, at time.Time) {
	t.Helper()
	if !c.WaitTimer(at, waitLimit) {
		t.Fatalf("no timer armed for %v", at)
	}
}

// txn is one call that reached the fake plugin.
type txn struct {
	Op     string
	Device string
	Points []string
	Writes []plugins.PointWrite
	Force  bool
	Err    error
}

func (x txn) String() string {
	return fmt.Sprintf("%s %s %v %v err=%v", x.Op, x.Device, x.Points, x.Writes, x.Err)
}

// fakeDev is one field device of fakePlugin.
type fakeDev struct {
	values   map[string]plugins.Value
	dead     bool              // every call times out
	silent   int               // the next this many calls time out
	afterRbt int               // silent calls after a reboot or reset
	inUse    string            // plugin-side in-use point
	firmware string            // reported by Identify
	fwAfter  string            // firmware after the next reboot
	writeErr map[string]string // per-point write refusals
	failNext map[string]error  // one-shot whole-call error per op
}

// fakePlugin is a plugins.Plugin over in-memory devices that logs every
// call and counts how many run at once.
type fakePlugin struct {
	mu      sync.Mutex
	devs    map[string]*fakeDev
	log     recorder[txn]
	gate    chan struct{} // when set, Write waits for a value on it
	entered recorder[string]

	inFlight, maxInFlight atomic.Int64
	now                   func() time.Time // reading timestamps
}

func newFakePlugin() *fakePlugin { return &fakePlugin{devs: make(map[string]*fakeDev), now: time.Now} }

func (f *fakePlugin) dev(id string) *fakeDev {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devs[id]
	if !ok {
		d = &fakeDev{values: make(map[string]plugins.Value), firmware: "1.0.0", writeErr: map[string]string{}, failNext: map[string]error{}}
		f.devs[id] = d
	}
	return d
}

// with runs fn on a device under the plugin's lock.
func (f *fakePlugin) with(id string, fn func(d *fakeDev)) {
	d := f.dev(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(d)
}

func (f *fakePlugin) set(id, point string, v any) {
	pv, err := valueFromJSON(v)
	if err != nil {
		panic(err)
	}
	f.with(id, func(d *fakeDev) { d.values[point] = pv })
}

// enter tracks concurrency and the device's liveness; the caller logs.
func (f *fakePlugin) enter(op, id string) (func(), error) {
	n := f.inFlight.Add(1)
	for m := f.maxInFlight.Load(); n > m && !f.maxInFlight.CompareAndSwap(m, n); m = f.maxInFlight.Load() {
	}
	leave := func() { f.inFlight.Add(-1) }
	d := f.dev(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := d.failNext[op]; ok {
		delete(d.failNext, op)
		return leave, err
	}
	if d.dead {
		return leave, plugins.Errorf(plugins.CodeTimeout, "device %s did not answer", id)
	}
	if d.silent > 0 {
		d.silent--
		return leave, plugins.Errorf(plugins.CodeTimeout, "device %s did not answer", id)
	}
	return leave, nil
}

func (f *fakePlugin) Describe(context.Context) (plugins.Description, error) {
	return plugins.Description{Name: "fake", Capabilities: []plugins.Capability{plugins.CapRead, plugins.CapWrite,
		plugins.CapIdentify, plugins.CapReboot, plugins.CapFactoryReset}}, nil
}
func (f *fakePlugin) ValidateBus(context.Context, json.RawMessage) ([]plugins.FieldError, error) {
	return nil, nil
}
func (f *fakePlugin) ValidateProfile(context.Context, json.RawMessage) ([]plugins.FieldError, error) {
	return nil, nil
}
func (f *fakePlugin) OpenBus(context.Context, plugins.BusConfig) error   { return nil }
func (f *fakePlugin) CloseBus(context.Context, string) error             { return nil }
func (f *fakePlugin) Attach(context.Context, plugins.DeviceConfig) error { return nil }
func (f *fakePlugin) Detach(context.Context, string) error               { return nil }
func (f *fakePlugin) Scan(context.Context, plugins.ScanRequest, func(plugins.ScanEvent)) error {
	return plugins.Errorf(plugins.CodeUnsupported, "scan")
}
func (f *fakePlugin) Flash(context.Context, plugins.FlashRequest, func(plugins.FlashEvent)) error {
	return plugins.Errorf(plugins.CodeUnsupported, "flash")
}

func (f *fakePlugin) Read(ctx context.Context, id string, points []string) ([]plugins.PointValue, error) {
	leave, err := f.enter("read", id)
	defer leave()
	defer func() { f.log.Add(txn{Op: "read", Device: id, Points: slices.Clone(points), Err: err}) }()
	if err != nil {
		return nil, err
	}
	d := f.dev(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]plugins.PointValue, 0, len(points))
	for _, p := range points {
		pv := plugins.PointValue{Point: p, Time: f.now()}
		if v, ok := d.values[p]; ok {
			pv.Value = v
		} else {
			pv.Quality, pv.Error = plugins.QualityBad, "no such register"
		}
		out = append(out, pv)
	}
	return out, nil
}

func (f *fakePlugin) Write(ctx context.Context, id string, values []plugins.PointWrite) ([]plugins.WriteResult, error) {
	f.entered.Add("write")
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	leave, err := f.enter("write", id)
	defer leave()
	defer func() { f.log.Add(txn{Op: "write", Device: id, Writes: slices.Clone(values), Err: err}) }()
	if err != nil {
		return nil, err
	}
	d := f.dev(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []plugins.WriteResult
	for _, w := range values {
		if msg, ok := d.writeErr[w.Point]; ok {
			out = append(out, plugins.WriteResult{Point: w.Point, Error: msg})
			continue
		}
		d.values[w.Point] = w.Value
		v := w.Value
		out = append(out, plugins.WriteResult{Point: w.Point, OK: true, ReadBack: &v})
	}
	return out, nil
}

func (f *fakePlugin) Identify(ctx context.Context, id string) (plugins.Identity, error) {
	leave, err := f.enter("identify", id)
	defer leave()
	defer func() { f.log.Add(txn{Op: "identify", Device: id, Err: err}) }()
	if err != nil {
		return plugins.Identity{}, err
	}
	d := f.dev(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	return plugins.Identity{Manufacturer: "Acme", Model: "pump", Serial: "SN-" + id, FirmwareVersion: d.firmware}, nil
}

func (f *fakePlugin) manage(op, id string, o plugins.ManageOptions) (err error) {
	leave, err := f.enter(op, id)
	defer leave()
	defer func() { f.log.Add(txn{Op: op, Device: id, Force: o.Force, Err: err}) }()
	if err != nil {
		return err
	}
	d := f.dev(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	if d.inUse != "" && !o.Force && d.values[d.inUse].Bool {
		return plugins.Errorf(plugins.CodeInUse, "%s is true", d.inUse)
	}
	d.silent = d.afterRbt
	if d.fwAfter != "" {
		d.firmware = d.fwAfter
	}
	return nil
}

func (f *fakePlugin) Reboot(ctx context.Context, id string, o plugins.ManageOptions) error {
	return f.manage("reboot", id, o)
}

func (f *fakePlugin) FactoryReset(ctx context.Context, id string, o plugins.ManageOptions) error {
	return f.manage("factory_reset", id, o)
}

// ops filters a transaction log.
func ops(log []txn, op, device string) []txn {
	var out []txn
	for _, x := range log {
		if (op == "" || x.Op == op) && (device == "" || x.Device == device) {
			out = append(out, x)
		}
	}
	return out
}

// event is one Sink call.
type event struct {
	Device    string
	Patch     map[string]any // Reported
	Telemetry map[string]any // Telemetry
	At        time.Time
}

func (e event) String() string {
	if e.Patch != nil {
		b, _ := json.Marshal(e.Patch)
		return e.Device + " reported " + string(b)
	}
	b, _ := json.Marshal(e.Telemetry)
	return e.Device + " telemetry " + string(b)
}

type recSink struct{ recorder[event] }

func (s *recSink) Reported(id string, patch map[string]any) {
	s.Add(event{Device: id, Patch: patch})
}
func (s *recSink) Telemetry(id string, values map[string]any, at time.Time) {
	s.Add(event{Device: id, Telemetry: maps.Clone(values), At: at})
}

// sections returns, in order, every reported value of one top-level key.
func sections(evs []event, device, key string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e.Device != device || e.Patch == nil {
			continue
		}
		if s, ok := e.Patch[key].(map[string]any); ok {
			out = append(out, s)
		}
	}
	return out
}

func telemetry(evs []event, device string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e.Device == device && e.Telemetry != nil {
			out = append(out, e.Telemetry)
		}
	}
	return out
}

// cycle is one finished poll cycle.
type cycle struct {
	Device string
	At     time.Time
}

// harness runs a Bridges over a fakePlugin on a fake clock.
type harness struct {
	t      *testing.T
	clk    *clock.Manual
	plug   *fakePlugin
	sink   *recSink
	b      *Bridges
	cycles *recorder[cycle]
}

func newHarness(t *testing.T, tweak func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, clk: clock.NewManual(start), plug: newFakePlugin(), sink: &recSink{}, cycles: &recorder[cycle]{}}
	h.plug.now = h.clk.Now
	opts := Options{
		Plugins: PluginMap(map[string]plugins.Plugin{"fake": h.plug}),
		Sink:    h.sink, Clock: h.clk,
		Breaker:     bus.Policy{Threshold: 2, BackoffMin: 4 * time.Second, BackoffMax: 32 * time.Second, Jitter: -1},
		DefaultPoll: 3 * time.Second, RebootProbe: time.Second, RebootTimeout: 5 * time.Second,
		DesiredRetry: 10 * time.Second,
	}
	if tweak != nil {
		tweak(&opts)
	}
	h.b = New(opts)
	h.b.cycleDone = func(id string, at time.Time) { h.cycles.Add(cycle{id, at}) }
	return h
}

func (h *harness) add(spec DeviceSpec) {
	h.t.Helper()
	if err := h.b.Add(context.Background(), spec, "fake"); err != nil {
		h.t.Fatalf("Add %s: %v", spec.ID, err)
	}
}

// run starts Run; the test's cleanup stops it and checks it returned.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.b.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
}

// awaitCycle waits until device finished the poll cycle due at at.
func (h *harness) awaitCycle(device string, at time.Time) {
	h.t.Helper()
	h.cycles.Await(h.t, waitLimit, fmt.Sprintf("cycle of %s at +%v", device, at.Sub(start)), func(cs []cycle) bool {
		return slices.Contains(cs, cycle{device, at})
	})
}

// tick advances the clock by d and waits for every device's cycle then.
func (h *harness) tick(d time.Duration, devices ...string) time.Time {
	h.t.Helper()
	h.clk.Advance(d)
	now := h.clk.Now()
	for _, id := range devices {
		h.awaitCycle(id, now)
	}
	return now
}

func (h *harness) invoke(device, method, payload string) (int, map[string]any) {
	h.t.Helper()
	var raw json.RawMessage
	if payload != "" {
		raw = json.RawMessage(payload)
	}
	st, body := h.b.Invoke(context.Background(), device, method, raw)
	m, ok := body.(map[string]any)
	if !ok {
		h.t.Fatalf("Invoke %s %s: body %T, want a map", device, method, body)
	}
	// Every response must encode as JSON.
	if _, err := json.Marshal(m); err != nil {
		h.t.Fatalf("Invoke %s %s: body does not encode: %v", device, method, err)
	}
	return st, m
}
