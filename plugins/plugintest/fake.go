package plugintest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Fake is an in-memory plugins.Plugin: buses are names, devices hold their
// point values in memory, and faults can be scripted (Arm, or a Write to
// FaultPoint). It stands in for a field device in supervisor and bridge
// tests, and cmd fakeplugin serves it as a real plugin process.
//
// Its device profile is a JSON object:
//
//	{"points": {"temperature": 21.5, "running": false, "label": "x", "count": 7},
//	 "in_use": "running", "firmware": "1.0.0", "model": "fake-pump", "read_back": true}
//
// Numbers with a fraction or exponent are floats, others ints. Its bus entry
// accepts the keys name, plugin and mode.
type Fake struct {
	// Name and Version are what Describe reports.
	Name, Version string
	// Caps are the declared capabilities; operations outside them return
	// CodeUnsupported. Nil means all.
	Caps []plugins.Capability
	// Exit ends the process for FaultCrash. Default os.Exit.
	Exit func(code int)
	// Hang is called for FaultHang; the call then waits for its ctx.
	// Default: nothing, so only that call blocks. The fakeplugin binary
	// stops its whole process here.
	Hang func()
	// Log receives the Fake's own records. Default: discard.
	Log *slog.Logger

	mu      sync.Mutex
	buses   map[string]json.RawMessage
	devices map[string]*fakeDevice
	faults  map[string][]Fault
}

type fakeDevice struct {
	cfg      plugins.DeviceConfig
	profile  fakeProfile
	points   map[string]plugins.Value
	firmware string
}

type fakeProfile struct {
	Points   map[string]json.RawMessage `json:"points"`
	InUse    string                     `json:"in_use"`
	Firmware string                     `json:"firmware"`
	Model    string                     `json:"model"`
	ReadBack bool                       `json:"read_back"`
}

var fakeProfileKeys = []string{"name", "plugin", "points", "in_use", "firmware", "model", "read_back"}
var fakeBusKeys = []string{"name", "plugin", "mode"}

var _ plugins.Plugin = (*Fake)(nil)

// NewFake returns a Fake named "fake" with every capability.
func NewFake() *Fake {
	return &Fake{Name: "fake", Version: "0.1.0"}
}

func (f *Fake) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Describe implements plugins.Plugin.
func (f *Fake) Describe(ctx context.Context) (plugins.Description, error) {
	if err := f.enter(ctx, "describe", ""); err != nil {
		return plugins.Description{}, err
	}
	caps := f.Caps
	if caps == nil {
		caps = []plugins.Capability{plugins.CapRead, plugins.CapWrite, plugins.CapIdentify, plugins.CapScan,
			plugins.CapReboot, plugins.CapFactoryReset, plugins.CapFlash}
	}
	return plugins.Description{
		Name: f.Name, Version: f.Version, Capabilities: caps,
		BusKeys: fakeBusKeys[2:], ProfileKeys: fakeProfileKeys[2:],
	}, nil
}

func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object: null")
	}
	return m, nil
}

func unknownKeys(m map[string]json.RawMessage, allowed []string) []plugins.FieldError {
	var fes []plugins.FieldError
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(allowed, k) {
			fes = append(fes, plugins.FieldError{Path: k, Message: "unknown key"})
		}
	}
	return fes
}

// ValidateBus implements plugins.Plugin.
func (f *Fake) ValidateBus(ctx context.Context, bus json.RawMessage) ([]plugins.FieldError, error) {
	if err := f.enter(ctx, "validate_bus", ""); err != nil {
		return nil, err
	}
	m, err := decodeObject(bus)
	if err != nil {
		return []plugins.FieldError{{Path: "", Message: err.Error()}}, nil
	}
	return unknownKeys(m, fakeBusKeys), nil
}

// ValidateProfile implements plugins.Plugin.
func (f *Fake) ValidateProfile(ctx context.Context, profile json.RawMessage) ([]plugins.FieldError, error) {
	if err := f.enter(ctx, "validate_profile", ""); err != nil {
		return nil, err
	}
	_, _, fes := parseProfile(profile)
	return fes, nil
}

