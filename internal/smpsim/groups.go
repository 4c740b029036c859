package smpsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smp"
)

// ---- OS group (0) ----

func (d *Device) osEcho(body []byte) reply {
	var req struct {
		D *string `cbor:"d"`
	}
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	if req.D == nil {
		return layer(smp.EINVAL, `echo needs "d"`)
	}
	return reply{body: smp.EchoRsp{R: *req.D}}
}

// osReset answers, then reboots. With Faults.RefuseReset the
// application's reset hook refuses with EBUSY unless "force" is set.
func (d *Device) osReset(body []byte) reply {
	var req struct {
		Force    *uint64 `cbor:"force"`
		BootMode *uint64 `cbor:"boot_mode"`
	}
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	if req.BootMode != nil && *req.BootMode != 0 {
		return layer(smp.ENOTSUP, "boot_mode %d not supported (no serial recovery)", *req.BootMode)
	}
	if d.faults.RefuseReset && (req.Force == nil || *req.Force == 0) {
		return layer(smp.EBUSY, "application busy: reset refused (use force)")
	}
	d.log.Info("smpsim reset requested", "force", req.Force != nil && *req.Force != 0)
	return reply{reset: true}
}

func (d *Device) osParams([]byte) reply {
	return reply{body: smp.ParamsRsp{BufSize: uint32(d.cfg.BufSize), BufCount: uint32(d.cfg.BufCount)}}
}

// osInfo answers the uname-like format letters of os_mgmt_info: s kernel
// name, n node name, r release, v version, b build time, m machine, p
// processor, i hardware platform, o operating system, a all.
func (d *Device) osInfo(body []byte) reply {
	var req smp.OSInfoReq
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	f := req.Format
	if f == "" {
		f = "s"
	}
	if f == "a" {
		f = "snrvbmpio"
	}
	parts := map[rune]string{
		's': "Zephyr", 'n': d.cfg.Name, 'r': "3.7.0", 'v': "v3.7.0-drover-sim",
		'b': "Dec  1 2026 12:00:00", 'm': "arm", 'p': "cortex-m4", 'i': "nrf52840dk/nrf52840", 'o': "Zephyr",
	}
	var out []string
	for _, c := range f {
		p, ok := parts[c]
		if !ok {
			return fail(smp.GroupOS, osErrInvalidFormat, "unknown format letter %q", c)
		}
		out = append(out, p)
	}
	return reply{body: smp.OSInfoRsp{Output: strings.Join(out, " ")}}
}

const dateTimeLayout = "2006-01-02T15:04:05.000000"

func (d *Device) osDateTimeGet([]byte) reply {
	return reply{body: smp.DateTime{DateTime: time.Now().Add(d.rtcOffset).UTC().Format(dateTimeLayout)}}
}

// osDateTimeSet takes "yyyy-MM-ddTHH:mm:ss" with optional fraction and
// zone, as Zephyr's date-time set does.
func (d *Device) osDateTimeSet(body []byte) reply {
	var req smp.DateTime
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	var t time.Time
	var err error
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05"} {
		if t, err = time.Parse(layout, req.DateTime); err == nil {
			break
		}
	}
	if err != nil {
		return fail(smp.GroupOS, osErrInvalidFormat, "datetime %q not yyyy-MM-ddTHH:mm:ss", req.DateTime)
	}
	d.rtcOffset = time.Until(t)
	return reply{}
}

// osBootloaderInfo answers MCUboot's name, or its mode for "mode"
// (1: swap using scratch).
func (d *Device) osBootloaderInfo(body []byte) reply {
	var req smp.BootloaderInfoReq
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	switch req.Query {
	case "":
		return reply{body: smp.BootloaderInfoRsp{Bootloader: "MCUboot"}}
	case "mode":
		mode, no := 1, false
		return reply{body: smp.BootloaderInfoRsp{Mode: &mode, NoDowngrade: &no}}
	}
	return fail(smp.GroupOS, osErrNoAnswer, "no answer to bootloader query %q", req.Query)
}

// ---- image group (1) ----

func (d *Device) stateBody() smp.ImageStateRsp {
	var r smp.ImageStateRsp
	for _, e := range d.flash.list() {
		r.Images = append(r.Images, smp.ImageSlot{
			Slot: uint32(e.slot), Version: e.img.Version.String(), Hash: bytes.Clone(e.img.Hash), Bootable: true,
			Pending: e.pending, Confirmed: e.confirmed, Active: e.active, Permanent: e.permanent,
		})
	}
	return r
}

