package modbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

// Values of the firmware control register (the gateway writes them).
const (
	FlashBegin  = 1 // start a transfer of image_size bytes with CRC crc: erase, offset 0
	FlashCommit = 2 // all bytes sent: check the CRC
	FlashApply  = 3 // reboot into the verified image
	FlashAbort  = 4 // drop the transfer
)

// Values of the firmware status register (the device reports them).
const (
	FlashIdle      = 0 // no transfer
	FlashReceiving = 1 // taking blocks; offset says how many bytes it holds
	FlashVerifying = 2 // checking the CRC after commit
	FlashVerified  = 3 // CRC good: ready to apply
	FlashBadCRC    = 4 // CRC mismatch at commit: image discarded
	FlashBusy      = 5 // erasing or otherwise busy: ask again
	FlashInvalid   = 6 // the bytes are not an image the device can run: discarded
	FlashApplying  = 7 // apply accepted: about to reboot
)

var flashStatusNames = map[uint16]string{
	FlashIdle: "idle", FlashReceiving: "receiving", FlashVerifying: "verifying", FlashVerified: "verified",
	FlashBadCRC: "bad CRC", FlashBusy: "busy", FlashInvalid: "invalid image", FlashApplying: "applying",
}

func statusName(s uint16) string {
	if n, ok := flashStatusNames[s]; ok {
		return n
	}
	return "unknown status " + strconv.Itoa(int(s))
}

// Timing of Flash.
const (
	progressPeriod = time.Second            // an upload event per second, or per percent
	statusPoll     = 50 * time.Millisecond  // between status reads while the device is busy
	rebootPoll     = 200 * time.Millisecond // least time between probes of a rebooting device
	maxResyncs     = 3                      // block refusals answered by asking the device its offset
)

// Manifest is the part of a firmware manifest the plugin checks: the flat
// {"version", "sha256"} the gateway passes (size is optional).
type Manifest struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"` // of the image file, hex
	Size    *int64 `json:"size,omitempty"`
}

// Flash implements plugins.Plugin for a device whose profile has a
// firmware section: it uploads the image block by block through the
// register window, resuming from the offset the device reports (the
// device, not req.ResumeOffset, decides), commits (the device checks the
// CRC-32), applies (the device reboots into it), waits for the device and
// confirms by reading its version. An image already running is only
// reported done. The bus is taken one transaction at a time, so other
// devices on it are polled between blocks.
func (d *Driver) Flash(ctx context.Context, req plugins.FlashRequest, progress func(plugins.FlashEvent)) error {
	dev, err := d.device(req.DeviceID)
	if err != nil {
		return err
	}
	if dev.profile.Firmware == nil {
		return plugins.Errorf(plugins.CodeUnsupported, "flash %s: profile %s has no firmware section", dev.id, dev.profile.Name)
	}
	img, m, err := loadImage(req)
	if err != nil {
		return err
	}
	if f := dev.profile.Firmware; f.Transfer == TransferFileRecords {
		if last, _ := fileRecordAt(f, uint32(len(img)-1)); last > 0xFFFF {
			return plugins.Errorf(plugins.CodeInvalid, "flash %s: an image of %d bytes needs files %d..%d at %d records each; file numbers end at 65535",
				dev.id, len(img), f.File, last, f.FileRecords)
		}
	}
	if !dev.flashing.CompareAndSwap(false, true) {
		return plugins.Errorf(plugins.CodeBusy, "flash %s: a flash of this device is already running", dev.id)
	}
	defer dev.flashing.Store(false)
	fl := &flasher{dev: dev, spec: dev.profile.Firmware, img: img, crc: crc32.ChecksumIEEE(img), want: m.Version,
		now: d.now, log: d.log.With("bus", dev.bus.name, "device", dev.id),
		emit: func(ev plugins.FlashEvent) {
			if progress != nil {
				progress(ev)
			}
		}}
	return fl.run(ctx, req.ResumeOffset)
}

