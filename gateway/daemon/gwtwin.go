package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/jobs"
)

// maxListedDevices bounds reported.devices.notOnline (the 4 KB value limit).
const maxListedDevices = 40

// reportGateway refreshes the gateway's own reported status.
func (d *Daemon) reportGateway() {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	plug := []any{}
	for _, s := range d.host.Status() {
		plug = append(plug, map[string]any{"name": s.Name, "version": s.Version, "state": s.State.String(), "restarts": s.Restarts, "lastError": s.LastError})
	}
	buses := map[string]any{}
	st := d.bridges.Stats()
	for _, b := range st.Buses {
		buses[b.Bus] = map[string]any{"transactions": b.Transactions, "timeouts": b.Timeouts, "errors": b.Errors, "queue": b.QueueDepth}
	}
	// Devices are summarised: a twin property value is limited to 4 KB, and a
	// gateway has hundreds of devices. Each device's own twin has the details.
	// Every state is always listed: a merge patch never removes a key left out.
	byState := map[string]any{"online": 0, "offline": 0, "backoff": 0, "plugin-down": 0, "unknown": 0}
	var notOnline []any
	d.mu.Lock()
	for _, dev := range cfg.Devices {
		state := "unknown"
		if s, ok := d.devState[dev.ID]["state"].(string); ok {
			state = s
		}
		n, _ := byState[state].(int)
		byState[state] = n + 1
		if state != "online" && len(notOnline) < maxListedDevices {
			notOnline = append(notOnline, dev.ID)
		}
	}
	d.mu.Unlock()
	if notOnline == nil {
		notOnline = []any{}
	}
	devs := map[string]any{"total": len(cfg.Devices), "byState": byState, "notOnline": notOnline}
	rep := map[string]any{
		"drover":  map[string]any{"version": d.opts.Version, "startedAt": d.started.UTC().Format(time.RFC3339), "uptimeSeconds": int64(d.now().Sub(d.started).Seconds())},
		"plugins": plug,
		"buses":   buses,
		"devices": devs,
		"config":  map[string]any{"hash": config.Hash(cfg), "file": cfg.File},
		"jobs":    d.jobCounts(),
		"memory":  memorySummary(),
	}
	if w, err := d.wear.sample(d.now()); err == nil {
		rep["disk"] = w
	}
	if d.box != nil {
		if st, err := d.box.Stats(context.Background()); err == nil {
			rep["outbox"] = map[string]any{"depth": st.Depth, "bytes": st.Bytes, "oldestAgeSeconds": int64(st.OldestAge.Seconds()),
				"accepted": st.Accepted, "acked": st.Acked, "dropped": map[string]any{"full": st.DroppedFull, "ttl": st.DroppedTTL,
					"corrupt": st.DroppedCorrupt, "rejected": st.DroppedRejected},
				"durability": st.Durability, "inMemory": st.Memory, "spilled": st.Spilled, "inSpillLog": st.Logged, "lostInMemory": st.LostInMemory}
		}
	}
	d.gw.Report(rep)
}

// onGatewayDesired applies desired.config of the gateway as an overlay over
// the local file: validated as a whole with the same checks as gateway.yaml;
// rejected as a whole (and reported) when anything is wrong, in which case
// the gateway keeps its last good configuration.
func (d *Daemon) onGatewayDesired(desired map[string]any, version int64) {
	d.applyGatewayMaintenance(desired)
	overlay, _ := desired["config"].(map[string]any)
	if overlay == nil {
		overlay = map[string]any{}
	}
	d.reconcileMu.Lock()
	defer d.reconcileMu.Unlock()
	d.mu.Lock()
	same := reflect.DeepEqual(overlay, d.overlay) || (len(overlay) == 0 && len(d.overlay) == 0)
	d.mu.Unlock()
	if same {
		d.gw.Report(map[string]any{"configOverlay": map[string]any{"status": "applied", "version": version}})
		return
	}
	raw, err := json.Marshal(overlay)
	if err == nil {
		var eff *config.Config
		eff, err = config.Merge(d.base, raw)
		if err == nil {
			err = eff.ValidateWithPlugins(d.runCtx, d.validators(eff))
		}
		if err == nil {
			err = d.reconcile(eff)
			if err == nil {
				d.mu.Lock()
				d.overlay = overlay
				d.mu.Unlock()
				changes := []any{}
				for _, c := range config.Diff(d.base, eff) {
					changes = append(changes, map[string]any{"path": c.Path, "from": c.From, "to": c.To})
				}
				d.log.Info("configuration overlay applied", "version", version, "changes", len(changes))
				d.gw.Report(map[string]any{"configOverlay": map[string]any{"status": "applied", "version": version, "errors": nil, "changes": changes}})
				d.reportGateway()
				return
			}
		}
	}
	msgs := errorLines(err)
	d.log.Warn("configuration overlay rejected", "version", version, "errors", len(msgs))
	d.gw.Report(map[string]any{"configOverlay": map[string]any{"status": "rejected", "version": version, "errors": msgs}})
}

