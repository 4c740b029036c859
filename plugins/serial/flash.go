package serial

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

// progressPeriod throttles upload progress: an event per percent of the
// image, or per progressPeriod, whichever comes first.
const progressPeriod = time.Second

// Manifest is the part of a firmware manifest the plugin checks.
type Manifest struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"` // of the image file, hex
}

// Flash implements plugins.Plugin: it uploads an MCUboot image into the
// device's secondary slot, marks it for test, resets the device, waits
// for it to answer, and confirms the new image if it runs — or reports
// rolled-back (phase and error) if the bootloader brought the old one
// back. The upload resumes from the offset the device holds (the device,
// not req.ResumeOffset, decides); an image already in the secondary slot
// is not sent again, and one already running is only confirmed.
func (d *Driver) Flash(ctx context.Context, req plugins.FlashRequest, progress func(plugins.FlashEvent)) error {
	dev, err := d.device(req.DeviceID)
	if err != nil {
		return err
	}
	img, meta, err := loadImage(req)
	if err != nil {
		return err
	}
	emit := func(ev plugins.FlashEvent) {
		if progress != nil {
			progress(ev)
		}
	}
	return dev.exclusive("flash", func() error {
		c, err := dev.client()
		if err != nil {
			return asPluginError("flash "+dev.id, err)
		}
		return dev.flash(ctx, c, img, meta, req.ResumeOffset, emit)
	})
}

// loadImage reads and checks the image file against its manifest.
func loadImage(req plugins.FlashRequest) ([]byte, mcuboot.Image, error) {
	img, err := os.ReadFile(req.ImagePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, mcuboot.Image{}, plugins.Errorf(plugins.CodeNotFound, "flash %s: image %s: no such file", req.DeviceID, req.ImagePath)
	}
	if err != nil {
		return nil, mcuboot.Image{}, plugins.Errorf(plugins.CodeInvalid, "flash %s: read image: %v", req.DeviceID, err)
	}
	meta, err := mcuboot.Parse(img)
	if err != nil {
		return nil, mcuboot.Image{}, plugins.Errorf(plugins.CodeInvalid, "flash %s: %s is not an MCUboot image: %v", req.DeviceID, req.ImagePath, err)
	}
	if !jsonfields.IsNull(req.Manifest) {
		var m Manifest
		if err := json.Unmarshal(req.Manifest, &m); err != nil {
			return nil, mcuboot.Image{}, plugins.Errorf(plugins.CodeInvalid, "flash %s: manifest: %v", req.DeviceID, err)
		}
		if m.Version != "" {
			v, err := mcuboot.ParseVersion(m.Version)
			if err != nil || v.Compare(meta.Version) != 0 {
				return nil, mcuboot.Image{}, plugins.Errorf(plugins.CodeInvalid, "flash %s: manifest says version %s, the image header %s", req.DeviceID, m.Version, meta.Version)
			}
		}
		if m.SHA256 != "" {
			sum := sha256.Sum256(img)
			if !strings.EqualFold(m.SHA256, hex.EncodeToString(sum[:])) {
				return nil, mcuboot.Image{}, plugins.Errorf(plugins.CodeInvalid, "flash %s: image file's SHA-256 %x is not the manifest's %s", req.DeviceID, sum, m.SHA256)
			}
		}
	}
	return img, meta, nil
}

// holds reports whether slot s holds the image: by hash, or by version on
// a device whose list carries no hashes.
func holds(s *smp.ImageSlot, meta mcuboot.Image) bool {
	if s == nil {
		return false
	}
	if len(s.Hash) > 0 {
		return bytes.Equal(s.Hash, meta.Hash)
	}
	return s.Version == meta.Version.String()
}

func findImage(imgs []smp.ImageSlot, meta mcuboot.Image) *smp.ImageSlot {
	for i := range imgs {
		if (imgs[i].Image == nil || *imgs[i].Image == 0) && holds(&imgs[i], meta) {
			return &imgs[i]
		}
	}
	return nil
}

