package modbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Reboot implements plugins.Plugin with the profile's methods.reboot write.
func (d *Driver) Reboot(ctx context.Context, id string, opts plugins.ManageOptions) error {
	return d.manage(ctx, id, MethodReboot, opts)
}

// FactoryReset implements plugins.Plugin with the profile's
// methods.factoryReset write.
func (d *Driver) FactoryReset(ctx context.Context, id string, opts plugins.ManageOptions) error {
	return d.manage(ctx, id, MethodFactoryReset, opts)
}

// manage checks the in-use rule (unless forced) and performs the method's
// write. A device that cannot be checked is not touched.
func (d *Driver) manage(ctx context.Context, id, method string, opts plugins.ManageOptions) error {
	dev, err := d.device(id)
	if err != nil {
		return err
	}
	w, ok := dev.profile.Methods[method]
	if !ok {
		return plugins.Errorf(plugins.CodeUnsupported, "profile %s of device %s defines no %s method", dev.profile.Name, id, method)
	}
	if dev.flashing.Load() {
		// A reboot or reset in the middle of a flash would lose the
		// transfer, or interrupt the device booting the new image.
		return plugins.Errorf(plugins.CodeBusy, "%s %s refused: the device is being flashed", method, id)
	}
	if rule := dev.profile.InUse; rule != nil && !opts.Force {
		p, _ := dev.profile.Point(rule.Point)
		vals, errs, err := dev.read(ctx, []Point{*p}, d.now)
		if err != nil {
			return err
		}
		if vals[0].Quality != plugins.QualityGood {
			return asPluginError(fmt.Sprintf("%s %s: check in-use point %s", method, id, rule.Point), errs[0])
		}
		if valuesEqual(vals[0].Value, rule.Equals) {
			return plugins.Errorf(plugins.CodeInUse, "%s %s refused: %s is %s (in use); use force to override",
				method, id, rule.Point, vals[0].Value.Text())
		}
	}
	op := writeOp{table: w.Table, start: w.Address, count: 1, bits: []bool{w.Value != 0},
		data: []byte{byte(w.Value >> 8), byte(w.Value)}}
	err = dev.client.write(ctx, op)
	var ex *Exception
	if errors.As(err, &ex) && ex.Code == ExAcknowledge {
		err = nil
	}
	if err != nil {
		return asPluginError(method+" "+id, err)
	}
	d.log.Info("device method sent", "device", id, "method", method)
	return nil
}

// valuesEqual compares a reading with a profile constant: booleans and
// strings exactly, numbers by value across kinds.
func valuesEqual(a, b plugins.Value) bool {
	switch {
	case a.Kind == plugins.KindBool || b.Kind == plugins.KindBool:
		return a.Kind == b.Kind && a.Bool == b.Bool
	case a.Kind == plugins.KindString || b.Kind == plugins.KindString:
		return a.Kind == b.Kind && a.String == b.String
	case a.Kind == plugins.KindUint && b.Kind == plugins.KindUint:
		return a.Uint == b.Uint
	case a.Kind == plugins.KindInt && b.Kind == plugins.KindInt:
		return a.Int == b.Int
	case a.Kind == plugins.KindNone || b.Kind == plugins.KindNone:
		return false
	}
	return asFloat(a) == asFloat(b)
}

// Identify implements plugins.Plugin. Sources, by precedence: the points
// named in the profile's identify section, FC 43/14 (regular objects, or
// basic when the device refuses regular; skipped with identify.fc43 false or
// quirks.no_fc43), then the profile's literal manufacturer and model.
func (d *Driver) Identify(ctx context.Context, id string) (plugins.Identity, error) {
	dev, err := d.device(id)
	if err != nil {
		return plugins.Identity{}, err
	}
	spec := dev.profile.Identify
	out := plugins.Identity{Extra: map[string]string{}}
	var firstErr error
	useFC43 := spec.FC43 && !dev.profile.Quirks.NoFC43
	if useFC43 {
		objs, err := readDeviceID(ctx, dev.client)
		if err != nil {
			if ctx.Err() != nil {
				return plugins.Identity{}, asPluginError("identify "+id, err)
			}
			firstErr = err
		}
		fromObjects(&out, objs)
	}
	refs := []struct {
		name string
		dst  *string
	}{{spec.ManufacturerPoint, &out.Manufacturer}, {spec.ModelPoint, &out.Model},
		{spec.SerialPoint, &out.Serial}, {spec.FirmwarePoint, &out.FirmwareVersion}}
	var pts []Point
	var dsts []*string
	for _, r := range refs {
		if r.name != "" {
			p, _ := dev.profile.Point(r.name)
			pts, dsts = append(pts, *p), append(dsts, r.dst)
		}
	}
	if len(pts) > 0 {
		vals, errs, err := dev.read(ctx, pts, d.now)
		if err != nil {
			return plugins.Identity{}, err
		}
		for i, v := range vals {
			if v.Quality == plugins.QualityGood {
				*dsts[i] = plainString(v.Value)
			} else if firstErr == nil {
				firstErr = errs[i]
			}
		}
	}
	if out.Manufacturer == "" {
		out.Manufacturer = spec.Manufacturer
	}
	if out.Model == "" {
		out.Model = spec.Model
	}
	if out.Manufacturer == "" && out.Model == "" && out.Serial == "" && out.FirmwareVersion == "" && len(out.Extra) == 0 {
		if firstErr != nil {
			return plugins.Identity{}, asPluginError("identify "+id, firstErr)
		}
		return plugins.Identity{}, plugins.Errorf(plugins.CodeUnsupported, "identify %s: the profile gives no way to identify the device", id)
	}
	return out, nil
}

