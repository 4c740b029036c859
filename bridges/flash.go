package bridges

import (
	"context"
	"fmt"
	"strings"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/plugins"
)

// FlashOptions tune Flash.
type FlashOptions struct {
	// Force skips the profile's in-use rule.
	Force bool
}

// Flash flashes a firmware image into a device through its plugin. It
// checks the device's in-use rule first (unless forced), then holds the
// device's bus for the whole transfer at command priority: a flash is a
// long series of transactions that must not interleave with polls of the
// device it reboots, and on a serial line one device's flash is the bus's
// only traffic anyway. ctx alone bounds it (not the per-call timeout: a
// 256 KiB image at 115200 baud takes most of a minute). Errors carry a
// plugins.Code: CodeNotFound for an unknown device, CodeUnsupported when the
// plugin cannot flash, CodeUnavailable while the plugin is down, CodeInUse
// when the in-use rule holds or cannot be checked, and the plugin's own.
// After a flash that reached the device the device is identified again,
// so reported.device shows what it runs now.
func (b *Bridges) Flash(ctx context.Context, deviceID string, req plugins.FlashRequest, o FlashOptions, progress func(plugins.FlashEvent)) error {
	d := b.device(deviceID)
	if d == nil {
		return plugins.Errorf(plugins.CodeNotFound, "unknown device %q", deviceID)
	}
	if !d.can(plugins.CapFlash) {
		return plugins.Errorf(plugins.CodeUnsupported, "device %s: plugin %s cannot flash firmware", deviceID, d.pluginName)
	}
	d.mu.Lock()
	down := d.pluginDown
	d.mu.Unlock()
	if down {
		return plugins.Errorf(plugins.CodeUnavailable, "device %s: plugin %s is down", deviceID, d.pluginName)
	}
	if !o.Force && d.spec.InUse != nil {
		if st, body := d.checkInUse(ctx, "firmwareUpdate"); st != 0 {
			// Held or not checkable: both mean "not now" for a flash.
			// The code already says "in use"; keep the rule's own words.
			return plugins.Errorf(plugins.CodeInUse, "%s", strings.TrimPrefix(fmt.Sprint(bodyError(body)), "device in use: "))
		}
	}
	req.DeviceID = deviceID
	sent := false
	err := d.sched.Do(ctx, bus.PriorityCommand, d.spec.ID, func(ctx context.Context) error {
		sent = true
		return d.plugin.Flash(ctx, req, progress)
	})
	if sent {
		d.mu.Lock()
		d.needIdentify = true
		d.mu.Unlock()
		d.nudge()
	}
	if err != nil {
		return fmt.Errorf("flash %s: %w", deviceID, err)
	}
	return nil
}

// bodyError is the "error" of an error body, or the body itself.
func bodyError(body any) any {
	if m, ok := body.(map[string]any); ok {
		if e, ok := m["error"]; ok {
			return e
		}
	}
	return body
}
