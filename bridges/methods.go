package bridges

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/plugins"
)

// Method names Invoke serves.
const (
	MethodRead         = "read"
	MethodWrite        = "write"
	MethodIdentify     = "identify"
	MethodReboot       = "reboot"
	MethodFactoryReset = "factoryReset"
)

// Invoke runs a direct method on a device and returns its status and JSON
// response body. Calls to the device run at command priority and are
// bounded by ctx. See the package comment for methods, payloads and
// statuses.
func (b *Bridges) Invoke(ctx context.Context, deviceID, method string, payload json.RawMessage) (status int, response any) {
	d := b.device(deviceID)
	if d == nil {
		return http.StatusNotFound, errorBody("unknown device %q", deviceID)
	}
	switch method {
	case MethodRead:
		return d.invokeRead(ctx, payload)
	case MethodWrite:
		return d.invokeWrite(ctx, payload)
	case MethodIdentify:
		return d.invokeIdentify(ctx, payload)
	case MethodReboot:
		return d.invokeManage(ctx, &rebootKind, payload)
	case MethodFactoryReset:
		return d.invokeManage(ctx, &factoryResetKind, payload)
	}
	if m, ok := d.spec.Methods[method]; ok {
		return d.invokeCustom(ctx, method, m, payload)
	}
	return d.unknownMethod(method)
}

// Check validates a method call as Invoke would, without running it and
// without a plugin call: the device, the method, the payload (points and
// values of a write) and the plugin's capability. It returns 0 and nil
// when Invoke may run the call, else the status and body Invoke would
// answer. Whether the plugin is up and the device free is not checked:
// that is for whoever runs the call later to wait for.
func (b *Bridges) Check(deviceID, method string, payload json.RawMessage) (status int, response any) {
	d := b.device(deviceID)
	if d == nil {
		return http.StatusNotFound, errorBody("unknown device %q", deviceID)
	}
	var c plugins.Capability
	switch method {
	case MethodRead:
		c = plugins.CapRead
		if _, st, body := d.parseRead(payload); st != 0 {
			return st, body
		}
	case MethodWrite:
		c = plugins.CapWrite
		if _, st, body := d.parseWrite(payload); st != 0 {
			return st, body
		}
	case MethodIdentify:
		c = plugins.CapIdentify
		if err := decodePayload(payload, &struct{}{}); err != nil {
			return http.StatusBadRequest, errorBody("bad payload for identify: %v; want nothing or {}", err)
		}
	case MethodReboot, MethodFactoryReset:
		k := &rebootKind
		if method == MethodFactoryReset {
			k = &factoryResetKind
		}
		c = k.cap
		if _, st, body := parseForce(method, payload); st != 0 {
			return st, body
		}
	default:
		if _, ok := d.spec.Methods[method]; !ok {
			return d.unknownMethod(method)
		}
		c = plugins.CapWrite
		if _, st, body := parseForce(method, payload); st != 0 {
			return st, body
		}
	}
	if !d.can(c) {
		return d.unsupported(method, c)
	}
	return 0, nil
}

// unsupported answers a method whose plugin lacks capability c.
func (d *device) unsupported(method string, c plugins.Capability) (int, any) {
	return http.StatusNotFound, errorBody("method %s: plugin %s does not support %s", method, d.pluginName, c)
}

// unknownMethod answers a method the device does not have, listing those
// it has.
func (d *device) unknownMethod(method string) (int, any) {
	names := []string{MethodRead, MethodWrite, MethodIdentify, MethodReboot, MethodFactoryReset}
	names = append(names, slices.Sorted(maps.Keys(d.spec.Methods))...)
	return http.StatusNotFound, errorBody("unknown method %q: device %s has %s", method, d.spec.ID, strings.Join(names, ", "))
}

// refuse returns a non-zero status when the device cannot run a method
// needing capability c now.
func (d *device) refuse(method string, c plugins.Capability) (int, any) {
	if !d.can(c) {
		return d.unsupported(method, c)
	}
	d.mu.Lock()
	down := d.pluginDown
	d.mu.Unlock()
	if down {
		return http.StatusServiceUnavailable, errorBody("method %s: plugin %s is down", method, d.pluginName)
	}
	return 0, nil
}

// parseRead decodes a read payload into point names (all when none).
func (d *device) parseRead(payload json.RawMessage) ([]string, int, any) {
	var req struct {
		Points []string `json:"points"`
	}
	if err := decodePayload(payload, &req); err != nil {
		return nil, http.StatusBadRequest, errorBody(`bad payload for read: %v; want {"points": ["name", ...]} or nothing for all points`, err)
	}
	names := slices.Compact(slices.Clone(req.Points))
	for _, n := range names {
		if _, ok := d.points[n]; !ok {
			return nil, http.StatusNotFound, errorBody("unknown point %q", n)
		}
	}
	if len(names) == 0 {
		for _, p := range d.spec.Points {
			names = append(names, p.Name)
		}
	}
	return names, 0, nil
}

func (d *device) invokeRead(ctx context.Context, payload json.RawMessage) (int, any) {
	names, st, body := d.parseRead(payload)
	if st != 0 {
		return st, body
	}
	if st, body := d.refuse(MethodRead, plugins.CapRead); st != 0 {
		return st, body
	}
	var vals []plugins.PointValue
	err := d.call(ctx, bus.PriorityCommand, func(ctx context.Context) error {
		var err error
		vals, err = d.plugin.Read(ctx, d.spec.ID, names)
		return err
	})
	if err != nil {
		return statusOf(err), errorBody("read: %v", err)
	}
	values, errs := make(map[string]any), make(map[string]any)
	timeouts := 0
	for _, pv := range vals {
		switch pv.Quality {
		case plugins.QualityGood:
			v, err := valueToJSON(pv.Value)
			if err != nil {
				errs[pv.Point] = err.Error()
				continue
			}
			values[pv.Point] = v
		case plugins.QualityTimeout:
			timeouts++
			errs[pv.Point] = "no answer: " + pv.Error
		default:
			errs[pv.Point] = pv.Error
		}
	}
	if len(vals) > 0 && timeouts == len(vals) {
		return http.StatusGatewayTimeout, map[string]any{"error": "read: device did not answer", "errors": errs}
	}
	out := map[string]any{"values": values}
	if len(errs) > 0 {
		out["errors"] = errs
	}
	return http.StatusOK, out
}