func plainString(v plugins.Value) string {
	if v.Kind == plugins.KindString {
		return v.String
	}
	return v.Text()
}

// fromObjects maps FC 43 objects onto an Identity: VendorName →
// Manufacturer, ModelName (else ProductCode) → Model, MajorMinorRevision →
// FirmwareVersion; all objects also go to Extra by name.
func fromObjects(out *plugins.Identity, objs map[byte]string) {
	for id, v := range objs {
		name, ok := objectNames[id]
		if !ok {
			name = fmt.Sprintf("object_%02x", id)
		}
		out.Extra[name] = v
	}
	out.Manufacturer = objs[objVendorName]
	out.Model = objs[objModelName]
	if out.Model == "" {
		out.Model = objs[objProductCode]
	}
	out.FirmwareVersion = objs[objMajorMinorRevision]
}

// readDeviceID reads the regular identification objects, falling back to
// the basic ones when the device refuses the regular category, following
// "more follows" paging.
func readDeviceID(ctx context.Context, c *client) (map[byte]string, error) {
	objs, err := readDeviceIDStream(ctx, c, devIDRegular)
	var ex *Exception
	if errors.As(err, &ex) && (ex.Code == ExIllegalDataAddress || ex.Code == ExIllegalDataValue) {
		return readDeviceIDStream(ctx, c, devIDBasic)
	}
	return objs, err
}

func readDeviceIDStream(ctx context.Context, c *client, code byte) (map[byte]string, error) {
	objs := map[byte]string{}
	next := byte(0)
	for range maxDevIDPages {
		resp, err := c.raw(ctx, "read device identification", deviceIDRequest(code, next))
		if err != nil {
			return objs, err
		}
		pg, err := parseDeviceID(resp.Data)
		if err != nil {
			return objs, fmt.Errorf("read device identification: %w", err)
		}
		for k, v := range pg.Objects {
			objs[k] = v
		}
		if !pg.MoreFollows || pg.NextID <= next {
			return objs, nil
		}
		next = pg.NextID
	}
	return objs, nil
}

// Scan implements plugins.Plugin: it probes unit ids req.From..req.To one at
// a time with a basic FC 43/14 request, waiting req.Interval between probes.
// Any reply, even an exception, means a device is there. The bus must be
// quiet: while devices are attached to it (the gateway polls them) Scan
// returns CodeBusy (plugins.ScanRequest has no Force field yet).
func (d *Driver) Scan(ctx context.Context, req plugins.ScanRequest, progress func(plugins.ScanEvent)) error {
	d.mu.RLock()
	e, ok := d.buses[req.Bus]
	attached := 0
	for _, dev := range d.devices {
		if ok && dev.bus == e {
			attached++
		}
	}
	d.mu.RUnlock()
	if !ok {
		return plugins.Errorf(plugins.CodeNotFound, "scan: bus %q is not open", req.Bus)
	}
	if attached > 0 {
		return plugins.Errorf(plugins.CodeBusy, "scan: bus %s has %d attached devices being polled", req.Bus, attached)
	}
	lo, hi := 1, 247
	if e.cfg.Mode == ModeTCP {
		lo, hi = 0, 255
	}
	if req.From < lo || req.To > hi || req.From > req.To {
		return plugins.Errorf(plugins.CodeInvalid, "scan: range %d..%d not within %d..%d", req.From, req.To, lo, hi)
	}
	cfg := *e.cfg
	cfg.Retries = 0
	if req.Timeout > 0 {
		cfg.Timeout = req.Timeout
	}
	log := d.log.With("bus", req.Bus)
	for addr := req.From; addr <= req.To; addr++ {
		if addr > req.From && req.Interval > 0 {
			if err := sleepUntil(ctx, time.Now().Add(req.Interval)); err != nil {
				return asPluginError("scan "+req.Bus, err)
			}
		}
		c := newClient(e.link, byte(addr), &cfg, 0, log)
		ev := plugins.ScanEvent{Address: addr}
		resp, err := c.raw(ctx, "probe", deviceIDRequest(devIDBasic, 0))
		var ex *Exception
		switch {
		case err == nil:
			ev.Found = true
			if pg, perr := parseDeviceID(resp.Data); perr == nil {
				id := plugins.Identity{Extra: map[string]string{}}
				fromObjects(&id, pg.Objects)
				ev.Identity = &id
			}
		case ctx.Err() != nil:
			return asPluginError("scan "+req.Bus, err)
		case errors.As(err, &ex) && ex.Code != ExGatewayTarget && ex.Code != ExGatewayPath:
			ev.Found = true // it answered; it just has no FC 43
		case isTimeout(err):
		default:
			ev.Error = err.Error()
		}
		if progress != nil {
			progress(ev)
		}
	}
	return nil
}
