package serial

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/plugins"
)

// Identify implements plugins.Plugin. The image list gives the firmware
// version (the active image's) and, in Extra, every slot's version, hash
// and flags (slot0Version, slot0Hash, slot0Flags, ...; imageNSlotM... for
// devices with several image pairs); OS/application info, the bootloader's
// name and mode and the SMP version and buffer go to Extra when the device
// answers them. Manufacturer and model are the profile's identify literals,
// the serial number its serial_point.
func (d *Driver) Identify(ctx context.Context, id string) (plugins.Identity, error) {
	dev, err := d.device(id)
	if err != nil {
		return plugins.Identity{}, err
	}
	c, err := dev.client()
	if err != nil {
		return plugins.Identity{}, asPluginError("identify "+id, err)
	}
	imgs, err := c.ImageState(ctx)
	if err != nil {
		return plugins.Identity{}, asPluginError("identify "+id+": read image list", err)
	}
	spec := dev.profile.Identify
	out := plugins.Identity{Manufacturer: spec.Manufacturer, Model: spec.Model, Extra: map[string]string{}}
	imageExtra(out.Extra, imgs)
	if a := activeSlot(imgs); a != nil {
		out.FirmwareVersion = a.Version
	}
	// Optional sources: a device without them answers an error, which
	// only leaves the key out. Silence or a cancelled ctx ends Identify.
	optional := func(what string, err error) error {
		var se *smp.Error
		if err == nil || errors.As(err, &se) {
			if err != nil {
				dev.log.Debug("identify: not available", "what", what, "error", err)
			}
			return nil
		}
		return asPluginError("identify "+id+": "+what, err)
	}
	info, err := c.OSInfo(ctx, "a")
	if err := optional("os info", err); err != nil {
		return plugins.Identity{}, err
	}
	if info != "" {
		out.Extra["osInfo"] = info
	}
	bl, err := c.BootloaderInfo(ctx, "")
	if err := optional("bootloader info", err); err != nil {
		return plugins.Identity{}, err
	}
	if bl.Bootloader != "" {
		out.Extra["bootloader"] = bl.Bootloader
		mode, err := c.BootloaderInfo(ctx, "mode")
		if err := optional("bootloader mode", err); err != nil {
			return plugins.Identity{}, err
		}
		if mode.Mode != nil {
			out.Extra["bootloaderMode"] = strconv.Itoa(*mode.Mode)
		}
	}
	buf, err := c.BufSize(ctx)
	if err != nil {
		return plugins.Identity{}, asPluginError("identify "+id+": read buffer size", err)
	}
	out.Extra["smpBufSize"] = strconv.Itoa(buf)
	out.Extra["smpVersion"] = strconv.Itoa(int(c.Version()) + 1)
	if sp := spec.SerialPoint; sp != "" {
		p, _ := dev.profile.Point(sp)
		v, err := dev.readPoint(ctx, c, p, map[string]map[string]uint64{}, map[string]error{})
		if err := optional("serial point "+sp, err); err != nil {
			return plugins.Identity{}, err
		}
		if err == nil {
			out.Serial = strings.Trim(v.Text(), `"`)
		}
	}
	return out, nil
}

// imageExtra records every slot of the image list in extra.
func imageExtra(extra map[string]string, imgs []smp.ImageSlot) {
	for _, s := range imgs {
		prefix := fmt.Sprintf("slot%d", s.Slot)
		if s.Image != nil && *s.Image > 0 {
			prefix = fmt.Sprintf("image%dSlot%d", *s.Image, s.Slot)
		}
		extra[prefix+"Version"] = s.Version
		if len(s.Hash) > 0 {
			extra[prefix+"Hash"] = hex.EncodeToString(s.Hash)
		}
		extra[prefix+"Flags"] = slotFlags(s)
	}
}

// slotFlags lists a slot's set flags ("active,confirmed"), or "none".
func slotFlags(s smp.ImageSlot) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{s.Active, "active"}, {s.Confirmed, "confirmed"}, {s.Pending, "pending"}, {s.Permanent, "permanent"}, {s.Bootable, "bootable"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ",")
}

// activeSlot returns the running slot of image 0: the one flagged active,
// else slot 0.
func activeSlot(imgs []smp.ImageSlot) *smp.ImageSlot {
	var first *smp.ImageSlot
	for i := range imgs {
		s := &imgs[i]
		if s.Image != nil && *s.Image != 0 {
			continue
		}
		if s.Active {
			return s
		}
		if s.Slot == 0 && first == nil {
			first = s
		}
	}
	return first
}

// Reboot implements plugins.Plugin: OS reset, then wait until the device
// answers echo again. An application that refuses the reset (EBUSY) makes
// it fail with CodeInUse unless opts.Force, which sends the reset again
// with force=1. The wait ends at the device's answer, at the bus's
// reboot_timeout, or shortly before ctx's deadline; a device still silent
// then is left to the gateway's own watch (Reboot returns nil: the reset
// was accepted).
func (d *Driver) Reboot(ctx context.Context, id string, opts plugins.ManageOptions) error {
	dev, err := d.device(id)
	if err != nil {
		return err
	}
	return dev.exclusive("reboot", func() error {
		c, err := dev.client()
		if err != nil {
			return asPluginError("reboot "+id, err)
		}
		answered, err := dev.reset(ctx, c, "reboot", opts.Force)
		if err != nil {
			return err
		}
		return dev.awaitBack(ctx, c, "reboot", answered)
	})
}

