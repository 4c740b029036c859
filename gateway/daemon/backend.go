package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/gateway/localapi"
	"github.com/drover-iot/drover/plugins"
)

// backend serves the technician's local API from the running gateway. Reads,
// writes and methods go through the bridges, so they take their turn on the
// bus at command priority like any operator command; writes and device
// actions are jobs like the hub's (see jobs.go).
type backend struct{ d *Daemon }

var _ localapi.Backend = backend{}

func (b backend) Status(ctx context.Context) (localapi.Status, error) {
	d := b.d
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	st := localapi.Status{GatewayID: cfg.Gateway.ID, Version: d.opts.Version, Uptime: localapi.Duration(d.now().Sub(d.started)), Devices: len(cfg.Devices)}
	st.Upstream.Configured = d.gw != nil && d.gw.client != nil
	st.Upstream.Hub = d.hostName
	if st.Upstream.Configured {
		s := d.gw.client.Stats()
		st.Upstream.Connected, st.Upstream.LastError = s.Connected, s.LastError
		st.Upstream.Since = s.ConnectedSince
	}
	for _, p := range d.host.Status() {
		st.Plugins = append(st.Plugins, localapi.PluginStatus{Name: p.Name, Version: p.Version, State: p.State.String(), Restarts: p.Restarts, LastError: p.LastError})
	}
	stats := d.bridges.Stats()
	for _, bus := range cfg.Buses {
		bs := localapi.BusStatus{Name: bus.Name, Plugin: bus.Plugin, State: "open"}
		if s, ok := stats.Buses[bus.Name]; ok {
			bs.Transactions, bs.Timeouts, bs.Errors, bs.Queue = s.Transactions, s.Timeouts, s.Errors, s.QueueDepth
		}
		st.Buses = append(st.Buses, bs)
	}
	st.ConfigHash = configHash(cfg)
	if d.box != nil {
		if os, err := d.box.Stats(ctx); err == nil {
			st.Outbox = &localapi.OutboxStatus{Depth: int(os.Depth), Bytes: os.Bytes,
				Dropped:    uint64(os.DroppedFull + os.DroppedTTL + os.DroppedCorrupt + os.DroppedRejected),
				Durability: os.Durability, InMemory: int(os.Memory), InSpillLog: os.Logged, LostInMemory: os.LostInMemory}
		}
	}
	if w, err := d.wear.sample(d.now()); err == nil {
		st.Disk = &localapi.DiskStatus{WrittenBytes: w.WrittenBytes, BytesPerHour: w.BytesPerHour}
	}
	return st, nil
}