func (dev *device) flash(ctx context.Context, c *smp.Client, img []byte, meta mcuboot.Image, resume int64, emit func(plugins.FlashEvent)) error {
	id := dev.id
	total := int64(len(img))
	fail := func(doing string, err error) error { return asPluginError("flash "+id+": "+doing, err) }
	imgs, err := c.ImageState(ctx)
	if err != nil {
		return fail("read image list", err)
	}
	old := activeSlot(imgs)
	if holds(old, meta) {
		dev.log.Info("image already running", "version", meta.Version.String())
		return dev.confirm(ctx, c, meta, old, total, emit)
	}
	oldVersion := ""
	if old != nil {
		oldVersion = old.Version
	}

	// Upload, unless the secondary slot already holds the image.
	if s := findImage(imgs, meta); s != nil {
		emit(plugins.FlashEvent{Phase: plugins.PhaseUploading, Done: total, Total: total, Message: "image already in slot " + fmt.Sprint(s.Slot)})
	} else {
		emit(plugins.FlashEvent{Phase: plugins.PhaseUploading, Done: 0, Total: total,
			Message: fmt.Sprintf("version %s, %d bytes (gateway's resume offset %d; the device's offset decides)", meta.Version, total, resume)})
		var lastDone int64
		lastAt := time.Now()
		start := time.Now()
		first := true
		err := c.Upload(ctx, img, smp.UploadOptions{Progress: func(off, _ int) {
			done := int64(off)
			msg := ""
			if first && done > 0 && done < total {
				msg = fmt.Sprintf("resuming at offset %d held by the device", done)
			}
			first = false
			if done == total || msg != "" || done-lastDone >= total/100 || time.Since(lastAt) >= progressPeriod {
				emit(plugins.FlashEvent{Phase: plugins.PhaseUploading, Done: done, Total: total, Message: msg})
				lastDone, lastAt = done, time.Now()
			}
		}})
		if err != nil {
			return fail("upload", err)
		}
		el := time.Since(start)
		dev.log.Info("image uploaded", "bytes", total, "took", el.Round(time.Millisecond),
			"bytes_per_s", int(float64(total)/max(el.Seconds(), 1e-3)), "stats", fmt.Sprintf("%+v", c.Stats()))
	}

	emit(plugins.FlashEvent{Phase: plugins.PhaseVerifying, Done: total, Total: total})
	if imgs, err = c.ImageState(ctx); err != nil {
		return fail("read image list after upload", err)
	}
	slot := findImage(imgs, meta)
	if slot == nil {
		return plugins.Errorf(plugins.CodeDeviceError, "flash %s: after the upload the device lists no image with hash %x (version %s)", id, meta.Hash, meta.Version)
	}

	emit(plugins.FlashEvent{Phase: plugins.PhaseApplying, Done: total, Total: total, Message: "marking the new image for test"})
	if !slot.Pending {
		_, err := c.ImageTest(ctx, meta.Hash)
		if smp.IsGroupRC(err, smp.GroupImage, smp.ImgErrImageAlreadyPending) || smp.IsRC(err, smp.EBADSTATE) {
			// A retried test whose first answer was lost: check.
			imgs, serr := c.ImageState(ctx)
			if serr == nil {
				if s := findImage(imgs, meta); s != nil && s.Pending {
					err = nil
				}
			}
		}
		if err != nil {
			return fail("mark image for test", err)
		}
	}

	emit(plugins.FlashEvent{Phase: plugins.PhaseRebooting, Done: total, Total: total})
	if _, err := dev.reset(ctx, c, "flash", false); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, dev.bus.cfg.RebootTimeout)
	err = dev.awaitUp(wctx, c)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return fail("wait for the device after reset", ctx.Err())
		}
		return plugins.Errorf(plugins.CodeTimeout, "flash %s: the device did not answer within %s of its reset (reboot_timeout): %v", id, dev.bus.cfg.RebootTimeout, err)
	}
	if c, err = dev.client(); err != nil {
		return fail("reopen port after reset", err)
	}
	if imgs, err = c.ImageState(ctx); err != nil {
		return fail("read image list after reset", err)
	}
	now := activeSlot(imgs)
	if !holds(now, meta) {
		running := "an unknown image"
		if now != nil {
			running = now.Version
		}
		msg := fmt.Sprintf("rolled-back: device %s runs %s again; the new image %s did not stay running (the bootloader reverted it)", id, running, meta.Version)
		if now != nil && now.Version != oldVersion {
			msg = fmt.Sprintf("rolled-back: device %s runs %s, neither the old %s nor the new %s", id, running, oldVersion, meta.Version)
		}
		emit(plugins.FlashEvent{Phase: plugins.PhaseRolledBack, Done: total, Total: total, Message: msg})
		dev.log.Warn("flash rolled back", "running", running, "wanted", meta.Version.String())
		return plugins.Errorf(plugins.CodeDeviceError, "%s", msg)
	}
	return dev.confirm(ctx, c, meta, now, total, emit)
}

// confirm makes the running new image permanent (unless it already is)
// and reports done.
func (dev *device) confirm(ctx context.Context, c *smp.Client, meta mcuboot.Image, running *smp.ImageSlot, total int64, emit func(plugins.FlashEvent)) error {
	emit(plugins.FlashEvent{Phase: plugins.PhaseConfirming, Done: total, Total: total})
	if !running.Confirmed {
		imgs, err := c.ImageConfirm(ctx, nil)
		if err != nil {
			return asPluginError("flash "+dev.id+": confirm", err)
		}
		if s := activeSlot(imgs); len(imgs) > 0 && (s == nil || !holds(s, meta) || !s.Confirmed) {
			return plugins.Errorf(plugins.CodeDeviceError, "flash %s: confirmed, but the device's list shows the running image unconfirmed", dev.id)
		}
	}
	emit(plugins.FlashEvent{Phase: plugins.PhaseDone, Done: total, Total: total, Message: "running version " + meta.Version.String() + ", confirmed"})
	dev.log.Info("flash done", "version", meta.Version.String())
	return nil
}