func (d *Device) imageStateRead([]byte) reply { return reply{body: d.stateBody()} }

// imageStateWrite is test (confirm false, hash of the secondary) and
// confirm (no hash or the running image's: keep it; the secondary's: a
// permanent swap), with the refusals of img_mgmt_state.c.
func (d *Device) imageStateWrite(body []byte) reply {
	var req struct {
		Hash    []byte `cbor:"hash"`
		Confirm bool   `cbor:"confirm"`
	}
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	f := &d.flash
	if req.Hash != nil && len(req.Hash) != sha256.Size {
		return fail(smp.GroupImage, smp.ImgErrInvalidHash, "hash of %d bytes, want 32", len(req.Hash))
	}
	isPrimary := req.Hash != nil && bytes.Equal(req.Hash, f.primary.img.Hash)
	isSecondary := req.Hash != nil && !f.secondary.empty() && bytes.Equal(req.Hash, f.secondary.img.Hash)
	switch {
	case !req.Confirm && req.Hash == nil:
		return layer(smp.EINVAL, "test needs the image hash")
	case req.Hash != nil && !isPrimary && !isSecondary:
		return fail(smp.GroupImage, smp.ImgErrHashNotFound, "no image with that hash")
	case !req.Confirm && isPrimary:
		return fail(smp.GroupImage, smp.ImgErrTestToActiveDenied, "image is already active")
	case !req.Confirm:
		if f.permPending || !f.confirmed {
			return fail(smp.GroupImage, smp.ImgErrImageAlreadyPending, "another swap is already pending")
		}
		f.testPending = true
	case isSecondary:
		if !f.confirmed {
			return fail(smp.GroupImage, smp.ImgErrImageAlreadyPending, "a revert is pending: confirm the running image first")
		}
		f.testPending, f.permPending = false, true
	default:
		f.confirmed = true
	}
	return reply{body: d.stateBody()}
}

