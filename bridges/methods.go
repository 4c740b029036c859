package bridges

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"

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
	return http.StatusNotFound, errorBody("unknown method %q: device %s has %s, %s, %s, %s, %s", method, deviceID,
		MethodRead, MethodWrite, MethodIdentify, MethodReboot, MethodFactoryReset)
}

// refuse returns a non-zero status when the device cannot run a method
// needing capability c now.
func (d *device) refuse(method string, c plugins.Capability) (int, any) {
	if !d.can(c) {
		return http.StatusNotFound, errorBody("method %s: plugin %s does not support %s", method, d.pluginName, c)
	}
	d.mu.Lock()
	down := d.pluginDown
	d.mu.Unlock()
	if down {
		return http.StatusServiceUnavailable, errorBody("method %s: plugin %s is down", method, d.pluginName)
	}
	return 0, nil
}

func (d *device) invokeRead(ctx context.Context, payload json.RawMessage) (int, any) {
	var req struct {
		Points []string `json:"points"`
	}
	if err := decodePayload(payload, &req); err != nil {
		return http.StatusBadRequest, errorBody(`bad payload for read: %v; want {"points": ["name", ...]} or nothing for all points`, err)
	}
	names := slices.Compact(slices.Clone(req.Points))
	for _, n := range names {
		if _, ok := d.points[n]; !ok {
			return http.StatusNotFound, errorBody("unknown point %q", n)
		}
	}
	if len(names) == 0 {
		for _, p := range d.spec.Points {
			names = append(names, p.Name)
		}
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
	body := map[string]any{"values": values}
	if len(errs) > 0 {
		body["errors"] = errs
	}
	return http.StatusOK, body
}

func (d *device) invokeWrite(ctx context.Context, payload json.RawMessage) (int, any) {
	var req map[string]any
	if err := decodePayload(payload, &req); err != nil {
		return http.StatusBadRequest, errorBody(`bad payload for write: %v; want {"point": value, ...}`, err)
	}
	if len(req) == 0 {
		return http.StatusBadRequest, errorBody(`bad payload for write: no points; want {"point": value, ...}`)
	}
	names := slices.Sorted(maps.Keys(req))
	for _, n := range names {
		if _, ok := d.points[n]; !ok {
			return http.StatusNotFound, errorBody("unknown point %q", n)
		}
	}
	writes := make([]plugins.PointWrite, 0, len(names))
	for _, n := range names {
		if !d.points[n].Writable {
			return http.StatusBadRequest, errorBody("point %q is not writable", n)
		}
		v, err := valueFromJSON(req[n])
		if err != nil {
			return http.StatusBadRequest, errorBody("point %q: %v", n, err)
		}
		writes = append(writes, plugins.PointWrite{Point: n, Value: v})
	}
	if st, body := d.refuse(MethodWrite, plugins.CapWrite); st != 0 {
		return st, body
	}
	var results []plugins.WriteResult
	err := d.call(ctx, bus.PriorityCommand, func(ctx context.Context) error {
		var err error
		results, err = d.plugin.Write(ctx, d.spec.ID, writes)
		return err
	})
	if err != nil {
		return statusOf(err), errorBody("write: %v", err)
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
		return http.StatusInternalServerError, map[string]any{"error": "write: some points were not written", "results": out}
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