// FactoryReset implements plugins.Plugin: the Zephyr basic group's storage
// erase (settings and other persistent data), then a reset and the same
// wait as Reboot.
func (d *Driver) FactoryReset(ctx context.Context, id string, opts plugins.ManageOptions) error {
	dev, err := d.device(id)
	if err != nil {
		return err
	}
	return dev.exclusive("factory reset", func() error {
		c, err := dev.client()
		if err != nil {
			return asPluginError("factory reset "+id, err)
		}
		if err := c.EraseStorage(ctx); err != nil {
			return asPluginError("factory reset "+id+": erase storage", err)
		}
		dev.log.Info("storage erased")
		answered, err := dev.reset(ctx, c, "factory reset", opts.Force)
		if err != nil {
			return err
		}
		return dev.awaitBack(ctx, c, "factory reset", answered)
	})
}

// reset sends OS reset; on EBUSY it fails with CodeInUse, or with force
// sends it again with force=1. A reset whose answer never came is not a
// failure yet (lost is false then): the device answers before it resets,
// and that answer may be the one lost on the line; the caller's wait for
// echo tells.
func (dev *device) reset(ctx context.Context, c *smp.Client, what string, force bool) (answered bool, err error) {
	err = c.Reset(ctx, false)
	if smp.IsRC(err, smp.EBUSY) {
		if !force {
			return false, plugins.Errorf(plugins.CodeInUse, "%s %s refused: the device's application is busy (EBUSY); use force to override", what, dev.id)
		}
		dev.log.Info("device refused the reset (EBUSY); forcing it")
		err = c.Reset(ctx, true)
	}
	if isTimeout(err) && ctx.Err() == nil {
		dev.log.Warn("no answer to the reset; waiting for the device as if it reset", "op", what, "error", err)
		return false, nil
	}
	if err != nil {
		return false, asPluginError(what+" "+dev.id+": reset", err)
	}
	dev.log.Info("reset accepted", "op", what)
	return true, nil
}

// awaitBack waits for a reset device to answer again, within the bus's
// reboot_timeout and shortly before ctx's deadline. A device that accepted
// the reset but is still silent then is left to the gateway's own watch
// (nil); one that answered neither the reset nor since is a timeout.
func (dev *device) awaitBack(ctx context.Context, c *smp.Client, what string, answered bool) error {
	wctx, cancel := dev.waitContext(ctx)
	defer cancel()
	start := time.Now()
	if err := dev.awaitUp(wctx, c); err != nil {
		if !answered {
			return asPluginError(what+" "+dev.id, fmt.Errorf("no answer to the reset, nor since (%s): %w", time.Since(start).Round(time.Millisecond), err))
		}
		dev.log.Warn("device not answering yet after the reset; the gateway keeps watching", "op", what, "waited", time.Since(start).Round(time.Millisecond), "error", err)
		return nil
	}
	dev.log.Info("device answers again", "op", what, "after", time.Since(start).Round(time.Millisecond))
	return nil
}

// waitContext bounds a wait for the device by reboot_timeout, ending a
// little before ctx's own deadline so the caller still has time to answer.
func (dev *device) waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := dev.bus.cfg.RebootTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - time.Until(dl)/10 - 100*time.Millisecond; left < d {
			d = left
		}
	}
	return context.WithTimeout(ctx, max(d, 0))
}

// probeGap spaces probes that fail at once (a USB serial device whose
// port is gone while it reboots).
const probeGap = 200 * time.Millisecond

// awaitUp waits the bus's reset_delay (the device answers a reset before
// it reboots), forgets what the client learned of the old firmware, then
// probes with echo until the device answers or ctx ends. A port that
// failed meanwhile (a USB device re-enumerating) is reopened.
func (dev *device) awaitUp(ctx context.Context, c *smp.Client) error {
	if !clock.Sleep(ctx, dev.bus.cfg.ResetDelay) {
		return fmt.Errorf("%w: %w", errNotAnswering, ctx.Err())
	}
	c.ForgetDevice()
	var last error
	for {
		c, err := dev.client()
		if err == nil {
			c.ForgetDevice()
			err = c.Echo(ctx, "drover")
		}
		last = err
		var se *smp.Error
		switch {
		case err == nil, errors.As(err, &se):
			return nil // an answer, even an error, is a device that runs
		case !isTimeout(err):
			// Port gone or failing: try again shortly.
			if !clock.Sleep(ctx, probeGap) {
				return fmt.Errorf("%w (last probe: %w)", errNotAnswering, last)
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last probe: %w)", errNotAnswering, last)
		}
	}
}
