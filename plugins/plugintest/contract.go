package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Fixture tells RunContract what a plugin under test can safely be asked.
// Bus, Device and Points are required; the rest is optional and the
// subtests that need it are skipped when it is missing.
type Fixture struct {
	Bus    plugins.BusConfig    // a bus that opens
	Device plugins.DeviceConfig // a device on Bus that answers
	Points []string             // points of Device that read with good quality

	Writes     []plugins.PointWrite  // values safe to write to Device; each must succeed
	BadBus     json.RawMessage       // a bus entry ValidateBus must find fault with
	BadProfile json.RawMessage       // a profile ValidateProfile must find fault with
	Scan       *plugins.ScanRequest  // a range on Bus that includes Device.Address (Bus may be empty)
	Manage     bool                  // Reboot and FactoryReset (forced) are safe on Device
	Flash      *plugins.FlashRequest // a flash of Device that succeeds (DeviceID may be empty)

	Timeout time.Duration // per-call deadline; default 10s
}

// garbage is configuration no plugin may accept or panic on.
var garbage = []struct {
	name string
	raw  json.RawMessage
}{
	{"not json", json.RawMessage(`not json`)},
	{"truncated", json.RawMessage(`{"name":`)},
	{"array", json.RawMessage(`[1,2,3]`)},
	{"string", json.RawMessage(`"rs485"`)},
	{"number", json.RawMessage(`42`)},
	{"binary", json.RawMessage("\x00\xff\xfe")},
}

// RunContract runs the contract every plugin must honour against the
// plugins newPlugin returns: one fresh plugin per subtest, so a subtest
// cannot depend on another. Run it through plugintest.Connect (in-process
// gRPC) and through a real child process (host.Start) so both the plugin
// and the boundary are covered.
//
// Beyond the happy path of every RPC it checks the error codes the host
// relies on: CodeInvalid for garbage configuration, CodeNotFound for
// unknown buses and devices, CodeUnsupported for undeclared capabilities,
// and CodeTimeout for a call cut by the caller's deadline.
func RunContract(t *testing.T, newPlugin func(t *testing.T) plugins.Plugin, fx Fixture) {
	t.Helper()
	if fx.Timeout <= 0 {
		fx.Timeout = 10 * time.Second
	}
	c := &contract{fx: fx, newPlugin: newPlugin}
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"describe", c.describe},
		{"validate_bus", c.validateBus},
		{"validate_profile", c.validateProfile},
		{"open_bus", c.openBus},
		{"attach", c.attach},
		{"read", c.read},
		{"write", c.write},
		{"identify", c.identify},
		{"scan", c.scan},
		{"scan_cancel", c.scanCancel},
		{"manage", c.manage},
		{"flash", c.flash},
		{"unsupported", c.unsupported},
		{"deadline", c.deadline},
		{"detach_close", c.detachClose},
		{"concurrent_reads", c.concurrentReads},
	} {
		t.Run(tc.name, tc.run)
	}
}

type contract struct {
	fx        Fixture
	newPlugin func(t *testing.T) plugins.Plugin
}

func (c *contract) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), c.fx.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// fresh returns a new plugin and its description.
func (c *contract) fresh(t *testing.T) (plugins.Plugin, plugins.Description) {
	t.Helper()
	p := c.newPlugin(t)
	d, err := p.Describe(c.ctx(t))
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	return p, d
}

// attached returns a fresh plugin with the fixture bus open and device
// attached.
func (c *contract) attached(t *testing.T) (plugins.Plugin, plugins.Description) {
	t.Helper()
	p, d := c.fresh(t)
	if err := p.OpenBus(c.ctx(t), c.fx.Bus); err != nil {
		t.Fatalf("OpenBus(%s): %v", c.fx.Bus.Name, err)
	}
	if err := p.Attach(c.ctx(t), c.fx.Device); err != nil {
		t.Fatalf("Attach(%s): %v", c.fx.Device.ID, err)
	}
	return p, d
}

func has(d plugins.Description, c plugins.Capability) bool { return slices.Contains(d.Capabilities, c) }

