package smpsim

import (
	"bytes"
	"testing"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smp"
)

// fastReset keeps reboots short in tests.
func fastReset(c Config) Config {
	c.ResetDelay, c.ResetSilence, c.LogInterval = -1, 20e6, -1
	return c
}

func (h *host) stateWrite(hash []byte, confirm bool) error {
	h.t.Helper()
	return smp.ResponseError(h.do(smp.OpWrite, smp.Version2, smp.GroupImage, smp.ImageState, smp.ImageStateReq{Hash: hash, Confirm: confirm}).Body)
}

// reset sends OS reset and waits for the reboot to complete.
func (h *host) reset(d *Device) {
	h.t.Helper()
	boots := d.Counters().Boots
	if err := smp.ResponseError(h.do(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSReset, nil).Body); err != nil {
		h.t.Fatalf("reset: %v", err)
	}
	waitCounters(h.t, d, "reboot", func(c Counters) bool { return c.Boots > boots })
}

type slotWant struct {
	version                               string
	active, confirmed, pending, permanent bool
}

func checkSlots(t *testing.T, got []smp.ImageSlot, want ...slotWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("image list %+v, want %+v", got, want)
	}
	for i, w := range want {
		g := got[i]
		if g.Slot != uint32(i) || g.Version != w.version || g.Active != w.active || g.Confirmed != w.confirmed || g.Pending != w.pending || g.Permanent != w.permanent {
			t.Fatalf("slot %d: %+v, want %+v", i, g, w)
		}
	}
}

// TestFirmwareUpdate walks MCUboot's paths: test → reset → confirm;
// test → reset → reset (revert); a crashing image; a permanent swap.
func TestFirmwareUpdate(t *testing.T) {
	v2 := mcuboot.Version{Major: 2}
	good := BuildImage(v2, 3000, false)
	goodHash := mustParse(t, good).Hash

	cases := []struct {
		name   string
		cfg    Config
		img    []byte
		steps  func(t *testing.T, h *host, d *Device, hash []byte)
		final  []slotWant
		counts func(c Counters) bool
	}{
		{name: "test, boot, confirm", img: good,
			steps: func(t *testing.T, h *host, d *Device, hash []byte) {
				checkSlots(t, h.imageList(), slotWant{version: "1.0.0", active: true, confirmed: true}, slotWant{version: "2.0.0"})
				if err := h.stateWrite(hash, false); err != nil {
					t.Fatal(err)
				}
				checkSlots(t, h.imageList(), slotWant{version: "1.0.0", active: true, confirmed: true}, slotWant{version: "2.0.0", pending: true})
				h.reset(d)
				checkSlots(t, h.imageList(), slotWant{version: "2.0.0", active: true}, slotWant{version: "1.0.0", confirmed: true})
				if err := h.stateWrite(nil, true); err != nil {
					t.Fatal(err)
				}
				h.reset(d)
			},
			final:  []slotWant{{version: "2.0.0", active: true, confirmed: true}, {version: "1.0.0"}},
			counts: func(c Counters) bool { return c.Reverts == 0 && c.Boots == 3 && c.UploadsDone == 1 }},
		{name: "not confirmed reverts", img: good,
			steps: func(t *testing.T, h *host, d *Device, hash []byte) {
				if err := h.stateWrite(hash, false); err != nil {
					t.Fatal(err)
				}
				h.reset(d)
				h.reset(d)
			},
			final:  []slotWant{{version: "1.0.0", active: true, confirmed: true}, {version: "2.0.0"}},
			counts: func(c Counters) bool { return c.Reverts == 1 && c.BootFailures == 0 }},
		{name: "image with the bad marker crashes", img: BuildImage(v2, 3000, true),
			steps: func(t *testing.T, h *host, d *Device, hash []byte) {
				if err := h.stateWrite(hash, false); err != nil {
					t.Fatal(err)
				}
				h.reset(d)
			},
			final:  []slotWant{{version: "1.0.0", active: true, confirmed: true}, {version: "2.0.0"}},
			counts: func(c Counters) bool { return c.Reverts == 1 && c.BootFailures == 1 }},
		{name: "version configured to fail boot", img: good, cfg: Config{Faults: Faults{FailBoot: []string{"2.0.0"}}},
			steps: func(t *testing.T, h *host, d *Device, hash []byte) {
				if err := h.stateWrite(hash, false); err != nil {
					t.Fatal(err)
				}
				h.reset(d)
			},
			final:  []slotWant{{version: "1.0.0", active: true, confirmed: true}, {version: "2.0.0"}},
			counts: func(c Counters) bool { return c.BootFailures == 1 }},
		{name: "permanent swap", img: good,
			steps: func(t *testing.T, h *host, d *Device, hash []byte) {
				if err := h.stateWrite(hash, true); err != nil {
					t.Fatal(err)
				}
				checkSlots(t, h.imageList(), slotWant{version: "1.0.0", active: true, confirmed: true}, slotWant{version: "2.0.0", pending: true, permanent: true})
				h.reset(d)
			},
			final:  []slotWant{{version: "2.0.0", active: true, confirmed: true}, {version: "1.0.0"}},
			counts: func(c Counters) bool { return c.Reverts == 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, d := ServePTY(t, fastReset(c.cfg))
			h := dial(t, path, false)
			rsp := h.upload(c.img, 200)
			if rsp.Match == nil || !*rsp.Match {
				t.Fatalf("last chunk: %+v, want match", rsp)
			}
			c.steps(t, h, d, mustParse(t, c.img).Hash)
			checkSlots(t, h.imageList(), c.final...)
			if cnt := d.Counters(); !c.counts(cnt) {
				t.Fatalf("counters %+v", cnt)
			}
		})
	}
	_ = goodHash
}