// parseProfile decodes and checks a profile; fes lists every problem.
func parseProfile(raw json.RawMessage) (fakeProfile, map[string]plugins.Value, []plugins.FieldError) {
	m, err := decodeObject(raw)
	if err != nil {
		return fakeProfile{}, nil, []plugins.FieldError{{Path: "", Message: err.Error()}}
	}
	fes := unknownKeys(m, fakeProfileKeys)
	var p fakeProfile
	points := make(map[string]plugins.Value)
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, nil, append(fes, plugins.FieldError{Path: "", Message: err.Error()})
	}
	for _, name := range slices.Sorted(maps.Keys(p.Points)) {
		v, err := parseValue(p.Points[name])
		if err != nil {
			fes = append(fes, plugins.FieldError{Path: "points." + name, Message: err.Error()})
			continue
		}
		points[name] = v
	}
	if p.InUse != "" {
		if v, ok := points[p.InUse]; !ok || v.Kind != plugins.KindBool {
			fes = append(fes, plugins.FieldError{Path: "in_use", Message: "must name a bool point"})
		}
	}
	return p, points, fes
}

func parseValue(raw json.RawMessage) (plugins.Value, error) {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return plugins.Value{}, fmt.Errorf("bad value: %w", err)
	}
	switch x := v.(type) {
	case bool:
		return plugins.Value{Kind: plugins.KindBool, Bool: x}, nil
	case string:
		return plugins.Value{Kind: plugins.KindString, String: x}, nil
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return plugins.Value{Kind: plugins.KindInt, Int: i}, nil
		}
		fl, err := x.Float64()
		if err != nil {
			return plugins.Value{}, fmt.Errorf("bad number %s: %w", x, err)
		}
		return plugins.Value{Kind: plugins.KindFloat, Float: fl}, nil
	}
	return plugins.Value{}, fmt.Errorf("want a bool, number or string")
}