// loadImage reads the image file and checks it against the manifest
// before anything is sent.
func loadImage(req plugins.FlashRequest) ([]byte, Manifest, error) {
	var m Manifest
	img, err := os.ReadFile(req.ImagePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, m, plugins.Errorf(plugins.CodeNotFound, "flash %s: image %s: no such file", req.DeviceID, req.ImagePath)
	}
	if err != nil {
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: read image: %v", req.DeviceID, err)
	}
	if jsonfields.IsNull(req.Manifest) {
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: no manifest (want {\"version\", \"sha256\"})", req.DeviceID)
	}
	if err := json.Unmarshal(req.Manifest, &m); err != nil {
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: manifest: %v", req.DeviceID, err)
	}
	m.Version = strings.TrimSpace(m.Version)
	switch {
	case m.Version == "":
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: manifest has no version (the flash is confirmed by the version the device reports)", req.DeviceID)
	case m.SHA256 == "":
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: manifest has no sha256", req.DeviceID)
	case m.Size != nil && *m.Size != int64(len(img)):
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: image %s has %d bytes, the manifest says %d (truncated or wrong file)", req.DeviceID, req.ImagePath, len(img), *m.Size)
	case len(img) == 0:
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: image %s is empty", req.DeviceID, req.ImagePath)
	case int64(len(img)) > math.MaxUint32:
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: image of %d bytes does not fit the 32-bit size register", req.DeviceID, len(img))
	}
	sum := sha256.Sum256(img)
	if !strings.EqualFold(m.SHA256, hex.EncodeToString(sum[:])) {
		return nil, m, plugins.Errorf(plugins.CodeInvalid, "flash %s: image file's SHA-256 %x (%d bytes) is not the manifest's %s", req.DeviceID, sum, len(img), m.SHA256)
	}
	return img, m, nil
}

// flasher is one Flash call.
type flasher struct {
	dev  *device
	spec *FirmwareSpec
	img  []byte
	crc  uint32
	want string // manifest version
	old  string // version running before
	now  func() time.Time
	log  *slog.Logger
	emit func(plugins.FlashEvent)
}

func (fl *flasher) total() int64 { return int64(len(fl.img)) }

func (fl *flasher) event(phase, msg string, done int64) {
	fl.emit(plugins.FlashEvent{Phase: phase, Done: done, Total: fl.total(), Message: msg})
}

// fail gives err a contract code with context. A Modbus exception is the
// device refusing a firmware step, so it is a device error, whatever the
// exception says about a plain read or write (codeOf maps 02/03 to
// CodeInvalid, a configuration problem, which this is not).
func (fl *flasher) fail(doing string, err error) error {
	return plugins.Coded("flash "+fl.dev.id+": "+doing, err, func(err error) plugins.Code {
		var ex *Exception
		if errors.As(err, &ex) && ex.Code != ExServerDeviceBusy && ex.Code != ExGatewayPath && ex.Code != ExGatewayTarget {
			return plugins.CodeDeviceError
		}
		return codeOf(err)
	})
}

// deviceState is what the device says about the transfer.
type deviceState struct {
	status       uint16
	offset, size uint32
	crc          uint32
}

// holds reports whether the device's transfer is of this image.
func (fl *flasher) holds(st deviceState) bool {
	return int64(st.size) == fl.total() && st.crc == fl.crc
}

func (fl *flasher) run(ctx context.Context, hint int64) error {
	running, err := fl.version(ctx, fl.dev.client)
	if err != nil {
		return fl.fail("read firmware version", err)
	}
	fl.old = running
	if sameVersion(running, fl.want) {
		fl.log.Info("firmware already running", "version", running)
		fl.event(plugins.PhaseDone, "already running version "+running+"; nothing sent", fl.total())
		return nil
	}
	st, err := fl.settled(ctx)
	if err != nil {
		return err
	}
	switch {
	case st.status == FlashApplying:
		// An earlier call applied the image and was cut before the
		// device came back: wait for it and confirm.
		return fl.finish(ctx, false)
	case st.status == FlashVerified && fl.holds(st):
		fl.event(plugins.PhaseUploading, "the device holds this image, verified", fl.total())
		return fl.apply(ctx)
	case st.status == FlashReceiving && fl.holds(st) && int64(st.offset) <= fl.total():
		// Resume: the device keeps what it received.
	default:
		if st, err = fl.begin(ctx); err != nil {
			return err
		}
	}
	if err := fl.upload(ctx, int64(st.offset), hint); err != nil {
		return err
	}
	if err := fl.commit(ctx); err != nil {
		return err
	}
	return fl.apply(ctx)
}

// begin starts a new transfer: image size and CRC, then the begin command;
// the device may stay busy while it erases.
func (fl *flasher) begin(ctx context.Context) (deviceState, error) {
	c := fl.dev.client
	if err := writeU32(ctx, c, fl.spec.ImageSize, uint32(fl.total())); err != nil {
		return deviceState{}, fl.fail("write image size", err)
	}
	if err := writeU32(ctx, c, fl.spec.CRC, fl.crc); err != nil {
		return deviceState{}, fl.fail("write image CRC", err)
	}
	if err := fl.command(ctx, c, FlashBegin); err != nil {
		return deviceState{}, fl.fail("begin transfer", err)
	}
	st, err := fl.settled(ctx)
	if err != nil {
		return st, err
	}
	if st.status != FlashReceiving || st.offset != 0 || !fl.holds(st) {
		return st, plugins.Errorf(plugins.CodeDeviceError, "flash %s: after begin the device reports status %d (%s), offset %d, size %d, CRC %08x; want receiving at 0 of %d bytes, CRC %08x",
			fl.dev.id, st.status, statusName(st.status), st.offset, st.size, st.crc, fl.total(), fl.crc)
	}
	return st, nil
}

// upload sends the image from byte from, one block per FC 16.
func (fl *flasher) upload(ctx context.Context, from, hint int64) error {
	total, per := fl.total(), int64(fl.spec.DataBytes())
	records := fl.spec.Transfer == TransferFileRecords
	if records {
		from &^= 1 // records are whole registers: resend the odd byte's register
	}
	msg := fmt.Sprintf("version %s, %d bytes in blocks of %d (gateway's resume offset %d; the device's offset decides)", fl.want, total, per, hint)
	if from > 0 {
		msg = fmt.Sprintf("resuming at offset %d held by the device; %s", from, msg)
	}
	fl.event(plugins.PhaseUploading, msg, from)
	start, lastAt, lastDone := time.Now(), time.Now(), from
	resyncs := 0
	for off := from; off < total; {
		n := min(per, total-off)
		if records { // a request stays within one file
			_, rec := fileRecordAt(fl.spec, uint32(off))
			n = min(n, int64(2*(fl.spec.FileRecords-rec)))
		}
		err := writeBlock(ctx, fl.dev.client, fl.spec, uint32(off), fl.img[off:off+n])
		if err != nil {
			if ctx.Err() != nil {
				return fl.fail(fmt.Sprintf("upload cut at offset %d of %d (the device keeps it; Flash again resumes)", off, total), err)
			}
			var ex *Exception
			if errors.As(err, &ex) && ex.Code == ExIllegalDataValue && resyncs < maxResyncs {
				// The device holds less than sent (it lost a block): go
				// on from what it says it holds.
				st, serr := fl.state(ctx)
				if serr == nil && st.status == FlashReceiving && fl.holds(st) && int64(st.offset) < off {
					fl.log.Warn("device offset behind the upload; resending", "sent", off, "device", st.offset)
					off, resyncs = int64(st.offset), resyncs+1
					if records {
						off &^= 1
					}
					continue
				}
			}
			return fl.fail(fmt.Sprintf("the device refused the block at offset %d (%d bytes)", off, n), err)
		}
		off += n
		if off == total || off-lastDone >= total/100 || time.Since(lastAt) >= progressPeriod {
			fl.event(plugins.PhaseUploading, "", off)
			lastDone, lastAt = off, time.Now()
		}
	}
	st, err := fl.state(ctx)
	if err != nil {
		return fl.fail("read offset after upload", err)
	}
	if st.status != FlashReceiving || int64(st.offset) != total {
		return plugins.Errorf(plugins.CodeDeviceError, "flash %s: after the upload the device reports status %d (%s) and offset %d, want receiving and %d",
			fl.dev.id, st.status, statusName(st.status), st.offset, total)
	}
	el := time.Since(start)
	fl.log.Info("image uploaded", "bytes", total-from, "took", el.Round(time.Millisecond),
		"bytes_per_s", int(float64(total-from)/max(el.Seconds(), 1e-3)))
	return nil
}

// commit asks the device to check the image's CRC and waits for its verdict.
func (fl *flasher) commit(ctx context.Context) error {
	fl.event(plugins.PhaseVerifying, fmt.Sprintf("the device checks CRC-32 %08x", fl.crc), fl.total())
	if err := fl.commandChecked(ctx, FlashCommit, func(s uint16) bool { return s != FlashReceiving }); err != nil {
		return fl.fail("commit", err)
	}
	st, err := fl.settled(ctx)
	if err != nil {
		return err
	}
	switch st.status {
	case FlashVerified:
		return nil
	case FlashBadCRC:
		return plugins.Errorf(plugins.CodeDeviceError, "flash %s: the device rejected the image: the CRC-32 of the %d bytes it received is not %08x (status 4, bad CRC); nothing applied, it still runs %s",
			fl.dev.id, fl.total(), fl.crc, fl.old)
	case FlashInvalid:
		return plugins.Errorf(plugins.CodeDeviceError, "flash %s: the device rejected the image as not one it can run (status 6); nothing applied, it still runs %s",
			fl.dev.id, fl.old)
	}
	return plugins.Errorf(plugins.CodeDeviceError, "flash %s: after commit the device reports status %d (%s), not verified; nothing applied",
		fl.dev.id, st.status, statusName(st.status))
}

// commandChecked sends a command that must not simply be resent: a
// second commit, or a second apply, to a device that took the first is
// refused (it is no longer receiving, or verified). After a lost or
// garbled answer it reads the status instead, and resends only if
// tookEffect says the command did not arrive.
func (fl *flasher) commandChecked(ctx context.Context, cmd uint16, tookEffect func(status uint16) bool) error {
	var err error
	for range fl.dev.client.retries + 1 {
		if err = fl.command(ctx, fl.probeClient(), cmd); err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		s, serr := readU16(ctx, fl.dev.client, fl.spec.Status)
		if serr == nil && tookEffect(s) {
			return nil
		}
	}
	return err
}

// apply sends the apply command, which reboots the device, once: a device
// that reboots before its answer leaves the gateway with a timeout, which
// is no reason to resend (awaitReboot resends if the device is still
// verified, not applying, so the command was lost).
func (fl *flasher) apply(ctx context.Context) error {
	fl.event(plugins.PhaseApplying, "the device boots the verified image", fl.total())
	if err := fl.command(ctx, fl.probeClient(), FlashApply); err != nil && !(retryable(err) && ctx.Err() == nil) {
		return fl.fail("apply", err)
	}
	return fl.finish(ctx, true)
}

// finish waits for the device to come back and compares its version.
func (fl *flasher) finish(ctx context.Context, applied bool) error {
	fl.event(plugins.PhaseRebooting, "", fl.total())
	if err := fl.awaitReboot(ctx); err != nil {
		return err
	}
	fl.event(plugins.PhaseConfirming, "", fl.total())
	now, err := fl.version(ctx, fl.dev.client)
	if err != nil {
		return fl.fail("read firmware version after reboot", err)
	}
	if !sameVersion(now, fl.want) {
		msg := fmt.Sprintf("rolled-back: device %s runs %s again; the new image %s did not stay running (the device reverted it)", fl.dev.id, now, fl.want)
		if !applied || !sameVersion(now, fl.old) {
			msg = fmt.Sprintf("rolled-back: device %s runs %s, neither the old %s nor the new %s", fl.dev.id, now, fl.old, fl.want)
		}
		fl.event(plugins.PhaseRolledBack, msg, fl.total())
		fl.log.Warn("flash rolled back", "running", now, "wanted", fl.want)
		return plugins.Errorf(plugins.CodeDeviceError, "%s", msg)
	}
	fl.event(plugins.PhaseDone, "running version "+now, fl.total())
	fl.log.Info("flash done", "version", now, "was", fl.old)
	return nil
}

// awaitReboot probes the status register until the device answers with
// anything but applying, within the profile's reboot_timeout.
func (fl *flasher) awaitReboot(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, fl.spec.RebootTimeout)
	defer cancel()
	c := fl.probeClient()
	resent := 0
	for {
		at := time.Now()
		s, err := readU16(wctx, c, fl.spec.Status)
		var ex *Exception
		switch {
		case err == nil && s == FlashVerified:
			// Still verified: the apply never arrived. A device back
			// from its reboot is idle, never verified.
			if resent > fl.dev.client.retries {
				return plugins.Errorf(plugins.CodeDeviceError, "flash %s: the device stays verified: it did not act on apply (sent %d times); nothing applied", fl.dev.id, resent+1)
			}
			resent++
			if err := fl.command(wctx, c, FlashApply); err != nil && !retryable(err) {
				return fl.fail("apply (resent)", err)
			}
			continue
		case err == nil && s != FlashApplying, errors.As(err, &ex):
			return nil // up again (an exception is an answer too)
		case ctx.Err() != nil:
			return fl.fail("wait for the device to reboot", ctx.Err())
		case wctx.Err() != nil:
			return plugins.Errorf(plugins.CodeTimeout, "flash %s: the device did not come back within %s of apply (firmware.reboot_timeout)", fl.dev.id, fl.spec.RebootTimeout)
		}
		// A device that refuses connections while it boots answers at
		// once: do not hammer it.
		if err := sleepUntil(wctx, at.Add(rebootPoll)); err != nil && ctx.Err() != nil {
			return fl.fail("wait for the device to reboot", ctx.Err())
		}
	}
}