func wantCode(t *testing.T, what string, err error, codes ...plugins.Code) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error, want code %v", what, codes)
		return
	}
	if got := plugins.CodeOf(err); !slices.Contains(codes, got) {
		t.Errorf("%s: got code %v (%v), want %v", what, got, err, codes)
	}
}

var knownCaps = []plugins.Capability{plugins.CapRead, plugins.CapWrite, plugins.CapIdentify, plugins.CapScan,
	plugins.CapReboot, plugins.CapFactoryReset, plugins.CapFlash}

func (c *contract) describe(t *testing.T) {
	_, d := c.fresh(t)
	if d.Name == "" {
		t.Error("Describe: empty name")
	}
	if d.Version == "" {
		t.Error("Describe: empty version")
	}
	seen := map[plugins.Capability]bool{}
	for _, cp := range d.Capabilities {
		if !slices.Contains(knownCaps, cp) {
			t.Errorf("Describe: unknown capability %q", cp)
		}
		if seen[cp] {
			t.Errorf("Describe: capability %q listed twice", cp)
		}
		seen[cp] = true
	}
}

// validate checks one Validate* method on good, bad and garbage input.
func (c *contract) validate(t *testing.T, fn func(context.Context, json.RawMessage) ([]plugins.FieldError, error),
	good, bad json.RawMessage) {
	t.Run("good", func(t *testing.T) {
		fes, err := fn(c.ctx(t), good)
		if err != nil || len(fes) != 0 {
			t.Errorf("validate %s: got %v, %v; want no problems", good, fes, err)
		}
	})
	if bad != nil {
		t.Run("bad", func(t *testing.T) {
			fes, err := fn(c.ctx(t), bad)
			if err != nil {
				t.Fatalf("validate %s: %v; want field errors", bad, err)
			}
			if len(fes) == 0 {
				t.Errorf("validate %s: no field errors", bad)
			}
			for _, fe := range fes {
				if fe.Message == "" {
					t.Errorf("validate %s: field error %q without message", bad, fe.Path)
				}
			}
		})
	}
	for _, g := range garbage {
		t.Run("garbage/"+g.name, func(t *testing.T) {
			fes, err := fn(c.ctx(t), g.raw)
			if err != nil {
				wantCode(t, "validate "+g.name, err, plugins.CodeInvalid)
				return
			}
			if len(fes) == 0 {
				t.Errorf("validate %q: accepted", g.raw)
			}
		})
	}
}

func (c *contract) validateBus(t *testing.T) {
	p := c.newPlugin(t)
	c.validate(t, p.ValidateBus, c.fx.Bus.Config, c.fx.BadBus)
}

func (c *contract) validateProfile(t *testing.T) {
	p := c.newPlugin(t)
	c.validate(t, p.ValidateProfile, c.fx.Device.Profile, c.fx.BadProfile)
}

func (c *contract) openBus(t *testing.T) {
	p, _ := c.fresh(t)
	for _, g := range garbage {
		err := p.OpenBus(c.ctx(t), plugins.BusConfig{Name: c.fx.Bus.Name, Config: g.raw})
		wantCode(t, "OpenBus with "+g.name+" config", err, plugins.CodeInvalid)
	}
	if err := p.OpenBus(c.ctx(t), c.fx.Bus); err != nil {
		t.Fatalf("OpenBus: %v", err)
	}
	if err := p.OpenBus(c.ctx(t), c.fx.Bus); err != nil {
		t.Errorf("OpenBus again (reopen): %v", err)
	}
}

func (c *contract) attach(t *testing.T) {
	p, _ := c.fresh(t)
	dev := c.fx.Device
	dev.Bus = "no-such-bus"
	wantCode(t, "Attach on unknown bus", p.Attach(c.ctx(t), dev), plugins.CodeNotFound, plugins.CodeInvalid)

	if err := p.OpenBus(c.ctx(t), c.fx.Bus); err != nil {
		t.Fatalf("OpenBus: %v", err)
	}
	for _, g := range garbage {
		dev := c.fx.Device
		dev.Profile = g.raw
		wantCode(t, "Attach with "+g.name+" profile", p.Attach(c.ctx(t), dev), plugins.CodeInvalid)
	}
	if err := p.Attach(c.ctx(t), c.fx.Device); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if err := p.Attach(c.ctx(t), c.fx.Device); err != nil {
		t.Errorf("Attach again (replace): %v", err)
	}
}