// parseWrite decodes a write payload {"point": value, ...} into writes in
// point-name order.
func (d *device) parseWrite(payload json.RawMessage) ([]plugins.PointWrite, int, any) {
	var req map[string]any
	if err := decodePayload(payload, &req); err != nil {
		return nil, http.StatusBadRequest, errorBody(`bad payload for write: %v; want {"point": value, ...}`, err)
	}
	if len(req) == 0 {
		return nil, http.StatusBadRequest, errorBody(`bad payload for write: no points; want {"point": value, ...}`)
	}
	names := slices.Sorted(maps.Keys(req))
	for _, n := range names {
		if _, ok := d.points[n]; !ok {
			return nil, http.StatusNotFound, errorBody("unknown point %q", n)
		}
	}
	writes := make([]plugins.PointWrite, 0, len(names))
	for _, n := range names {
		if !d.points[n].Writable {
			return nil, http.StatusBadRequest, errorBody("point %q is not writable", n)
		}
		v, err := valueFromJSON(req[n])
		if err != nil {
			return nil, http.StatusBadRequest, errorBody("point %q: %v", n, err)
		}
		writes = append(writes, plugins.PointWrite{Point: n, Value: v})
	}
	return writes, 0, nil
}

// parseForce decodes the payload of a method taking {"force": bool} or
// nothing.
func parseForce(method string, payload json.RawMessage) (bool, int, any) {
	var req struct {
		Force bool `json:"force"`
	}
	if err := decodePayload(payload, &req); err != nil {
		return false, http.StatusBadRequest, errorBody(`bad payload for %s: %v; want {"force": true|false} or nothing`, method, err)
	}
	return req.Force, 0, nil
}

func (d *device) invokeWrite(ctx context.Context, payload json.RawMessage) (int, any) {
	writes, st, body := d.parseWrite(payload)
	if st != 0 {
		return st, body
	}
	if st, body := d.refuse(MethodWrite, plugins.CapWrite); st != 0 {
		return st, body
	}
	return d.writePoints(ctx, MethodWrite, writes)
}

// invokeCustom runs a custom method: the in-use rule when it is
// disruptive (unless forced), then its writes in one plugin Write.
func (d *device) invokeCustom(ctx context.Context, method string, m MethodSpec, payload json.RawMessage) (int, any) {
	force, st, body := parseForce(method, payload)
	if st != 0 {
		return st, body
	}
	if st, body := d.refuse(method, plugins.CapWrite); st != 0 {
		return st, body
	}
	if m.Disruptive && !force && d.spec.InUse != nil {
		if st, body := d.checkInUse(ctx, method); st != 0 {
			return st, body
		}
	}
	st, resp := d.writePoints(ctx, method, m.writes())
	d.log.Info("custom method run", "method", method, "force", force, "status", st)
	return st, resp
}

// writePoints runs writes at command priority and answers with the
// per-point results; 500 when some point was not written.
func (d *device) writePoints(ctx context.Context, method string, writes []plugins.PointWrite) (int, any) {
	var results []plugins.WriteResult
	err := d.call(ctx, bus.PriorityCommand, func(ctx context.Context) error {
		var err error
		results, err = d.plugin.Write(ctx, d.spec.ID, writes)
		return err
	})
	if err != nil {
		return statusOf(err), errorBody("%s: %v", method, err)
	}
	out := make(map[string]any, len(writes))
	failed := false
	for _, r := range results {
		res := map[string]any{"ok": r.OK}
		if r.Error != "" {
			res["error"] = r.Error
		}
		if r.ReadBack != nil {
			if v, err := valueToJSON(*r.ReadBack); err == nil {
				res["readBack"] = v
			}
		}
		failed = failed || !r.OK
		out[r.Point] = res
	}
	for _, w := range writes {
		if _, ok := out[w.Point]; !ok {
			out[w.Point] = map[string]any{"ok": false, "error": "no result from the plugin"}
			failed = true
		}
	}
	if failed {
		return http.StatusInternalServerError, map[string]any{"error": method + ": some points were not written", "results": out}
	}
	return http.StatusOK, map[string]any{"results": out}
}

func (d *device) invokeIdentify(ctx context.Context, payload json.RawMessage) (int, any) {
	var req struct{}
	if err := decodePayload(payload, &req); err != nil {
		return http.StatusBadRequest, errorBody("bad payload for identify: %v; want nothing or {}", err)
	}
	if st, body := d.refuse(MethodIdentify, plugins.CapIdentify); st != 0 {
		return st, body
	}
	var id plugins.Identity
	err := d.call(ctx, bus.PriorityCommand, func(ctx context.Context) error {
		var err error
		id, err = d.plugin.Identify(ctx, d.spec.ID)
		return err
	})
	if err != nil {
		return statusOf(err), errorBody("identify: %v", err)
	}
	d.report(func() map[string]any { return d.identityPatchLocked(id) })
	body := identityJSON(id)
	if len(id.Extra) > 0 {
		body["extra"] = id.Extra
	}
	return http.StatusOK, body
}
