package daemon

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/twincache"
)

// After a restart the twin sync re-applies desired properties only when
// they changed (the hub's $version moved on), which is right for what a
// device keeps by itself (its registers). What the gateway derived from
// desired in memory must come back from the twin cache instead, at start
// and with or without an uplink: the gateway's configuration overlay and
// maintenance windows, and each device's maintenance windows. A device
// restarted by an overlay change gets its desired config again (a new
// address or profile may be a different unit or register map).

// reportGatewayPatch queues a patch of the gateway's reported properties; a
// no-op before the gateway's link exists (a restore at start).
func (d *Daemon) reportGatewayPatch(patch map[string]any) {
	if d.gw != nil {
		d.gw.Report(patch)
	}
}

// restoreGatewayDesired applies the cached desired properties of the
// gateway before its devices are added: the overlay (when it still
// validates over the local file) and the maintenance windows. It returns
// the reported patch to send once the gateway's link exists, or nil.
func (d *Daemon) restoreGatewayDesired(ctx context.Context) map[string]any {
	t, ok := d.cachedTwin(ctx, d.base.Gateway.ID)
	if !ok {
		return nil
	}
	d.applyGatewayMaintenance(t.Desired)
	overlay, _ := t.Desired["config"].(map[string]any)
	if len(overlay) == 0 {
		return nil
	}
	raw, err := json.Marshal(overlay)
	var eff *config.Config
	if err == nil {
		eff, err = config.Merge(d.base, raw)
	}
	if err == nil {
		err = eff.ValidateWithPlugins(ctx, d.validators(eff))
	}
	if err != nil {
		// The local file changed under the overlay. Run the file; the
		// operator sees why in the twin and sends a new overlay.
		d.log.Warn("cached configuration overlay rejected; running the local file", "version", t.DesiredVersion, "error", err)
		return map[string]any{"configOverlay": map[string]any{"status": "rejected", "version": t.DesiredVersion,
			"errors": errorLines(err)}}
	}
	d.mu.Lock()
	d.cfg, d.overlay = eff, overlay
	d.mu.Unlock()
	d.log.Info("configuration overlay restored from the twin cache", "version", t.DesiredVersion)
	return nil
}

// cachedTwin returns id's cached twin; false when there is none (a read
// error is logged).
func (d *Daemon) cachedTwin(ctx context.Context, id string) (twincache.Twin, bool) {
	t, err := d.cache.Get(ctx, id)
	if err != nil {
		if !errors.Is(err, twincache.ErrNotFound) {
			d.log.Warn("read a cached twin", "identity", id, "error", err)
		}
		return t, false
	}
	return t, true
}

// restoreDeviceWindows gives a device the maintenance windows of its
// cached desired properties.
func (d *Daemon) restoreDeviceWindows(ctx context.Context, id string, l *link) {
	if t, ok := d.cachedTwin(ctx, id); ok {
		if _, has := t.Desired["maintenance"]; has {
			d.deviceWindows(id, l, t.Desired)
		}
	}
}

// redeliverDesiredConfig hands a restarted device's bridge the cached
// desired properties again, when a version was applied before.
func (d *Daemon) redeliverDesiredConfig(ctx context.Context, id string, l *link) {
	if t, ok := d.cachedTwin(ctx, id); ok && t.Applied > 0 {
		d.deviceDesired(id, l, t.Desired, t.DesiredVersion)
	}
}