func (c *contract) read(t *testing.T) {
	p, d := c.attached(t)
	if !has(d, plugins.CapRead) {
		t.Skip("plugin does not read")
	}
	vs, err := p.Read(c.ctx(t), c.fx.Device.ID, c.fx.Points)
	if err != nil {
		t.Fatalf("Read(%v): %v", c.fx.Points, err)
	}
	if len(vs) != len(c.fx.Points) {
		t.Fatalf("Read(%v): %d values", c.fx.Points, len(vs))
	}
	for i, v := range vs {
		if v.Point != c.fx.Points[i] {
			t.Errorf("Read: value %d is %q, want %q", i, v.Point, c.fx.Points[i])
		}
		if v.Quality != plugins.QualityGood || v.Value.Kind == plugins.KindNone {
			t.Errorf("Read %s: quality %v kind %v error %q", v.Point, v.Quality, v.Value.Kind, v.Error)
		}
		if v.Time.IsZero() {
			t.Errorf("Read %s: no timestamp", v.Point)
		}
	}
	_, err = p.Read(c.ctx(t), "no-such-device", c.fx.Points)
	wantCode(t, "Read unknown device", err, plugins.CodeNotFound)

	vs, err = p.Read(c.ctx(t), c.fx.Device.ID, []string{"no-such-point"})
	if err != nil {
		wantCode(t, "Read unknown point", err, plugins.CodeNotFound, plugins.CodeInvalid)
	} else if len(vs) != 1 || vs[0].Quality == plugins.QualityGood {
		t.Errorf("Read unknown point: got %+v, want an error or one bad value", vs)
	}
}

func (c *contract) write(t *testing.T) {
	p, d := c.attached(t)
	if !has(d, plugins.CapWrite) || len(c.fx.Writes) == 0 {
		t.Skip("plugin does not write or fixture has no writes")
	}
	rs, err := p.Write(c.ctx(t), c.fx.Device.ID, c.fx.Writes)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if len(rs) != len(c.fx.Writes) {
		t.Fatalf("Write: %d results for %d values", len(rs), len(c.fx.Writes))
	}
	for i, r := range rs {
		if r.Point != c.fx.Writes[i].Point || !r.OK {
			t.Errorf("Write %s: %+v", c.fx.Writes[i].Point, r)
		}
		if r.ReadBack != nil && *r.ReadBack != c.fx.Writes[i].Value {
			t.Errorf("Write %s: read back %+v, wrote %+v", r.Point, *r.ReadBack, c.fx.Writes[i].Value)
		}
	}
	_, err = p.Write(c.ctx(t), "no-such-device", c.fx.Writes)
	wantCode(t, "Write unknown device", err, plugins.CodeNotFound)
}

func (c *contract) identify(t *testing.T) {
	p, d := c.attached(t)
	if !has(d, plugins.CapIdentify) {
		t.Skip("plugin does not identify")
	}
	id, err := p.Identify(c.ctx(t), c.fx.Device.ID)
	if err != nil {
		t.Fatalf("Identify: %v", err)
	}
	if id.Manufacturer == "" && id.Model == "" && id.Serial == "" && id.FirmwareVersion == "" {
		t.Errorf("Identify: empty identity")
	}
	_, err = p.Identify(c.ctx(t), "no-such-device")
	wantCode(t, "Identify unknown device", err, plugins.CodeNotFound)
}

func (c *contract) scanRequest(t *testing.T, d plugins.Description) plugins.ScanRequest {
	if !has(d, plugins.CapScan) || c.fx.Scan == nil {
		t.Skip("plugin does not scan or fixture has no scan")
	}
	req := *c.fx.Scan
	if req.Bus == "" {
		req.Bus = c.fx.Bus.Name
	}
	return req
}

