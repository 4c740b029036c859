package serial

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tarm/serial"

	"github.com/drover-iot/drover/internal/portlock"
	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/internal/version"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

const pluginName = "serial"

// readSlice is the read timeout handed to the serial driver (termios
// VTIME, 100 ms units): a read returns as soon as a byte arrives, so it
// only bounds how late the SMP reader notices Close.
const readSlice = 100 * time.Millisecond

// PortOpener opens the serial line of b at path (b.Port, or a port Scan
// probes). OpenTarm is the real one.
type PortOpener func(path string, b *Bus) (io.ReadWriteCloser, error)

// Driver implements plugins.Plugin for microcontrollers speaking SMP
// (MCUmgr) on a UART: one device per bus. It is safe for concurrent use:
// each bus's SMP client puts one request on the line at a time, and
// disruptive operations (reboot, factory reset, flash) on a device run one
// at a time.
type Driver struct {
	log  *slog.Logger
	now  func() time.Time
	open PortOpener

	mu    sync.RWMutex
	buses map[string]*busEntry
}

var _ plugins.Plugin = (*Driver)(nil)

// Options configure a Driver.
type Options struct {
	Log  *slog.Logger     // default: discard
	Now  func() time.Time // reading timestamps; default time.Now
	Open PortOpener       // default OpenTarm
}

// New returns a Driver with no open buses.
func New(opts Options) *Driver {
	d := &Driver{log: opts.Log, now: opts.Now, open: opts.Open, buses: map[string]*busEntry{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.open == nil {
		d.open = OpenTarm
	}
	return d
}

// OpenTarm opens path with tarm/serial at b's line settings, after taking
// the port's lock (internal/portlock), so one process owns the port.
func OpenTarm(path string, b *Bus) (io.ReadWriteCloser, error) {
	cfg := &serial.Config{Name: path, Baud: b.Baud, ReadTimeout: readSlice, Size: byte(b.DataBits),
		Parity: serial.ParityNone, StopBits: serial.Stop1}
	switch b.Parity {
	case "even":
		cfg.Parity = serial.ParityEven
	case "odd":
		cfg.Parity = serial.ParityOdd
	}
	if b.StopBits == 2 {
		cfg.StopBits = serial.Stop2
	}
	lock, err := portlock.Lock(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPort, err)
	}
	p, err := serial.OpenPort(cfg)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, fmt.Errorf("%w: open serial port %s: %w", errPort, path, err)
	}
	return &lockedPort{Port: p, lock: lock}, nil
}

// lockedPort is an open port and the lock that keeps other processes off it.
type lockedPort struct {
	*serial.Port
	lock *os.File
}

// Close closes the port, then gives up the lock.
func (p *lockedPort) Close() error {
	err := p.Port.Close()
	if p.lock != nil {
		p.lock.Close()
	}
	return err
}

// busEntry is an open bus: its port, SMP client and (at most one) device.
type busEntry struct {
	name string
	cfg  *Bus
	log  *slog.Logger
	open PortOpener

	mu     sync.Mutex
	client *smp.Client // nil when the port is closed (after a failure: reopened on use)
	dev    *device
}

// smp returns the bus's client, reopening the port if the last one failed.
func (e *busEntry) smp() (*smp.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil && e.client.Err() == nil {
		return e.client, nil
	}
	if e.client != nil {
		e.log.Warn("serial port failed; reopening", "port", e.cfg.Port, "error", e.client.Err())
		_ = e.client.Close()
		e.client = nil
	}
	port, err := e.open(e.cfg.Port, e.cfg)
	if err != nil {
		return nil, err
	}
	opts := e.cfg.clientOptions()
	opts.Log = e.log
	e.client = smp.NewClient(port, opts)
	return e.client, nil
}

func (e *busEntry) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client == nil {
		return nil
	}
	err := e.client.Close()
	e.client = nil
	return err
}

// device is the SMP device on a bus.
type device struct {
	id      string
	bus     *busEntry
	profile *Profile
	log     *slog.Logger
	op      chan struct{} // held by a reboot, factory reset or flash
}