// imageUpload writes one chunk into the secondary slot. Zephyr's rules:
// off 0 starts a session (len required; the slot is erased first) unless
// len and a sha equal to the session's resume it; a chunk at any other
// offset than the expected one is not an error, the answer names the
// expected offset. The session lives in RAM. The complete image is checked
// as MCUboot would check it (mcuboot.Parse) before it is listed.
func (d *Device) imageUpload(body []byte) reply {
	var req struct {
		Image   *uint64 `cbor:"image"`
		Len     *uint64 `cbor:"len"`
		Off     *uint64 `cbor:"off"`
		Sha     []byte  `cbor:"sha"`
		Data    []byte  `cbor:"data"`
		Upgrade *bool   `cbor:"upgrade"`
	}
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	if req.Off == nil || req.Data == nil {
		return layer(smp.EINVAL, `upload needs "off" and "data"`)
	}
	if req.Image != nil && *req.Image != 0 {
		return fail(smp.GroupImage, smp.ImgErrInvalidSlot, "no image %d (one image pair)", *req.Image)
	}
	u, f := &d.up1, &d.flash
	off := *req.Off
	var rep reply
	if off == 0 {
		if req.Len == nil {
			return layer(smp.EINVAL, `"len" is required with off 0`)
		}
		size := *req.Len
		switch {
		case size == 0 || size > uint64(d.cfg.SlotSize):
			return fail(smp.GroupImage, smp.ImgErrInvalidImageTooLarge, "image of %d bytes, slot holds %d", size, d.cfg.SlotSize)
		case len(req.Sha) > sha256.Size:
			return layer(smp.EINVAL, "sha of %d bytes", len(req.Sha))
		case f.testPending || f.permPending || !f.confirmed:
			return fail(smp.GroupImage, smp.ImgErrNoFreeSlot, "secondary slot in use by a pending swap")
		}
		if u.active && u.size == uint32(size) && len(req.Sha) > 0 && bytes.Equal(req.Sha, u.sha) {
			d.c.UploadResumes++
			u.resumed = true
			return reply{body: smp.UploadRsp{Off: u.off}}
		}
		if len(req.Data) >= 4 && binary.LittleEndian.Uint32(req.Data) != mcuboot.Magic {
			return fail(smp.GroupImage, smp.ImgErrInvalidImageHeaderMagic, "image header magic %#08x", binary.LittleEndian.Uint32(req.Data))
		}
		if req.Upgrade != nil && *req.Upgrade && len(req.Data) >= 28 {
			b := req.Data
			v := mcuboot.Version{Major: b[20], Minor: b[21], Revision: binary.LittleEndian.Uint16(b[22:]), Build: binary.LittleEndian.Uint32(b[24:])}
			if v.Compare(f.primary.img.Version) <= 0 {
				return fail(smp.GroupImage, smp.ImgErrCurrentVersionIsNewer, "version %s not newer than %s", v, f.primary.img.Version)
			}
		}
		f.secondary = slot{}
		*u = upload{active: true, size: uint32(size), sha: bytes.Clone(req.Sha), buf: make([]byte, 0, size)}
		d.c.UploadStarts++
		d.c.LastUploadFrom = 0
		d.log.Info("smpsim upload started", "bytes", size)
		rep.delay += d.faults.EraseDelay
	} else if !u.active || off != uint64(u.off) {
		d.c.OffsetReplies++
		return reply{body: smp.UploadRsp{Off: u.off}}
	}
	if uint64(len(req.Data)) > uint64(u.size-u.off) {
		return fail(smp.GroupImage, smp.ImgErrInvalidLength, "chunk of %d bytes at %d overruns the image of %d", len(req.Data), u.off, u.size)
	}
	if u.resumed {
		u.resumed = false
		d.c.LastUploadFrom = u.off
		d.log.Info("smpsim upload resumed", "offset", u.off)
	}
	u.buf = append(u.buf, req.Data...)
	u.off += uint32(len(req.Data))
	d.c.UploadChunks++
	d.c.UploadBytes += len(req.Data)
	rep.delay += d.faults.WriteDelay
	if at := d.faults.ResetAtOffset; at != 0 && u.off >= at {
		d.faults.ResetAtOffset = 0
		d.log.Info("smpsim power cut (fault)", "offset", u.off)
		return reply{cut: true}
	}
	if u.off < u.size {
		rep.body = smp.UploadRsp{Off: u.off}
		return rep
	}
	img, match, err := u.finish()
	data := u.buf
	*u = upload{}
	if err != nil {
		rep.err = &smp.Error{Group: smp.GroupImage, RC: smp.ImgErrInvalidImageHeader, Reason: err.Error()}
		return rep
	}
	f.secondary = slot{data: data, img: img}
	d.c.UploadsDone++
	d.log.Info("smpsim upload complete", "version", img.Version.String(), "bytes", len(data))
	rep.body = smp.UploadRsp{Off: uint32(len(data)), Match: match}
	return rep
}

// imageErase erases the secondary slot (the only one that may be), unless
// it is marked for the next boot.
func (d *Device) imageErase(body []byte) reply {
	var req smp.EraseReq
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	s := uint32(1)
	if req.Slot != nil {
		s = *req.Slot
	}
	f := &d.flash
	switch {
	case s > 1:
		return fail(smp.GroupImage, smp.ImgErrInvalidSlot, "no slot %d", s)
	case s == 0:
		return layer(smp.EBADSTATE, "slot 0 holds the running image")
	case f.testPending || f.permPending || !f.confirmed:
		return layer(smp.EBADSTATE, "slot 1 is marked for the next boot")
	}
	f.secondary = slot{}
	d.up1 = upload{}
	return reply{delay: d.faults.EraseDelay}
}

func (d *Device) imageSlotInfo([]byte) reply {
	size := d.cfg.SlotSize
	return reply{body: map[string]any{"images": []any{map[string]any{
		"image": 0,
		"slots": []any{
			map[string]any{"slot": 0, "size": size},
			map[string]any{"slot": 1, "size": size, "upload_image_id": 0},
		},
		"max_image_size": size,
	}}}}
}

// ---- stat group (2) ----