func errorLines(err error) []any {
	var out []any
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// reconcile moves the running gateway from the current effective
// configuration to next: buses and devices that changed are re-opened and
// re-attached, removed ones closed, new ones added.
func (d *Daemon) reconcile(next *config.Config) error {
	ctx := d.runCtx
	d.mu.Lock()
	cur := d.cfg
	d.mu.Unlock()
	running := map[string]bool{}
	for _, n := range d.pluginNames(cur) {
		running[n] = true
	}
	for _, b := range next.Buses {
		if !running[b.Plugin] {
			return errors.New("buses: plugin " + b.Plugin + " is not running; a new plugin needs a restart of the gateway")
		}
	}
	changedBus := map[string]bool{}
	for i := range cur.Buses {
		b := &cur.Buses[i]
		nb := next.Bus(b.Name)
		if nb == nil || !sameJSON(b, nb) {
			changedBus[b.Name] = true
		}
	}
	// A device gone from next loses its bridge and its uplink; a changed one
	// only its bridge (re-attached below), so the hub sees no disconnect.
	var removed []*config.Device
	changed := map[string]bool{}
	for i := range cur.Devices {
		dev := &cur.Devices[i]
		nd := next.Device(dev.ID)
		if nd == nil || changedBus[dev.Bus] || !sameJSON(dev, nd) || !sameJSON(cur.Profiles[dev.Profile], next.Profiles[nd.Profile]) {
			removed = append(removed, dev)
			if nd != nil {
				changed[dev.ID] = true
				d.detachDevice(ctx, cur, dev)
			} else {
				d.removeDevice(ctx, cur, dev)
			}
		}
	}
	for i := range cur.Buses {
		if changedBus[cur.Buses[i].Name] {
			d.closeBus(ctx, &cur.Buses[i])
		}
	}
	for i := range next.Buses {
		b := &next.Buses[i]
		if ob := cur.Bus(b.Name); ob == nil || changedBus[b.Name] {
			if err := d.openBus(ctx, b); err != nil {
				d.log.Error("open bus", "bus", b.Name, "error", err)
			}
		}
	}
	d.mu.Lock()
	d.cfg = next
	d.mu.Unlock()
	// A device that now means another unit or register map (bus, address,
	// profile) gets its desired config written again; one restarted for a
	// poll interval or an option does not (holding registers often live in
	// EEPROM: no write without a reason).
	rewrite := map[string]bool{}
	for _, dev := range removed {
		nd := next.Device(dev.ID)
		rewrite[dev.ID] = nd != nil && (nd.Bus != dev.Bus || nd.UnitAddress() != dev.UnitAddress() || nd.Profile != dev.Profile ||
			!sameJSON(cur.Profiles[dev.Profile], next.Profiles[nd.Profile]))
	}
	var ids []string
	for i := range next.Devices {
		dev := &next.Devices[i]
		switch {
		case changed[dev.ID]:
			if err := d.reattachDevice(ctx, next, dev); err != nil {
				d.log.Error("restart device", "device", dev.ID, "error", err)
			} else if rewrite[dev.ID] {
				// The twin sync will not deliver an unchanged desired config
				// again; the restarted bridge gets it from the cache.
				d.redeliverDesiredConfig(ctx, dev.ID, d.childLink(dev.ID))
			}
		case d.childLink(dev.ID) == nil:
			if err := d.addDevice(ctx, next, dev); err != nil {
				d.log.Error("add device", "device", dev.ID, "error", err)
			}
		default:
			continue
		}
		ids = append(ids, dev.ID)
	}
	sort.Strings(ids)
	if len(removed) > 0 || len(ids) > 0 {
		d.log.Info("configuration reconciled", "restarted_or_added", ids, "removed_or_restarted", len(removed))
	}
	return nil
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// gatewayMethod answers direct methods on the gateway itself.
func (d *Daemon) gatewayMethod(ctx context.Context, name string, payload json.RawMessage) (int, any) {
	switch name {
	case "status":
		st, err := backend{d}.Status(ctx)
		if err != nil {
			return 500, map[string]string{"error": err.Error()}
		}
		return 200, st
	case "stats":
		out := map[string]any{"bridges": d.bridges.Stats(), "memory": memoryStats()}
		if w, err := d.wear.sample(d.now()); err == nil {
			out["disk"] = w
		}
		if d.gw != nil && d.gw.client != nil {
			out["upstream"] = d.gw.client.Stats()
		}
		if d.box != nil {
			if st, err := d.box.Stats(ctx); err == nil {
				out["outbox"] = st
			}
			out["drainer"] = d.drainer.Stats()
		}
		return 200, out
	case "cancelJob":
		return d.cancelJob(ctx, payload)
	case "effectiveConfig":
		d.mu.Lock()
		cfg := d.cfg
		d.mu.Unlock()
		raw, err := cfg.JSON()
		if err != nil {
			return 500, map[string]string{"error": err.Error()}
		}
		return 200, raw
	}
	return 404, map[string]string{"error": "unknown method " + name + " on the gateway (status, stats, cancelJob, effectiveConfig)"}
}

func configHash(c *config.Config) string { return config.Hash(c) }

// applyGatewayMaintenance takes the gateway's desired.maintenance as the
// gateway-wide windows for disruptive jobs (devices may still have their own).
func (d *Daemon) applyGatewayMaintenance(desired map[string]any) {
	m, ok := desired["maintenance"]
	if !ok {
		d.mu.Lock()
		d.gwWindows = nil
		d.mu.Unlock()
		return
	}
	raw, _ := json.Marshal(m)
	ws, err := jobs.ParseMaintenance(raw)
	if err != nil {
		d.log.Warn("gateway desired.maintenance rejected", "error", err)
		d.reportGatewayPatch(map[string]any{"maintenance": map[string]any{"status": "rejected", "error": err.Error()}})
		return
	}
	d.mu.Lock()
	d.gwWindows = ws
	if d.gwWindows == nil {
		d.gwWindows = []config.Window{}
	}
	d.mu.Unlock()
	d.reportGatewayPatch(map[string]any{"maintenance": map[string]any{"status": "applied", "windows": len(ws)}})
	if d.jobs != nil {
		d.jobs.Poke()
	}
}