func (b backend) Devices(ctx context.Context) ([]localapi.DeviceInfo, error) {
	d := b.d
	stats := d.bridges.Stats()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []localapi.DeviceInfo{}
	for _, dev := range d.cfg.Devices {
		info := localapi.DeviceInfo{ID: dev.ID, Bus: dev.Bus, Profile: dev.Profile, State: "unknown"}
		if dev.Address != nil {
			info.Address = *dev.Address
		}
		if s := d.devState[dev.ID]; s != nil {
			if v, ok := s["state"].(string); ok {
				info.State = v
			}
			if v, ok := s["lastError"].(string); ok {
				info.LastError = v
			}
			if v, ok := s["lastSeen"].(string); ok {
				info.LastSeen, _ = time.Parse(time.RFC3339Nano, v)
			}
		}
		// The bridge knows the last answer; reported.connection changes only on transitions.
		if ds, ok := stats.Devices[dev.ID]; ok && ds.LastSeen.After(info.LastSeen) {
			info.LastSeen = ds.LastSeen
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (b backend) Twin(ctx context.Context, id string) (map[string]any, error) {
	if b.d.gw != nil && id == b.d.gw.id {
		return b.d.gw.Twin(), nil
	}
	if l := b.d.childLink(id); l != nil {
		return l.Twin(), nil
	}
	return nil, plugins.Errorf(plugins.CodeNotFound, "unknown device %q", id)
}

// invoke runs a device method the way the technician's API asks it (read
// inline, write as a job) and turns an answer other than 200 into a coded
// error. A write whose job did not end in time (202) is CodeBusy: it is
// queued, and the message says which job to look at.
func (b backend) invoke(ctx context.Context, id, method string, payload any) (map[string]any, error) {
	if b.d.childLink(id) == nil {
		return nil, plugins.Errorf(plugins.CodeNotFound, "unknown device %q", id)
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, plugins.Errorf(plugins.CodeInvalid, "encode %s request: %v", method, err)
	}
	status, resp := b.d.deviceMethod(ctx, id, method, raw, jobs.SourceTechnician)
	body, _ := resp.(map[string]any)
	if status == http.StatusAccepted {
		reason, _ := body["reason"].(string)
		return body, plugins.Errorf(plugins.CodeBusy, "%s %s queued as job %v (%v %s); see `drover jobs`", method, id, body["jobId"], body["state"], reason)
	}
	if status >= 200 && status < 300 {
		return body, nil
	}
	msg := fmt.Sprintf("%s %s: status %d", method, id, status)
	if e, ok := body["error"].(string); ok {
		msg = e
	}
	return body, plugins.Errorf(codeFor(status), "%s", msg)
}

func codeFor(status int) plugins.Code {
	switch status {
	case http.StatusBadRequest:
		return plugins.CodeInvalid
	case http.StatusNotFound:
		return plugins.CodeNotFound
	case http.StatusConflict:
		return plugins.CodeInUse
	case http.StatusServiceUnavailable:
		return plugins.CodeUnavailable
	case http.StatusGatewayTimeout:
		return plugins.CodeTimeout
	}
	return plugins.CodeDeviceError
}

func (b backend) Read(ctx context.Context, id string, points []string) ([]plugins.PointValue, error) {
	body, err := b.invoke(ctx, id, "read", map[string]any{"points": points})
	if err != nil {
		return nil, err
	}
	now := b.d.now()
	var out []plugins.PointValue
	values, _ := body["values"].(map[string]any)
	for name, v := range values {
		out = append(out, plugins.PointValue{Point: name, Value: toValue(v), Quality: plugins.QualityGood, Time: now})
	}
	errs, _ := body["errors"].(map[string]any)
	for name, e := range errs {
		out = append(out, plugins.PointValue{Point: name, Quality: plugins.QualityBad, Error: fmt.Sprint(e), Time: now})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Point < out[j].Point })
	return out, nil
}

func toValue(v any) plugins.Value {
	switch x := v.(type) {
	case bool:
		return plugins.Value{Kind: plugins.KindBool, Bool: x}
	case string:
		return plugins.Value{Kind: plugins.KindString, String: x}
	case int64:
		return plugins.Value{Kind: plugins.KindInt, Int: x}
	case uint64:
		return plugins.Value{Kind: plugins.KindUint, Uint: x}
	case float64:
		return plugins.Value{Kind: plugins.KindFloat, Float: x}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return plugins.Value{Kind: plugins.KindInt, Int: n}
		}
		f, _ := x.Float64()
		return plugins.Value{Kind: plugins.KindFloat, Float: f}
	case int:
		return plugins.Value{Kind: plugins.KindInt, Int: int64(x)}
	}
	return plugins.Value{Kind: plugins.KindString, String: fmt.Sprint(v)}
}

func (b backend) Write(ctx context.Context, id string, values map[string]any) ([]plugins.WriteResult, error) {
	body, err := b.invoke(ctx, id, "write", values)
	results, _ := body["results"].(map[string]any)
	if err != nil && results == nil {
		return nil, err
	}
	var out []plugins.WriteResult
	for name, r := range results {
		m, _ := r.(map[string]any)
		wr := plugins.WriteResult{Point: name}
		wr.OK, _ = m["ok"].(bool)
		wr.Error, _ = m["error"].(string)
		if rb, ok := m["readBack"]; ok {
			v := toValue(rb)
			wr.ReadBack = &v
		}
		out = append(out, wr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Point < out[j].Point })
	return out, nil
}

func (b backend) Invoke(ctx context.Context, id, method string, payload json.RawMessage) (int, any, error) {
	if b.d.gw != nil && id == b.d.gw.id {
		st, resp := b.d.gatewayMethod(ctx, method, payload)
		return st, resp, nil
	}
	if b.d.childLink(id) == nil {
		return 0, nil, plugins.Errorf(plugins.CodeNotFound, "unknown device %q", id)
	}
	st, resp := b.d.deviceMethod(ctx, id, method, payload, jobs.SourceTechnician)
	return st, resp, nil
}

func (b backend) Scan(ctx context.Context, busName string, from, to int, force bool, progress func(plugins.ScanEvent)) error {
	d := b.d
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	bus := cfg.Bus(busName)
	if bus == nil {
		return plugins.Errorf(plugins.CodeNotFound, "unknown bus %q", busName)
	}
	polled := 0
	for _, dev := range cfg.Devices {
		if dev.Bus == busName {
			polled++
		}
	}
	if polled > 0 && !force {
		return plugins.Errorf(plugins.CodeBusy, "bus %s is polling %d devices; a scan would disturb them (use --force)", busName, polled)
	}
	if from == 0 && to == 0 {
		from, to = defaultScanRange(bus.Plugin)
	}
	p, err := d.plugin(bus.Plugin)
	if err != nil {
		return err
	}
	return p.Scan(ctx, plugins.ScanRequest{Bus: busName, From: from, To: to, Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond}, progress)
}

// defaultScanRange is the address range a scan covers when the technician
// names none: Modbus unit ids 1..247; for the serial plugin, whose scan
// addresses are ports (0 the bus's own, 1.. its scan_ports), every port.
func defaultScanRange(plugin string) (from, to int) {
	if plugin == "serial" {
		return 0, 255
	}
	return 1, 247
}