// probeClient is a client of the device without retries, for requests
// that must go out once (apply) or that are repeated anyway (probes).
func (fl *flasher) probeClient() *client {
	c := fl.dev.client
	return newClient(c.link, c.unit, &Bus{Timeout: c.timeout}, c.delay, fl.log)
}

// settled reads the device's state, waiting while it is busy or
// verifying, at most the profile's busy_timeout.
func (fl *flasher) settled(ctx context.Context) (deviceState, error) {
	deadline := time.Now().Add(fl.spec.BusyTimeout)
	for {
		st, err := fl.state(ctx)
		if err != nil {
			return st, fl.fail("read firmware status", err)
		}
		if st.status != FlashBusy && st.status != FlashVerifying {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, plugins.Errorf(plugins.CodeTimeout, "flash %s: the device stayed %s for %s (firmware.busy_timeout)", fl.dev.id, statusName(st.status), fl.spec.BusyTimeout)
		}
		if err := sleepUntil(ctx, time.Now().Add(statusPoll)); err != nil {
			return st, fl.fail("wait for the device", err)
		}
	}
}

func (fl *flasher) state(ctx context.Context) (deviceState, error) {
	var st deviceState
	var err error
	c := fl.dev.client
	if st.status, err = readU16(ctx, c, fl.spec.Status); err != nil {
		return st, err
	}
	if st.offset, err = readU32(ctx, c, fl.spec.Offset); err != nil {
		return st, err
	}
	if st.size, err = readU32(ctx, c, fl.spec.ImageSize); err != nil {
		return st, err
	}
	st.crc, err = readU32(ctx, c, fl.spec.CRC)
	return st, err
}