func (c *contract) scan(t *testing.T) {
	p, d := c.attached(t)
	req := c.scanRequest(t, d)
	var evs []plugins.ScanEvent
	if err := p.Scan(c.ctx(t), req, func(ev plugins.ScanEvent) { evs = append(evs, ev) }); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	found := false
	for i, ev := range evs {
		if ev.Address < req.From || ev.Address > req.To {
			t.Errorf("Scan: event for address %d outside %d..%d", ev.Address, req.From, req.To)
		}
		if i > 0 && ev.Address <= evs[i-1].Address {
			t.Errorf("Scan: address %d after %d", ev.Address, evs[i-1].Address)
		}
		if ev.Address == c.fx.Device.Address && ev.Found {
			found = true
		}
	}
	if !found {
		t.Errorf("Scan %d..%d: device at %d not found in %+v", req.From, req.To, c.fx.Device.Address, evs)
	}
	bad := req
	bad.Bus = "no-such-bus"
	wantCode(t, "Scan unknown bus", p.Scan(c.ctx(t), bad, nil), plugins.CodeNotFound)
}

// scanCancel cancels a scan from its first progress event. The interval
// between probes is a minute, so Scan can only end in time by honouring the
// cancellation; the plugin must then serve the next call at once (it must
// not keep the bus busy with the abandoned scan).
func (c *contract) scanCancel(t *testing.T) {
	p, d := c.attached(t)
	req := c.scanRequest(t, d)
	if req.To == req.From {
		t.Skip("scan range has one address")
	}
	req.Interval = time.Minute
	ctx, cancel := context.WithCancel(c.ctx(t))
	defer cancel()
	if err := p.Scan(ctx, req, func(plugins.ScanEvent) { cancel() }); err == nil {
		t.Error("Scan returned no error after its context was cancelled")
	}
	if has(d, plugins.CapRead) {
		if _, err := p.Read(c.ctx(t), c.fx.Device.ID, c.fx.Points); err != nil {
			t.Errorf("Read after a cancelled scan: %v", err)
		}
	}
}

func (c *contract) manage(t *testing.T) {
	p, d := c.attached(t)
	if !c.fx.Manage {
		t.Skip("fixture does not allow management")
	}
	force := plugins.ManageOptions{Force: true}
	for _, op := range []struct {
		cap plugins.Capability
		fn  func(context.Context, string, plugins.ManageOptions) error
	}{
		{plugins.CapReboot, p.Reboot},
		{plugins.CapFactoryReset, p.FactoryReset},
	} {
		if !has(d, op.cap) {
			continue
		}
		if err := op.fn(c.ctx(t), c.fx.Device.ID, force); err != nil {
			t.Errorf("%s: %v", op.cap, err)
		}
		wantCode(t, string(op.cap)+" unknown device", op.fn(c.ctx(t), "no-such-device", force), plugins.CodeNotFound)
	}
}

func (c *contract) flash(t *testing.T) {
	p, d := c.attached(t)
	if !has(d, plugins.CapFlash) || c.fx.Flash == nil {
		t.Skip("plugin does not flash or fixture has no flash")
	}
	req := *c.fx.Flash
	if req.DeviceID == "" {
		req.DeviceID = c.fx.Device.ID
	}
	var evs []plugins.FlashEvent
	if err := p.Flash(c.ctx(t), req, func(ev plugins.FlashEvent) { evs = append(evs, ev) }); err != nil {
		t.Fatalf("Flash: %v", err)
	}
	if len(evs) == 0 || evs[len(evs)-1].Phase != "done" {
		t.Fatalf("Flash: events %+v, want the last to be done", evs)
	}
	var last int64 = -1
	for _, ev := range evs {
		if ev.Phase == "uploading" {
			if ev.Done < last || (ev.Total > 0 && ev.Done > ev.Total) {
				t.Errorf("Flash: upload progress %d/%d after %d", ev.Done, ev.Total, last)
			}
			last = ev.Done
		}
	}
	bad := req
	bad.DeviceID = "no-such-device"
	wantCode(t, "Flash unknown device", p.Flash(c.ctx(t), bad, nil), plugins.CodeNotFound)
	bad = req
	bad.ImagePath = "/no/such/image.bin"
	wantCode(t, "Flash missing image", p.Flash(c.ctx(t), bad, nil), plugins.CodeInvalid, plugins.CodeNotFound)
}