// Describe implements plugins.Plugin.
func (d *Driver) Describe(context.Context) (plugins.Description, error) {
	return plugins.Description{
		Name:    pluginName,
		Version: version.Version, // the release it was built in (stamped by make)
		Capabilities: []plugins.Capability{plugins.CapRead, plugins.CapWrite, plugins.CapIdentify, plugins.CapScan,
			plugins.CapReboot, plugins.CapFactoryReset, plugins.CapFlash},
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

// OpenBus implements plugins.Plugin. The port is opened and locked at once,
// so a missing or busy port is reported here; opening an open bus replaces
// it (its device is detached).
func (d *Driver) OpenBus(ctx context.Context, bc plugins.BusConfig) error {
	b, errs := ParseBus(bc.Config)
	if errs != nil {
		return jsonfields.FieldsError("bus "+bc.Name, errs)
	}
	d.mu.RLock()
	_, open := d.buses[bc.Name]
	d.mu.RUnlock()
	if open {
		if err := d.CloseBus(ctx, bc.Name); err != nil && plugins.CodeOf(err) != plugins.CodeNotFound {
			return err
		}
	}
	log := d.log.With("bus", bc.Name)
	e := &busEntry{name: bc.Name, cfg: b, log: log, open: d.open}
	if _, err := e.smp(); err != nil {
		return asPluginError("open bus "+bc.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.buses[bc.Name]; ok {
		_ = e.close()
		return plugins.Errorf(plugins.CodeBusy, "bus %q is being opened by another call", bc.Name)
	}
	d.buses[bc.Name] = e
	log.Info("bus opened", "port", b.Port, "baud", b.Baud, "transport", string(b.Transport))
	return nil
}

// CloseBus implements plugins.Plugin: the device is detached, the SMP
// reader stopped and the port closed and unlocked.
func (d *Driver) CloseBus(_ context.Context, name string) error {
	d.mu.Lock()
	e, ok := d.buses[name]
	delete(d.buses, name)
	d.mu.Unlock()
	if !ok {
		return plugins.Errorf(plugins.CodeNotFound, "bus %q is not open", name)
	}
	if err := e.close(); err != nil {
		return asPluginError("close bus "+name, fmt.Errorf("%w: %w", errPort, err))
	}
	d.log.Info("bus closed", "bus", name)
	return nil
}

// Attach implements plugins.Plugin. A UART carries one SMP device, so the
// address must be 0 (none); attaching again replaces the device.
func (d *Driver) Attach(_ context.Context, dc plugins.DeviceConfig) error {
	p, errs := ParseProfile(dc.Profile)
	if errs != nil {
		return jsonfields.FieldsError("profile of device "+dc.ID, errs)
	}
	if !jsonfields.IsNull(dc.Options) {
		var m map[string]json.RawMessage
		if json.Unmarshal(dc.Options, &m) != nil || len(m) > 0 {
			return plugins.Errorf(plugins.CodeInvalid, "attach %s: the serial plugin takes no device options", dc.ID)
		}
	}
	if dc.Address != 0 {
		return plugins.Errorf(plugins.CodeInvalid, "attach %s: address %d: an SMP device on a UART has no address", dc.ID, dc.Address)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.buses[dc.Bus]
	if !ok {
		return plugins.Errorf(plugins.CodeNotFound, "attach %s: bus %q is not open", dc.ID, dc.Bus)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dev != nil && e.dev.id != dc.ID {
		return plugins.Errorf(plugins.CodeInvalid, "attach %s: bus %s already has device %s (a UART is point-to-point)", dc.ID, dc.Bus, e.dev.id)
	}
	e.dev = &device{id: dc.ID, bus: e, profile: p, log: e.log.With("device", dc.ID), op: make(chan struct{}, 1)}
	return nil
}

// Detach implements plugins.Plugin.
func (d *Driver) Detach(_ context.Context, id string) error {
	dev, err := d.device(id)
	if err != nil {
		return err
	}
	dev.bus.mu.Lock()
	defer dev.bus.mu.Unlock()
	if dev.bus.dev == dev {
		dev.bus.dev = nil
	}
	return nil
}

func (d *Driver) device(id string) (*device, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, e := range d.buses {
		e.mu.Lock()
		dev := e.dev
		e.mu.Unlock()
		if dev != nil && dev.id == id {
			return dev, nil
		}
	}
	return nil, plugins.Errorf(plugins.CodeNotFound, "device %q is not attached", id)
}

func (dev *device) client() (*smp.Client, error) { return dev.bus.smp() }

// exclusive runs fn as the device's only disruptive operation.
func (dev *device) exclusive(what string, fn func() error) error {
	select {
	case dev.op <- struct{}{}:
	default:
		return plugins.Errorf(plugins.CodeBusy, "%s %s: another reboot, factory reset or flash is running", what, dev.id)
	}
	defer func() { <-dev.op }()
	return fn()
}

// points returns the named points (all, in profile order, when names is empty).
func (dev *device) points(names []string) ([]*Point, error) {
	if len(names) == 0 {
		out := make([]*Point, len(dev.profile.Points))
		for i := range dev.profile.Points {
			out[i] = &dev.profile.Points[i]
		}
		return out, nil
	}
	out := make([]*Point, 0, len(names))
	for _, n := range names {
		p, ok := dev.profile.Point(n)
		if !ok {
			return nil, plugins.Errorf(plugins.CodeNotFound, "device %s has no point %q", dev.id, n)
		}
		out = append(out, p)
	}
	return out, nil
}

// Read implements plugins.Plugin. Points of one statistics group share one
// request. A point whose request fails is bad (the device answered an
// error) or timed out; after a timeout the device is taken as absent and
// the remaining points are marked timed out without asking. The error is
// non-nil only for an unknown device or point, an unusable port, or when
// ctx ends.
func (d *Driver) Read(ctx context.Context, id string, names []string) ([]plugins.PointValue, error) {
	dev, err := d.device(id)
	if err != nil {
		return nil, err
	}
	pts, err := dev.points(names)
	if err != nil {
		return nil, err
	}
	c, err := dev.client()
	if err != nil {
		return nil, asPluginError("read "+id, err)
	}
	out := make([]plugins.PointValue, len(pts))
	stats := map[string]map[string]uint64{}
	statErr := map[string]error{}
	var absent error
	for i, p := range pts {
		var val plugins.Value
		err := absent
		if err == nil {
			val, err = dev.readPoint(ctx, c, p, stats, statErr)
		}
		out[i] = plugins.PointValue{Point: p.Name, Time: d.now()}
		if err != nil {
			if ctx.Err() != nil {
				return nil, asPluginError("read "+id, err)
			}
			q := plugins.QualityBad
			if isTimeout(err) {
				q = plugins.QualityTimeout
				if absent == nil {
					absent = fmt.Errorf("skipped: %w", err)
				}
			}
			out[i].Quality, out[i].Error = q, asPluginError("read "+id+" "+p.Name, err).Error()
			continue
		}
		out[i].Value = val
	}
	return out, nil
}

// readPoint reads one point; stats caches statistics groups read in this
// call (statErr their failures).
func (dev *device) readPoint(ctx context.Context, c *smp.Client, p *Point, stats map[string]map[string]uint64, statErr map[string]error) (plugins.Value, error) {
	switch p.Source {
	case SourceStat:
		fields, ok := stats[p.Group]
		if !ok {
			if err := statErr[p.Group]; err != nil {
				return plugins.Value{}, err
			}
			var err error
			fields, err = c.StatRead(ctx, p.Group)
			if err != nil {
				statErr[p.Group] = err
				return plugins.Value{}, err
			}
			stats[p.Group] = fields
		}
		u, ok := fields[p.Field]
		if !ok {
			return plugins.Value{}, fmt.Errorf("statistics group %q has no field %q: %w", p.Group, p.Field, smp.ErrMalformed)
		}
		return statValue(p, u)
	case SourceSetting:
		b, err := c.SettingRead(ctx, p.Setting)
		if err != nil {
			return plugins.Value{}, err
		}
		return decodeSetting(p, b)
	case SourceOS:
		var s string
		var err error
		switch p.OS {
		case OSDateTime:
			s, err = c.DateTime(ctx)
		case OSInfo:
			s, err = c.OSInfo(ctx, p.Format)
		case OSBootloader:
			var bi smp.BootloaderInfoRsp
			bi, err = c.BootloaderInfo(ctx, "")
			s = bi.Bootloader
		case OSBufSize:
			var n int
			n, err = c.BufSize(ctx)
			return uintValue(uint64(n)), err
		}
		return plugins.Value{Kind: plugins.KindString, String: s}, err
	}
	return plugins.Value{}, fmt.Errorf("point %s has no source", p.Name)
}

// Write implements plugins.Plugin: each value is written to its setting;
// then, when the profile says so, the settings are committed (applied) and
// saved (persisted); then every written setting is read back and compared.
// A point that is not a writable setting, or a value that does not fit its
// type, fails on its own without touching the device.
func (d *Driver) Write(ctx context.Context, id string, values []plugins.PointWrite) ([]plugins.WriteResult, error) {
	dev, err := d.device(id)
	if err != nil {
		return nil, err
	}
	c, err := dev.client()
	if err != nil {
		return nil, asPluginError("write "+id, err)
	}
	out := make([]plugins.WriteResult, len(values))
	points := make([]*Point, len(values))
	wrote := 0
	for i, w := range values {
		out[i].Point = w.Point
		p, ok := dev.profile.Point(w.Point)
		switch {
		case !ok:
			out[i].Error = plugins.Errorf(plugins.CodeNotFound, "device %s has no point %q", id, w.Point).Error()
			continue
		case !p.Writable || p.Source != SourceSetting:
			out[i].Error = plugins.Errorf(plugins.CodeInvalid, "point %s of device %s is not writable", w.Point, id).Error()
			continue
		}
		b, err := encodeSetting(p, w.Value)
		if err == nil {
			err = c.SettingWrite(ctx, p.Setting, b)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, asPluginError("write "+id, err)
			}
			out[i].Error = asPluginError("write "+id+" "+w.Point, err).Error()
			continue
		}
		points[i] = p
		wrote++
	}
	if wrote == 0 {
		return out, nil
	}
	var after error
	if dev.profile.Commit {
		after = c.SettingsCommit(ctx)
	}
	if after == nil && dev.profile.Save {
		after = c.SettingsSave(ctx)
	}
	for i, p := range points {
		if p == nil {
			continue
		}
		if after != nil {
			out[i].Error = asPluginError("write "+id+": apply settings", after).Error()
			continue
		}
		b, err := c.SettingRead(ctx, p.Setting)
		var rb plugins.Value
		if err == nil {
			rb, err = decodeSetting(p, b)
		}
		if err != nil {
			out[i].Error = asPluginError("write "+id+" "+p.Name+": read back", err).Error()
			continue
		}
		out[i].ReadBack = &rb
		want, _ := encodeSetting(p, values[i].Value)
		if got, _ := encodeSetting(p, rb); string(got) != string(want) {
			out[i].Error = plugins.Errorf(plugins.CodeDeviceError, "write %s %s: read back %s, wrote %s", id, p.Name, rb.Text(), values[i].Value.Text()).Error()
			continue
		}
		out[i].OK = true
	}
	return out, nil
}

// errNotAnswering is a device that stayed silent after a reset.
var errNotAnswering = errors.New("device does not answer")

// Close closes every open bus (their ports and SMP readers). The plugin
// process does this through plugins.Serve; in-process users call it.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.RLock()
	names := make([]string, 0, len(d.buses))
	for n := range d.buses {
		names = append(names, n)
	}
	d.mu.RUnlock()
	var errs []error
	for _, n := range names {
		if err := d.CloseBus(ctx, n); err != nil && plugins.CodeOf(err) != plugins.CodeNotFound {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