// command writes the control register. Exception 05 (acknowledge: the
// device works on it) is success.
func (fl *flasher) command(ctx context.Context, c *client, cmd uint16) error {
	err := c.write(ctx, writeOp{table: TableHolding, start: fl.spec.Control, count: 1, data: []byte{byte(cmd >> 8), byte(cmd)}})
	var ex *Exception
	if errors.As(err, &ex) && ex.Code == ExAcknowledge {
		return nil
	}
	return err
}

// version reads the running firmware version where the profile says.
func (fl *flasher) version(ctx context.Context, c *client) (string, error) {
	v := &fl.spec.Version
	switch {
	case v.FC43:
		objs, err := readDeviceID(ctx, c)
		if err != nil {
			return "", err
		}
		s, ok := objs[objMajorMinorRevision]
		if !ok {
			return "", fmt.Errorf("%w: device identification without object 0x02 (MajorMinorRevision)", ErrBadFrame)
		}
		return trimVersion(s), nil
	case v.Point != "":
		p, _ := fl.dev.profile.Point(v.Point)
		vals, errs, err := fl.dev.read(ctx, []Point{*p}, fl.now)
		if err != nil {
			return "", err
		}
		if vals[0].Quality != plugins.QualityGood {
			return "", fmt.Errorf("read version point %s: %w", v.Point, errs[0])
		}
		return trimVersion(plainString(vals[0].Value)), nil
	}
	start, n, _ := v.registers()
	data, err := c.readBlock(ctx, Request{Table: v.Table, Address: start, Count: n})
	if err != nil {
		return "", err
	}
	return v.text(data)
}

// trimVersion drops the padding devices put around a version string.
func trimVersion(s string) string { return strings.Trim(s, "\x00 \t\r\n") }

// sameVersion compares versions as text, or as dotted numbers where both
// are (so a device's "1.2" is the manifest's "1.2.0", and "v1.2.0" too).
func sameVersion(a, b string) bool {
	a, b = trimVersion(a), trimVersion(b)
	if a == b {
		return true
	}
	na, oka := dotted(strings.TrimPrefix(a, "v"))
	nb, okb := dotted(strings.TrimPrefix(b, "v"))
	if !oka || !okb {
		return false
	}
	for i := range max(len(na), len(nb)) {
		var x, y uint64
		if i < len(na) {
			x = na[i]
		}
		if i < len(nb) {
			y = nb[i]
		}
		if x != y {
			return false
		}
	}
	return true
}

func dotted(s string) ([]uint64, bool) {
	var out []uint64
	for part := range strings.SplitSeq(s, ".") {
		n, err := strconv.ParseUint(part, 10, 64)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, len(out) > 0
}
