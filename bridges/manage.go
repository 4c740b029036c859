package bridges

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/plugins"
)

// Statuses of reported.reboot and reported.factoryReset.
const (
	ManageRebooting = "rebooting"
	ManageResetting = "resetting"
	ManageDone      = "done"
	ManageFailed    = "failed"
)

// manageKind describes one disruptive method.
type manageKind struct {
	method  string // method name
	section string // reported section
	cap     plugins.Capability
	active  string // status while waiting for the device
	timeKey string // reported key of the start time
	call    func(p plugins.Plugin, ctx context.Context, id string, o plugins.ManageOptions) error
}

var (
	rebootKind = manageKind{
		method: MethodReboot, section: "reboot", cap: plugins.CapReboot, active: ManageRebooting, timeKey: "lastReboot",
		call: func(p plugins.Plugin, ctx context.Context, id string, o plugins.ManageOptions) error {
			return p.Reboot(ctx, id, o)
		},
	}
	factoryResetKind = manageKind{
		method: MethodFactoryReset, section: "factoryReset", cap: plugins.CapFactoryReset, active: ManageResetting, timeKey: "lastReset",
		call: func(p plugins.Plugin, ctx context.Context, id string, o plugins.ManageOptions) error {
			return p.FactoryReset(ctx, id, o)
		},
	}
)

// manageOp is a reboot or factory reset in progress, under device.mu.
type manageOp struct {
	kind     *manageKind
	watching bool      // the command went through; waiting for the device to answer again
	probeAt  time.Time // next probe
	deadline time.Time // give up then
}

// invokeManage runs reboot or factoryReset: the in-use rule (unless
// forced), the plugin call, then a watch for the device to answer again.
func (d *device) invokeManage(ctx context.Context, k *manageKind, payload json.RawMessage) (int, any) {
	force, st, body := parseForce(k.method, payload)
	if st != 0 {
		return st, body
	}
	if st, body := d.refuse(k.method, k.cap); st != 0 {
		return st, body
	}
	d.mu.Lock()
	if m := d.mgmt; m != nil {
		d.mu.Unlock()
		return http.StatusConflict, errorBody("%s: a %s is already in progress", k.method, m.kind.method)
	}
	op := &manageOp{kind: k}
	d.mgmt = op
	d.mu.Unlock()
	started := false
	defer func() {
		if !started {
			d.mu.Lock()
			if d.mgmt == op {
				d.mgmt = nil
			}
			d.mu.Unlock()
		}
	}()

	if !force && d.spec.InUse != nil {
		if st, body := d.checkInUse(ctx, k.method); st != 0 {
			return st, body
		}
	}
	err := d.call(ctx, bus.PriorityCommand, func(ctx context.Context) error {
		return k.call(d.plugin, ctx, d.spec.ID, plugins.ManageOptions{Force: force})
	})
	if plugins.CodeOf(err) == plugins.CodeInUse {
		return http.StatusConflict, errorBody("device in use: %v; pass force", err)
	}
	if err != nil {
		d.log.Warn("management command failed", "method", k.method, "error", err)
		d.report(func() map[string]any {
			return map[string]any{k.section: map[string]any{"status": ManageFailed, "error": err.Error()}}
		})
		return statusOf(err), errorBody("%s: %v", k.method, err)
	}
	started = true
	now := d.clock.Now()
	d.report(func() map[string]any {
		op.watching = true
		op.probeAt = now.Add(d.b.opts.RebootProbe)
		op.deadline = now.Add(d.b.opts.RebootTimeout)
		return map[string]any{k.section: map[string]any{
			"status": k.active, k.timeKey: now.UTC().Format(time.RFC3339), "error": nil}}
	})
	d.log.Info("management command sent", "method", k.method, "force", force)
	d.nudge()
	return http.StatusOK, map[string]any{"status": k.active}
}

// checkInUse reads the in-use point; a non-zero status refuses the method.
func (d *device) checkInUse(ctx context.Context, method string) (int, any) {
	rule := d.spec.InUse
	want, _ := json.Marshal(rule.Equals) // validated in Add
	var vals []plugins.PointValue
	err := d.call(ctx, bus.PriorityCommand, func(ctx context.Context) error {
		var err error
		vals, err = d.plugin.Read(ctx, d.spec.ID, []string{rule.Point})
		return err
	})
	if err != nil {
		return statusOf(err), errorBody("%s: cannot check in-use rule %s == %s: %v; pass force to skip it", method, rule.Point, want, err)
	}
	for _, pv := range vals {
		if pv.Point != rule.Point {
			continue
		}
		switch pv.Quality {
		case plugins.QualityGood:
			if matches(pv.Value, rule.Equals) {
				return http.StatusConflict, errorBody("device in use: %s == %s; pass force", rule.Point, want)
			}
			return 0, nil
		case plugins.QualityTimeout:
			return http.StatusGatewayTimeout, errorBody("%s: cannot check in-use rule %s == %s: no answer: %s; pass force to skip it", method, rule.Point, want, pv.Error)
		}
		return http.StatusInternalServerError, errorBody("%s: cannot check in-use rule %s == %s: %s; pass force to skip it", method, rule.Point, want, pv.Error)
	}
	return http.StatusInternalServerError, errorBody("%s: cannot check in-use rule: plugin returned no value for %s; pass force to skip it", method, rule.Point)
}

// probe asks a rebooted or reset device whether it answers again: Identify
// when it can (and reported.device follows), else a read of its first
// point. Probes run at poll priority, so a device that stays silent is
// throttled by its breaker like any dead device.
func (d *device) probe(ctx context.Context) {
	d.mu.Lock()
	op := d.mgmt
	identify := d.can(plugins.CapIdentify) && !d.noIdentify
	d.mu.Unlock()
	if op == nil {
		return
	}
	var id plugins.Identity
	err := d.call(ctx, bus.PriorityPoll, func(ctx context.Context) error {
		if identify {
			var err error
			id, err = d.plugin.Identify(ctx, d.spec.ID)
			return err
		}
		var names []string
		if len(d.spec.Points) > 0 {
			names = []string{d.spec.Points[0].Name}
		}
		vals, err := d.plugin.Read(ctx, d.spec.ID, names)
		if err == nil && len(vals) > 0 && vals[0].Quality == plugins.QualityTimeout {
			err = plugins.Errorf(plugins.CodeTimeout, "%s", vals[0].Error)
		}
		return err
	})
	if ctx.Err() != nil {
		return
	}
	now := d.clock.Now()
	d.report(func() map[string]any {
		if d.mgmt != op {
			return nil
		}
		k := op.kind
		if err == nil {
			d.mgmt, d.resume = nil, true
			patch := map[string]any{k.section: map[string]any{"status": ManageDone, "error": nil}}
			if identify {
				if p := d.identityPatchLocked(id); p != nil {
					patch["device"] = p["device"]
				}
			}
			if sec := d.setConnLocked(StateOnline, "", now); sec != nil {
				patch["connection"] = sec
			}
			d.log.Info("device answers again", "method", k.method)
			return patch
		}
		if !now.Before(op.deadline) {
			d.mgmt, d.resume = nil, true
			msg := fmt.Sprintf("device did not answer within %v after %s: %v", d.b.opts.RebootTimeout, k.method, err)
			d.log.Warn("device did not come back", "method", k.method, "error", err)
			return map[string]any{k.section: map[string]any{"status": ManageFailed, "error": msg}}
		}
		op.probeAt = now.Add(d.b.opts.RebootProbe)
		return nil
	})
}