func mustParse(t testing.TB, b []byte) mcuboot.Image {
	t.Helper()
	img, err := mcuboot.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestUploadRules checks resume, offset replies, refusals and the check of
// a complete image.
func TestUploadRules(t *testing.T) {
	img := BuildImage(mcuboot.Version{Major: 1, Minor: 5}, 2000, false)
	n := uint32(len(img))
	sha := sha256Sum(img)
	up := func(h *host, req smp.UploadReq) (smp.UploadRsp, error) {
		var r smp.UploadRsp
		err := smp.DecodeResponse(h.do(smp.OpWrite, smp.Version2, smp.GroupImage, smp.ImageUpload, req).Body, &r)
		return r, err
	}
	t.Run("wrong offset answers the expected one, resume continues", func(t *testing.T) {
		path, d := ServePTY(t, fastReset(Config{}))
		h := dial(t, path, false)
		r, err := up(h, smp.UploadReq{Len: &n, Sha: sha, Data: img[:300]})
		if err != nil || r.Off != 300 {
			t.Fatalf("first chunk: %+v %v", r, err)
		}
		if r, err = up(h, smp.UploadReq{Off: 900, Data: img[900:1000]}); err != nil || r.Off != 300 {
			t.Fatalf("chunk at the wrong offset: %+v %v", r, err)
		}
		if r, err = up(h, smp.UploadReq{Off: 300, Data: img[300:600]}); err != nil || r.Off != 600 {
			t.Fatalf("second chunk: %+v %v", r, err)
		}
		// The host lost its place: off 0 with the same len and sha resumes.
		if r, err = up(h, smp.UploadReq{Len: &n, Sha: sha, Data: img[:300]}); err != nil || r.Off != 600 {
			t.Fatalf("resume: %+v %v", r, err)
		}
		for r.Off < n && err == nil {
			r, err = up(h, smp.UploadReq{Off: r.Off, Data: img[r.Off:min(r.Off+300, n)]})
		}
		if err != nil || r.Off != n || r.Match == nil || !*r.Match {
			t.Fatalf("last chunk: %+v %v", r, err)
		}
		c := d.Counters()
		if c.UploadResumes != 1 || c.OffsetReplies != 1 || c.UploadStarts != 1 || c.LastUploadFrom != 600 || c.UploadBytes != int(n) {
			t.Fatalf("counters %+v", c)
		}
	})
	t.Run("a different sha starts over", func(t *testing.T) {
		path, d := ServePTY(t, fastReset(Config{}))
		h := dial(t, path, false)
		if _, err := up(h, smp.UploadReq{Len: &n, Sha: sha, Data: img[:300]}); err != nil {
			t.Fatal(err)
		}
		other := bytes.Clone(sha)
		other[0] ^= 1
		if r, err := up(h, smp.UploadReq{Len: &n, Sha: other, Data: img[:300]}); err != nil || r.Off != 300 {
			t.Fatalf("new session: %+v %v", r, err)
		}
		if c := d.Counters(); c.UploadStarts != 2 || c.UploadResumes != 0 {
			t.Fatalf("counters %+v", c)
		}
	})
	t.Run("power cut mid-upload loses the session", func(t *testing.T) {
		path, d := ServePTY(t, fastReset(Config{Faults: Faults{ResetAtOffset: 500}}))
		h := dial(t, path, false)
		if _, err := up(h, smp.UploadReq{Len: &n, Sha: sha, Data: img[:300]}); err != nil {
			t.Fatal(err)
		}
		h.write(h.frame(smp.OpWrite, smp.Version2, smp.GroupImage, smp.ImageUpload, smp.UploadReq{Off: 300, Data: img[300:600]}))
		waitCounters(t, d, "reboot after the power cut", func(c Counters) bool { return c.PowerCuts == 1 && c.Boots == 2 })
		if r, err := up(h, smp.UploadReq{Off: 600, Data: img[600:900]}); err != nil || r.Off != 0 {
			t.Fatalf("after the cut: %+v %v, want off 0", r, err)
		}
		if r, err := up(h, smp.UploadReq{Len: &n, Sha: sha, Data: img[:300]}); err != nil || r.Off != 300 {
			t.Fatalf("restart: %+v %v", r, err)
		}
		if c := d.Counters(); c.UploadStarts != 2 || c.UploadResumes != 0 {
			t.Fatalf("counters %+v", c)
		}
	})
	t.Run("corrupt image is refused at the end", func(t *testing.T) {
		path, d := ServePTY(t, fastReset(Config{}))
		h := dial(t, path, false)
		bad := bytes.Clone(img)
		bad[100] ^= 0xff
		r, err := up(h, smp.UploadReq{Len: &n, Data: bad[:300]})
		for err == nil && r.Off < n {
			r, err = up(h, smp.UploadReq{Off: r.Off, Data: bad[r.Off:min(r.Off+300, n)]})
		}
		if !smp.IsGroupRC(err, smp.GroupImage, smp.ImgErrInvalidImageHeader) {
			t.Fatalf("last chunk of a corrupt image: %v", err)
		}
		if len(d.Images()) != 1 {
			t.Fatalf("corrupt image listed: %+v", d.Images())
		}
	})
	t.Run("upgrade refuses an older version", func(t *testing.T) {
		path, _ := ServePTY(t, fastReset(Config{ImageVersion: "1.6.0"}))
		h := dial(t, path, false)
		yes := true
		_, err := up(h, smp.UploadReq{Len: &n, Data: img[:300], Upgrade: &yes})
		if !smp.IsGroupRC(err, smp.GroupImage, smp.ImgErrCurrentVersionIsNewer) {
			t.Fatalf("older upgrade: %v", err)
		}
	})
	t.Run("pending slot refuses a new upload and erase", func(t *testing.T) {
		path, d := ServePTY(t, fastReset(Config{}))
		h := dial(t, path, false)
		h.upload(img, 300)
		if err := h.stateWrite(mustParse(t, img).Hash, false); err != nil {
			t.Fatal(err)
		}
		if _, err := up(h, smp.UploadReq{Len: &n, Data: img[:300]}); !smp.IsGroupRC(err, smp.GroupImage, smp.ImgErrNoFreeSlot) {
			t.Fatalf("upload over a pending slot: %v", err)
		}
		if err := smp.ResponseError(h.do(smp.OpWrite, smp.Version2, smp.GroupImage, smp.ImageErase, nil).Body); !smp.IsRC(err, smp.EBADSTATE) {
			t.Fatalf("erase of a pending slot: %v", err)
		}
		_ = d
	})
}

// TestResetRefusal: EBUSY unless forced.
func TestResetRefusal(t *testing.T) {
	path, d := ServePTY(t, fastReset(Config{Faults: Faults{RefuseReset: true}}))
	h := dial(t, path, false)
	err := smp.ResponseError(h.do(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSReset, nil).Body)
	if !smp.IsRC(err, smp.EBUSY) {
		t.Fatalf("unforced reset: %v", err)
	}
	one := uint8(1)
	if err := smp.ResponseError(h.do(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSReset, smp.ResetReq{Force: &one}).Body); err != nil {
		t.Fatalf("forced reset: %v", err)
	}
	waitCounters(t, d, "reboot", func(c Counters) bool { return c.Boots == 2 && c.Resets == 1 })
	h.echo("back")
}

// TestSettingsPersistence: writes live in RAM until saved; a reboot loads
// storage; storage erase brings the defaults back.
func TestSettingsPersistence(t *testing.T) {
	path, d := ServePTY(t, fastReset(Config{}))
	h := dial(t, path, false)
	write := func(name string, v []byte) {
		t.Helper()
		if err := smp.ResponseError(h.do(smp.OpWrite, smp.Version2, smp.GroupSettings, smp.SettingsReadWrite, smp.SettingsWriteReq{Name: name, Val: v}).Body); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		t.Helper()
		var r smp.SettingsReadRsp
		if err := smp.DecodeResponse(h.do(smp.OpRead, smp.Version2, smp.GroupSettings, smp.SettingsReadWrite, smp.SettingsReadReq{Name: name}).Body, &r); err != nil {
			t.Fatal(err)
		}
		return string(r.Val)
	}
	op := func(g smp.Group, id uint8) {
		t.Helper()
		if err := smp.ResponseError(h.do(smp.OpWrite, smp.Version2, g, id, nil).Body); err != nil {
			t.Fatal(err)
		}
	}
	write("app/name", []byte("saved"))
	op(smp.GroupSettings, smp.SettingsLoadSave)
	write("app/name", []byte("unsaved"))
	if got := read("app/name"); got != "unsaved" {
		t.Fatalf("after write: %q", got)
	}
	h.reset(d)
	if got := read("app/name"); got != "saved" {
		t.Fatalf("after reboot: %q, want the saved value", got)
	}
	op(smp.GroupZephyrBasic, smp.ZephyrEraseStorage)
	if got := read("app/name"); got != "saved" {
		t.Fatalf("after erase, before reboot: %q", got)
	}
	h.reset(d)
	if got := read("app/name"); got != "mcu" {
		t.Fatalf("after erase and reboot: %q, want the default", got)
	}
	if c := d.Counters(); c.SettingsWrites != 2 || c.SettingsSaves != 1 || c.StorageErases != 1 {
		t.Fatalf("counters %+v", c)
	}
}