// statGroups computes the statistics groups; the counters move: uptime
// and samples with time, the smp group with traffic.
func (d *Device) statGroups() map[string]map[string]uint64 {
	up := time.Since(d.bootAt)
	return map[string]map[string]uint64{
		"app": {
			"uptime_s": uint64(up / time.Second),
			"resets":   uint64(d.c.Resets),
			"samples":  uint64(up / (100 * time.Millisecond)),
		},
		"smp": {
			"rx_packets":       uint64(d.c.Requests),
			"tx_packets":       uint64(d.c.Responses),
			"rx_bad_frames":    uint64(d.c.FramesBad),
			"rx_lines_dropped": uint64(d.c.LinesDropped),
		},
	}
}

func (d *Device) statList([]byte) reply {
	var names []string
	for n := range d.statGroups() {
		names = append(names, n)
	}
	sort.Strings(names)
	return reply{body: smp.StatListRsp{StatList: names}}
}

func (d *Device) statRead(body []byte) reply {
	var req smp.StatReadReq
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	g, ok := d.statGroups()[req.Name]
	if !ok {
		return fail(smp.GroupStat, statErrInvalidGroup, "no statistics group %q", req.Name)
	}
	return reply{body: smp.StatReadRsp{Name: req.Name, Fields: g}}
}

// ---- settings group (3) ----
//
// Writes change the value in RAM (settings_runtime_set); save persists
// every value; load and a reboot reload from storage; delete removes the
// stored value; storage erase (Zephyr basic) wipes storage.

const maxSettingName = 64

func (d *Device) settingName(name string) (Setting, *smp.Error) {
	if len(name) > maxSettingName {
		return Setting{}, &smp.Error{Group: smp.GroupSettings, RC: setErrKeyTooLong, Reason: "setting name too long"}
	}
	s, ok := d.defs[name]
	if !ok {
		return Setting{}, &smp.Error{Group: smp.GroupSettings, RC: setErrKeyNotFound, Reason: "no setting " + name}
	}
	return s, nil
}

func (d *Device) settingsRead(body []byte) reply {
	var req smp.SettingsReadReq
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	if _, e := d.settingName(req.Name); e != nil {
		return reply{err: e}
	}
	v := d.settings[req.Name]
	if req.MaxSize != nil && int(*req.MaxSize) < len(v) {
		v = v[:*req.MaxSize]
	}
	return reply{body: smp.SettingsReadRsp{Val: bytes.Clone(v)}}
}

func (d *Device) settingsWrite(body []byte) reply {
	var req struct {
		Name string `cbor:"name"`
		Val  []byte `cbor:"val"`
	}
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	s, e := d.settingName(req.Name)
	if e != nil {
		return reply{err: e}
	}
	switch {
	case req.Val == nil:
		return layer(smp.EINVAL, `write needs "val"`)
	case s.Size != 0 && len(req.Val) != s.Size:
		return layer(smp.EINVAL, "%s takes %d bytes, got %d", s.Name, s.Size, len(req.Val))
	case len(req.Val) > maxSettingLen:
		return layer(smp.EINVAL, "%s: value of %d bytes over %d", s.Name, len(req.Val), maxSettingLen)
	}
	d.settings[req.Name] = bytes.Clone(req.Val)
	d.c.SettingsWrites++
	d.log.Info("smpsim setting written", "name", req.Name, "value", fmt.Sprintf("%x", req.Val))
	return reply{}
}

func (d *Device) settingsDelete(body []byte) reply {
	var req smp.SettingsNameReq
	if e := decode(body, &req); e != nil {
		return reply{err: e}
	}
	if _, e := d.settingName(req.Name); e != nil {
		return reply{err: e}
	}
	delete(d.stored, req.Name)
	return reply{}
}

func (d *Device) settingsCommit([]byte) reply { return reply{} }

func (d *Device) settingsLoad([]byte) reply {
	d.loadSettings()
	return reply{}
}

func (d *Device) settingsSave([]byte) reply {
	for k, v := range d.settings {
		d.stored[k] = bytes.Clone(v)
	}
	d.c.SettingsSaves++
	d.log.Info("smpsim settings saved")
	return reply{}
}

// ---- Zephyr basic group (63) ----

// eraseStorage wipes the storage partition: stored settings are gone, the
// values in RAM stay until the next reboot loads the defaults.
func (d *Device) eraseStorage([]byte) reply {
	clear(d.stored)
	d.c.StorageErases++
	d.log.Info("smpsim storage erased")
	return reply{delay: d.faults.EraseDelay}
}
