package modbus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-iot/drover/internal/version"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

const pluginName = "modbus"

// Driver implements plugins.Plugin for Modbus TCP, RTU and ASCII. It is safe
// for concurrent use: each bus runs one transaction at a time, and each
// device one operation at a time.
type Driver struct {
	log        *slog.Logger
	now        func() time.Time
	openSerial serialOpener

	mu      sync.RWMutex
	buses   map[string]*busEntry
	devices map[string]*device
}

var _ plugins.Plugin = (*Driver)(nil)

// Options configure a Driver.
type Options struct {
	Log *slog.Logger     // default: discard
	Now func() time.Time // clock for reading timestamps; default time.Now
}

// New returns a Driver with no open buses.
func New(opts Options) *Driver {
	d := &Driver{log: opts.Log, now: opts.Now, openSerial: openTarm,
		buses: map[string]*busEntry{}, devices: map[string]*device{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

type busEntry struct {
	name string
	cfg  *Bus
	link link
}

type device struct {
	id      string
	bus     *busEntry
	unit    byte
	profile *Profile
	client  *client

	flashing atomic.Bool // a Flash runs: a second one, Reboot and FactoryReset are refused
}

// Describe implements plugins.Plugin.
func (d *Driver) Describe(context.Context) (plugins.Description, error) {
	return plugins.Description{
		Name:    pluginName,
		Version: version.Version, // the release it was built in (stamped by make)
		Capabilities: []plugins.Capability{plugins.CapRead, plugins.CapWrite, plugins.CapIdentify,
			plugins.CapScan, plugins.CapReboot, plugins.CapFactoryReset, plugins.CapFlash},
		BusKeys:     append([]string(nil), busKeys...),
		ProfileKeys: append([]string(nil), profileKeys...),
	}, nil
}

// ValidateBus implements plugins.Plugin.
func (d *Driver) ValidateBus(_ context.Context, bus json.RawMessage) ([]plugins.FieldError, error) {
	return ValidateBus(bus), nil
}

// ValidateProfile implements plugins.Plugin.
func (d *Driver) ValidateProfile(_ context.Context, profile json.RawMessage) ([]plugins.FieldError, error) {
	return ValidateProfile(profile), nil
}

// OpenBus implements plugins.Plugin. Opening an open bus replaces it. A serial port is opened at once (so a
// missing device is reported here); a TCP connection is made on first use.
func (d *Driver) OpenBus(ctx context.Context, bc plugins.BusConfig) error {
	b, errs := ParseBus(bc.Config)
	if errs != nil {
		return jsonfields.FieldsError("bus "+bc.Name, errs)
	}
	// Opening an open bus replaces it (the contract's rule): the old link is
	// closed first, so a serial port is free again, and its devices detached.
	d.mu.RLock()
	_, open := d.buses[bc.Name]
	d.mu.RUnlock()
	if open {
		if err := d.CloseBus(ctx, bc.Name); err != nil && plugins.CodeOf(err) != plugins.CodeNotFound {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.buses[bc.Name]; ok {
		return plugins.Errorf(plugins.CodeBusy, "bus %q is being opened by another call", bc.Name)
	}
	log := d.log.With("bus", bc.Name)
	e := &busEntry{name: bc.Name, cfg: b}
	if b.Mode == ModeTCP {
		e.link = newTCPLink(b)
	} else {
		sl := newSerialLink(b, d.openSerial, log)
		if err := sl.tr.lock(ctx); err != nil {
			return asPluginError("open bus "+bc.Name, err)
		}
		err := sl.tr.connect()
		sl.tr.unlock()
		if err != nil {
			return asPluginError("open bus "+bc.Name, err)
		}
		e.link = sl
	}
	d.buses[bc.Name] = e
	log.Info("bus opened", "mode", string(b.Mode))
	return nil
}

// CloseBus implements plugins.Plugin. Devices on the bus are detached.
func (d *Driver) CloseBus(ctx context.Context, name string) error {
	d.mu.Lock()
	e, ok := d.buses[name]
	if ok {
		delete(d.buses, name)
		for id, dev := range d.devices {
			if dev.bus == e {
				delete(d.devices, id)
			}
		}
	}
	d.mu.Unlock()
	if !ok {
		return plugins.Errorf(plugins.CodeNotFound, "bus %q is not open", name)
	}
	if err := e.link.close(ctx); err != nil {
		return asPluginError("close bus "+name, err)
	}
	d.log.Info("bus closed", "bus", name)
	return nil
}

var optionKeys = []string{"quirks", "timeout", "retries"}

// Attach implements plugins.Plugin. Attaching an id again replaces the
// device. Options may override quirks (key by key), timeout and retries.
func (d *Driver) Attach(_ context.Context, dc plugins.DeviceConfig) error {
	p, errs := ParseProfile(dc.Profile)
	if errs != nil {
		return jsonfields.FieldsError("profile of device "+dc.ID, errs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.buses[dc.Bus]
	if !ok {
		return plugins.Errorf(plugins.CodeNotFound, "attach %s: bus %q is not open", dc.ID, dc.Bus)
	}
	cfg := *e.cfg
	if !jsonfields.IsNull(dc.Options) {
		var oerrs []plugins.FieldError
		o := jsonfields.Open(dc.Options, "", &oerrs)
		if v, ok := o.Raw("quirks"); ok {
			DecodeQuirks(v, "quirks", &p.Quirks, &oerrs)
		}
		o.Duration("timeout", &cfg.Timeout)
		o.Int("retries", &cfg.Retries)
		o.Done(optionKeys)
		if cfg.Timeout <= 0 || cfg.Retries < 0 || cfg.Retries > maxRetries {
			oerrs = append(oerrs, plugins.FieldError{Path: "(options)", Message: "timeout must be > 0 and retries 0..10"})
		}
		if len(oerrs) == 0 {
			validateProfile(p, &oerrs) // quirks may invalidate points
		}
		if len(oerrs) > 0 {
			return jsonfields.FieldsError("options of device "+dc.ID, oerrs)
		}
	}
	lo, hi := 1, 247 // serial unit addresses (Modbus over Serial Line V1.02, 2.2)
	if cfg.Mode == ModeTCP {
		lo, hi = 0, 255
	}
	if dc.Address < lo || dc.Address > hi {
		return plugins.Errorf(plugins.CodeInvalid, "attach %s: unit address %d out of range %d..%d", dc.ID, dc.Address, lo, hi)
	}
	log := d.log.With("bus", dc.Bus, "device", dc.ID)
	d.devices[dc.ID] = &device{id: dc.ID, bus: e, unit: byte(dc.Address), profile: p,
		client: newClient(e.link, byte(dc.Address), &cfg, p.Quirks.DelayBetweenRequests, log)}
	return nil
}

// Detach implements plugins.Plugin.
func (d *Driver) Detach(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.devices[id]; !ok {
		return plugins.Errorf(plugins.CodeNotFound, "device %q is not attached", id)
	}
	delete(d.devices, id)
	return nil
}

func (d *Driver) device(id string) (*device, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	dev, ok := d.devices[id]
	if !ok {
		return nil, plugins.Errorf(plugins.CodeNotFound, "device %q is not attached", id)
	}
	return dev, nil
}

// points returns the named points (all, in profile order, when names is empty).
func (dev *device) points(names []string) ([]Point, error) {
	if len(names) == 0 {
		return append([]Point(nil), dev.profile.Points...), nil
	}
	out := make([]Point, 0, len(names))
	for _, n := range names {
		p, ok := dev.profile.Point(n)
		if !ok {
			return nil, plugins.Errorf(plugins.CodeNotFound, "device %s has no point %q", dev.id, n)
		}
		out = append(out, *p)
	}
	return out, nil
}

// Read implements plugins.Plugin: it plans block reads for the points (all
// points when none are named), runs them, and decodes each point. A request
// that fails marks its points bad (exception, garbled reply) or timed out;
// after a timeout the device is taken as absent and the remaining requests
// are skipped (their points are marked timed out too). The error is non-nil
// only for an unknown device or point, or when ctx ends.
func (d *Driver) Read(ctx context.Context, id string, names []string) ([]plugins.PointValue, error) {
	dev, err := d.device(id)
	if err != nil {
		return nil, err
	}
	pts, err := dev.points(names)
	if err != nil {
		return nil, err
	}
	vals, _, err := dev.read(ctx, pts, d.now)
	return vals, err
}

// read returns one PointValue per point and, per point, the error that made
// it not good.
func (dev *device) read(ctx context.Context, pts []Point, now func() time.Time) ([]plugins.PointValue, []error, error) {
	out := make([]plugins.PointValue, len(pts))
	perr := make([]error, len(pts))
	for i := range pts {
		out[i].Point = pts[i].Name
	}
	var absent error
	for _, r := range Plan(pts, dev.profile.Quirks) {
		var data []byte
		err := absent
		if err == nil {
			data, err = dev.client.readBlock(ctx, r)
		}
		t := now()
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, nil, asPluginError("read "+dev.id, err)
			}
			q := plugins.QualityBad
			if isTimeout(err) {
				q = plugins.QualityTimeout
				if absent == nil {
					absent = fmt.Errorf("skipped: %w", err)
				}
			}
			for _, i := range r.Points {
				out[i] = plugins.PointValue{Point: pts[i].Name, Quality: q, Error: asPluginError("read "+dev.id, err).Error(), Time: t}
				perr[i] = err
			}
			continue
		}
		for _, i := range r.Points {
			v, derr := valueFromBlock(&pts[i], r, data)
			out[i].Time = t
			if derr != nil {
				out[i].Quality, out[i].Error, perr[i] = plugins.QualityBad, derr.Error(), derr
				continue
			}
			out[i].Value, out[i].Quality = v, plugins.QualityGood
		}
	}
	return out, perr, nil
}

// valueFromBlock decodes point p from the data of block read r.
func valueFromBlock(p *Point, r Request, data []byte) (plugins.Value, error) {
	off := p.Address - r.Address
	if r.Table.IsBit() {
		if off < 0 || off >= r.Count || off/8 >= len(data) {
			return plugins.Value{}, fmt.Errorf("point %s outside its block read", p.Name)
		}
		return plugins.Value{Kind: plugins.KindBool, Bool: bitAt(data, off)}, nil
	}
	_, n := p.Span()
	if off < 0 || 2*(off+n) > len(data) {
		return plugins.Value{}, fmt.Errorf("point %s outside its block read", p.Name)
	}
	return DecodeRegisters(p, data[2*off:2*(off+n)])
}