// OpenBus implements plugins.Plugin.
func (f *Fake) OpenBus(ctx context.Context, bus plugins.BusConfig) error {
	if err := f.enter(ctx, "open_bus", ""); err != nil {
		return err
	}
	if bus.Name == "" {
		return plugins.Errorf(plugins.CodeInvalid, "bus name is empty")
	}
	if bus.Config != nil {
		m, err := decodeObject(bus.Config)
		if err != nil {
			return plugins.Errorf(plugins.CodeInvalid, "bus %s: %v", bus.Name, err)
		}
		if fes := unknownKeys(m, fakeBusKeys); len(fes) > 0 {
			return plugins.Errorf(plugins.CodeInvalid, "bus %s: %s: %s", bus.Name, fes[0].Path, fes[0].Message)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buses == nil {
		f.buses = make(map[string]json.RawMessage)
	}
	f.buses[bus.Name] = bus.Config
	f.log().Info("bus opened", "bus", bus.Name)
	return nil
}

// CloseBus implements plugins.Plugin. Devices on the bus stay attached but
// fail with CodeUnavailable until it is opened again.
func (f *Fake) CloseBus(ctx context.Context, name string) error {
	if err := f.enter(ctx, "close_bus", ""); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.buses[name]; !ok {
		return plugins.Errorf(plugins.CodeNotFound, "bus %q is not open", name)
	}
	delete(f.buses, name)
	f.log().Info("bus closed", "bus", name)
	return nil
}

// Attach implements plugins.Plugin. Attaching an attached id replaces it.
func (f *Fake) Attach(ctx context.Context, dev plugins.DeviceConfig) error {
	if err := f.enter(ctx, "attach", ""); err != nil {
		return err
	}
	if dev.ID == "" {
		return plugins.Errorf(plugins.CodeInvalid, "device id is empty")
	}
	p, points, fes := parseProfile(dev.Profile)
	if len(fes) > 0 {
		return plugins.Errorf(plugins.CodeInvalid, "device %s: profile: %s: %s", dev.ID, fes[0].Path, fes[0].Message)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.buses[dev.Bus]; !ok {
		return plugins.Errorf(plugins.CodeNotFound, "device %s: bus %q is not open", dev.ID, dev.Bus)
	}
	if f.devices == nil {
		f.devices = make(map[string]*fakeDevice)
	}
	fw := p.Firmware
	if fw == "" {
		fw = "1.0.0"
	}
	f.devices[dev.ID] = &fakeDevice{cfg: dev, profile: p, points: points, firmware: fw}
	f.log().Info("device attached", "device", dev.ID, "bus", dev.Bus, "address", dev.Address)
	return nil
}

// Detach implements plugins.Plugin.
func (f *Fake) Detach(ctx context.Context, deviceID string) error {
	if err := f.enter(ctx, "detach", ""); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devices[deviceID]; !ok {
		return plugins.Errorf(plugins.CodeNotFound, "device %q is not attached", deviceID)
	}
	delete(f.devices, deviceID)
	return nil
}

// device returns an attached device on an open bus; the caller holds f.mu.
func (f *Fake) device(id string) (*fakeDevice, error) {
	d, ok := f.devices[id]
	if !ok {
		return nil, plugins.Errorf(plugins.CodeNotFound, "device %q is not attached", id)
	}
	if _, ok := f.buses[d.cfg.Bus]; !ok {
		return nil, plugins.Errorf(plugins.CodeUnavailable, "device %s: bus %q is closed", id, d.cfg.Bus)
	}
	return d, nil
}

// Read implements plugins.Plugin. No points means all, sorted by name.
func (f *Fake) Read(ctx context.Context, deviceID string, points []string) ([]plugins.PointValue, error) {
	if err := f.enter(ctx, "read", plugins.CapRead); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.device(deviceID)
	if err != nil {
		return nil, err
	}
	if len(points) == 0 {
		points = slices.Sorted(maps.Keys(d.points))
	}
	now := time.Now()
	out := make([]plugins.PointValue, 0, len(points))
	for _, name := range points {
		pv := plugins.PointValue{Point: name, Time: now}
		if v, ok := d.points[name]; ok {
			pv.Value = v
		} else {
			pv.Quality, pv.Error = plugins.QualityBad, "unknown point"
		}
		out = append(out, pv)
	}
	return out, nil
}

// Write implements plugins.Plugin. A value must have the kind of the
// point's current value. Values for FaultPoint arm faults instead.
func (f *Fake) Write(ctx context.Context, deviceID string, values []plugins.PointWrite) ([]plugins.WriteResult, error) {
	if err := f.enter(ctx, "write", ""); err != nil {
		return nil, err
	}
	out, rest, err := f.armFaults(values)
	if err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		return out, nil
	}
	if f.Caps != nil && !slices.Contains(f.Caps, plugins.CapWrite) {
		return nil, plugins.Errorf(plugins.CodeUnsupported, "write is not supported")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.device(deviceID)
	if err != nil {
		return nil, err
	}
	for _, w := range rest {
		r := plugins.WriteResult{Point: w.Point}
		cur, ok := d.points[w.Point]
		switch {
		case !ok:
			r.Error = "unknown point"
		case cur.Kind != w.Value.Kind:
			r.Error = "type mismatch"
		default:
			d.points[w.Point] = w.Value
			r.OK = true
			if d.profile.ReadBack {
				v := w.Value
				r.ReadBack = &v
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// Identify implements plugins.Plugin.
func (f *Fake) Identify(ctx context.Context, deviceID string) (plugins.Identity, error) {
	if err := f.enter(ctx, "identify", plugins.CapIdentify); err != nil {
		return plugins.Identity{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.device(deviceID)
	if err != nil {
		return plugins.Identity{}, err
	}
	return d.identity(), nil
}

func (d *fakeDevice) identity() plugins.Identity {
	model := d.profile.Model
	if model == "" {
		model = "fake"
	}
	return plugins.Identity{
		Manufacturer: "Drover", Model: model,
		Serial:          fmt.Sprintf("FAKE-%s-%d", d.cfg.Bus, d.cfg.Address),
		FirmwareVersion: d.firmware,
	}
}

// Scan implements plugins.Plugin: an address is found when a device is
// attached there. It waits Interval between probes.
func (f *Fake) Scan(ctx context.Context, req plugins.ScanRequest, progress func(plugins.ScanEvent)) error {
	if err := f.enter(ctx, "scan", plugins.CapScan); err != nil {
		return err
	}
	if req.From < 0 || req.To < req.From {
		return plugins.Errorf(plugins.CodeInvalid, "scan range %d..%d", req.From, req.To)
	}
	f.mu.Lock()
	_, open := f.buses[req.Bus]
	f.mu.Unlock()
	if !open {
		return plugins.Errorf(plugins.CodeNotFound, "bus %q is not open", req.Bus)
	}
	for a := req.From; a <= req.To; a++ {
		if a > req.From {
			if err := sleep(ctx, req.Interval); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		ev := plugins.ScanEvent{Address: a}
		f.mu.Lock()
		for _, d := range f.devices {
			if d.cfg.Bus == req.Bus && d.cfg.Address == a {
				id := d.identity()
				ev.Found, ev.Identity = true, &id
				break
			}
		}
		f.mu.Unlock()
		if progress != nil {
			progress(ev)
		}
	}
	return nil
}

// manage runs the fault and in-use checks of Reboot and FactoryReset and
// then apply on the device, under f.mu.
func (f *Fake) manage(ctx context.Context, op string, cap plugins.Capability, deviceID string,
	opts plugins.ManageOptions, apply func(*fakeDevice)) error {
	if err := f.enter(ctx, op, cap); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.device(deviceID)
	if err != nil {
		return err
	}
	if p := d.profile.InUse; p != "" && !opts.Force && d.points[p].Bool {
		return plugins.Errorf(plugins.CodeInUse, "device %s is in use (%s is true)", deviceID, p)
	}
	apply(d)
	return nil
}

// Reboot implements plugins.Plugin, honouring the profile's in_use point.
func (f *Fake) Reboot(ctx context.Context, deviceID string, opts plugins.ManageOptions) error {
	return f.manage(ctx, "reboot", plugins.CapReboot, deviceID, opts, func(*fakeDevice) {})
}

// FactoryReset implements plugins.Plugin: points return to the profile's
// values.
func (f *Fake) FactoryReset(ctx context.Context, deviceID string, opts plugins.ManageOptions) error {
	return f.manage(ctx, "factory_reset", plugins.CapFactoryReset, deviceID, opts, func(d *fakeDevice) {
		_, d.points, _ = parseProfile(d.cfg.Profile)
	})
}

// Flash implements plugins.Plugin: it reports the upload of the image file
// from ResumeOffset, then the phases after it, without a device behind it.
func (f *Fake) Flash(ctx context.Context, req plugins.FlashRequest, progress func(plugins.FlashEvent)) error {
	if err := f.enter(ctx, "flash", plugins.CapFlash); err != nil {
		return err
	}
	if progress == nil {
		progress = func(plugins.FlashEvent) {}
	}
	f.mu.Lock()
	_, err := f.device(req.DeviceID)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	fi, err := os.Stat(req.ImagePath)
	if err != nil {
		return plugins.Errorf(plugins.CodeInvalid, "flash %s: image: %v", req.DeviceID, err)
	}
	total := fi.Size()
	if req.ResumeOffset < 0 || req.ResumeOffset > total {
		return plugins.Errorf(plugins.CodeInvalid, "flash %s: resume offset %d outside 0..%d", req.DeviceID, req.ResumeOffset, total)
	}
	progress(plugins.FlashEvent{Phase: "uploading", Done: req.ResumeOffset, Total: total})
	for _, phase := range []string{"uploading", "verifying", "applying", "rebooting", "confirming", "done"} {
		if err := ctx.Err(); err != nil {
			return err
		}
		progress(plugins.FlashEvent{Phase: phase, Done: total, Total: total})
	}
	return nil
}