// unsupported calls every operation the plugin does not declare.
func (c *contract) unsupported(t *testing.T) {
	p, d := c.attached(t)
	id := c.fx.Device.ID
	calls := map[plugins.Capability]func(ctx context.Context) error{
		plugins.CapRead: func(ctx context.Context) error { _, err := p.Read(ctx, id, c.fx.Points); return err },
		plugins.CapWrite: func(ctx context.Context) error {
			_, err := p.Write(ctx, id, []plugins.PointWrite{{Point: c.fx.Points[0]}})
			return err
		},
		plugins.CapIdentify: func(ctx context.Context) error { _, err := p.Identify(ctx, id); return err },
		plugins.CapScan: func(ctx context.Context) error {
			return p.Scan(ctx, plugins.ScanRequest{Bus: c.fx.Bus.Name, From: 1, To: 1}, nil)
		},
		plugins.CapReboot:       func(ctx context.Context) error { return p.Reboot(ctx, id, plugins.ManageOptions{}) },
		plugins.CapFactoryReset: func(ctx context.Context) error { return p.FactoryReset(ctx, id, plugins.ManageOptions{}) },
		plugins.CapFlash: func(ctx context.Context) error {
			return p.Flash(ctx, plugins.FlashRequest{DeviceID: id, ImagePath: "/no/such/image.bin"}, nil)
		},
	}
	n := 0
	for _, cp := range knownCaps {
		if has(d, cp) {
			continue
		}
		n++
		wantCode(t, string(cp)+" (not declared)", calls[cp](c.ctx(t)), plugins.CodeUnsupported)
	}
	if n == 0 {
		t.Skip("plugin declares every capability")
	}
}

// deadline checks that a call whose deadline has passed fails as a timeout.
func (c *contract) deadline(t *testing.T) {
	p, _ := c.attached(t)
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := p.Read(ctx, c.fx.Device.ID, c.fx.Points)
	if err == nil {
		t.Fatal("Read with an expired deadline succeeded")
	}
	if plugins.CodeOf(err) != plugins.CodeTimeout && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Read with an expired deadline: %v (code %v), want a timeout", err, plugins.CodeOf(err))
	}
}

func (c *contract) detachClose(t *testing.T) {
	p, d := c.attached(t)
	if err := p.Detach(c.ctx(t), c.fx.Device.ID); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if has(d, plugins.CapRead) {
		_, err := p.Read(c.ctx(t), c.fx.Device.ID, c.fx.Points)
		wantCode(t, "Read after Detach", err, plugins.CodeNotFound)
	}
	wantCode(t, "Detach again", p.Detach(c.ctx(t), c.fx.Device.ID), plugins.CodeNotFound)
	if err := p.CloseBus(c.ctx(t), c.fx.Bus.Name); err != nil {
		t.Fatalf("CloseBus: %v", err)
	}
	wantCode(t, "CloseBus again", p.CloseBus(c.ctx(t), c.fx.Bus.Name), plugins.CodeNotFound)
	wantCode(t, "Attach on closed bus", p.Attach(c.ctx(t), c.fx.Device), plugins.CodeNotFound, plugins.CodeInvalid)
}

// concurrentReads reads from several goroutines at once: a plugin must
// serialise bus access itself.
func (c *contract) concurrentReads(t *testing.T) {
	p, d := c.attached(t)
	if !has(d, plugins.CapRead) {
		t.Skip("plugin does not read")
	}
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := p.Read(c.ctx(t), c.fx.Device.ID, c.fx.Points)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Read: %v", err)
		}
	}
}
