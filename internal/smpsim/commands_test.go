package smpsim

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/drover-iot/drover/internal/smp"
)

// wantErr is an expected error answer: group (smp.GroupLayer for a plain
// rc) and code.
type wantErr struct {
	group smp.Group
	rc    smp.RC
}

// TestCommands drives every command of a v2 device with raw frames, in v2
// and v1, and checks answers, both error forms and the answer header.
func TestCommands(t *testing.T) {
	path, _ := ServePTY(t, Config{LogInterval: -1})
	h := dial(t, path, false)
	u32 := func(v uint32) *uint32 { return &v }
	badCBOR := []byte{0xbf, 0x61} // indefinite map, cut short

	cases := []struct {
		name  string
		op    smp.Op
		v1    bool
		group smp.Group
		id    uint8
		body  any
		err   *wantErr
		check func(t *testing.T, body []byte)
	}{
		{name: "echo read op", op: smp.OpRead, group: smp.GroupOS, id: smp.OSEcho, body: smp.EchoReq{D: "x"},
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.EchoRsp](t, b, func(r smp.EchoRsp) bool { return r.R == "x" })
			}},
		{name: "echo without d", op: smp.OpWrite, group: smp.GroupOS, id: smp.OSEcho, body: map[string]any{},
			err: &wantErr{smp.GroupLayer, smp.EINVAL}},
		{name: "echo bad cbor", op: smp.OpWrite, group: smp.GroupOS, id: smp.OSEcho, body: badCBOR,
			err: &wantErr{smp.GroupLayer, smp.EINVAL}},
		{name: "params", op: smp.OpRead, group: smp.GroupOS, id: smp.OSParams,
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.ParamsRsp](t, b, func(r smp.ParamsRsp) bool { return r.BufSize == 384 && r.BufCount == 4 })
			}},
		{name: "os info", op: smp.OpRead, group: smp.GroupOS, id: smp.OSInfo, body: smp.OSInfoReq{Format: "sn"},
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.OSInfoRsp](t, b, func(r smp.OSInfoRsp) bool { return r.Output == "Zephyr drover-mcu" })
			}},
		{name: "os info bad format v2", op: smp.OpRead, group: smp.GroupOS, id: smp.OSInfo, body: smp.OSInfoReq{Format: "z"},
			err: &wantErr{smp.GroupOS, osErrInvalidFormat}},
		{name: "os info bad format v1", op: smp.OpRead, v1: true, group: smp.GroupOS, id: smp.OSInfo, body: smp.OSInfoReq{Format: "z"},
			err: &wantErr{smp.GroupLayer, smp.EINVAL}},
		{name: "datetime get", op: smp.OpRead, group: smp.GroupOS, id: smp.OSDateTime,
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.DateTime](t, b, func(r smp.DateTime) bool { return strings.HasPrefix(r.DateTime, "20") })
			}},
		{name: "datetime set", op: smp.OpWrite, group: smp.GroupOS, id: smp.OSDateTime, body: smp.DateTime{DateTime: "2030-01-02T03:04:05"}},
		{name: "datetime set garbage", op: smp.OpWrite, group: smp.GroupOS, id: smp.OSDateTime, body: smp.DateTime{DateTime: "soon"},
			err: &wantErr{smp.GroupOS, osErrInvalidFormat}},
		{name: "bootloader info", op: smp.OpRead, group: smp.GroupOS, id: smp.OSBootloaderInfo,
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.BootloaderInfoRsp](t, b, func(r smp.BootloaderInfoRsp) bool { return r.Bootloader == "MCUboot" })
			}},
		{name: "bootloader mode", op: smp.OpRead, group: smp.GroupOS, id: smp.OSBootloaderInfo, body: smp.BootloaderInfoReq{Query: "mode"},
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.BootloaderInfoRsp](t, b, func(r smp.BootloaderInfoRsp) bool { return r.Mode != nil && *r.Mode == 1 })
			}},
		{name: "bootloader unknown query", op: smp.OpRead, group: smp.GroupOS, id: smp.OSBootloaderInfo, body: smp.BootloaderInfoReq{Query: "x"},
			err: &wantErr{smp.GroupOS, osErrNoAnswer}},
		{name: "reset into recovery", op: smp.OpWrite, group: smp.GroupOS, id: smp.OSReset, body: map[string]any{"boot_mode": 1},
			err: &wantErr{smp.GroupLayer, smp.ENOTSUP}},
		{name: "os command not built", op: smp.OpRead, group: smp.GroupOS, id: smp.OSTaskStat,
			err: &wantErr{smp.GroupLayer, smp.ENOTSUP}},
		{name: "params as write", op: smp.OpWrite, group: smp.GroupOS, id: smp.OSParams,
			err: &wantErr{smp.GroupLayer, smp.ENOTSUP}},
		{name: "unknown group", op: smp.OpRead, group: 99, id: 0,
			err: &wantErr{smp.GroupLayer, smp.ENOTSUP}},
		{name: "unknown group v1", op: smp.OpRead, v1: true, group: 99, id: 0,
			err: &wantErr{smp.GroupLayer, smp.ENOTSUP}},
		{name: "stat list", op: smp.OpRead, group: smp.GroupStat, id: smp.StatList,
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.StatListRsp](t, b, func(r smp.StatListRsp) bool { return strings.Join(r.StatList, ",") == "app,smp" })
			}},
		{name: "stat read", op: smp.OpRead, group: smp.GroupStat, id: smp.StatRead, body: smp.StatReadReq{Name: "smp"},
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.StatReadRsp](t, b, func(r smp.StatReadRsp) bool { return r.Name == "smp" && r.Fields["rx_packets"] > 0 })
			}},
		{name: "stat unknown group v2", op: smp.OpRead, group: smp.GroupStat, id: smp.StatRead, body: smp.StatReadReq{Name: "nope"},
			err: &wantErr{smp.GroupStat, statErrInvalidGroup}},
		{name: "stat unknown group v1", op: smp.OpRead, v1: true, group: smp.GroupStat, id: smp.StatRead, body: smp.StatReadReq{Name: "nope"},
			err: &wantErr{smp.GroupLayer, smp.ENOENT}},
		{name: "settings read", op: smp.OpRead, group: smp.GroupSettings, id: smp.SettingsReadWrite, body: smp.SettingsReadReq{Name: "app/interval"},
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.SettingsReadRsp](t, b, func(r smp.SettingsReadRsp) bool {
					return len(r.Val) == 4 && binary.LittleEndian.Uint32(r.Val) == 10
				})
			}},
		{name: "settings read max size", op: smp.OpRead, group: smp.GroupSettings, id: smp.SettingsReadWrite, body: smp.SettingsReadReq{Name: "app/name", MaxSize: u32(2)},
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.SettingsReadRsp](t, b, func(r smp.SettingsReadRsp) bool { return string(r.Val) == "mc" })
			}},
		{name: "settings unknown v2", op: smp.OpRead, group: smp.GroupSettings, id: smp.SettingsReadWrite, body: smp.SettingsReadReq{Name: "app/nope"},
			err: &wantErr{smp.GroupSettings, setErrKeyNotFound}},
		{name: "settings unknown v1", op: smp.OpRead, v1: true, group: smp.GroupSettings, id: smp.SettingsReadWrite, body: smp.SettingsReadReq{Name: "app/nope"},
			err: &wantErr{smp.GroupLayer, smp.ENOENT}},
		{name: "settings write wrong size", op: smp.OpWrite, group: smp.GroupSettings, id: smp.SettingsReadWrite, body: smp.SettingsWriteReq{Name: "app/interval", Val: []byte{1}},
			err: &wantErr{smp.GroupLayer, smp.EINVAL}},
		{name: "settings write", op: smp.OpWrite, group: smp.GroupSettings, id: smp.SettingsReadWrite, body: smp.SettingsWriteReq{Name: "app/name", Val: []byte("pump room")}},
		{name: "settings name too long", op: smp.OpWrite, group: smp.GroupSettings, id: smp.SettingsReadWrite, body: smp.SettingsWriteReq{Name: strings.Repeat("k", 65), Val: []byte{1}},
			err: &wantErr{smp.GroupSettings, setErrKeyTooLong}},
		{name: "settings commit", op: smp.OpWrite, group: smp.GroupSettings, id: smp.SettingsCommit},
		{name: "settings save", op: smp.OpWrite, group: smp.GroupSettings, id: smp.SettingsLoadSave},
		{name: "settings load", op: smp.OpRead, group: smp.GroupSettings, id: smp.SettingsLoadSave},
		{name: "settings delete", op: smp.OpWrite, group: smp.GroupSettings, id: smp.SettingsDelete, body: smp.SettingsNameReq{Name: "app/name"}},
		{name: "image list", op: smp.OpRead, group: smp.GroupImage, id: smp.ImageState,
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.ImageStateRsp](t, b, func(r smp.ImageStateRsp) bool { return len(r.Images) == 1 && r.Images[0].Version == "1.0.0" })
			}},
		{name: "test active image v2", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageState, body: "active-hash",
			err: &wantErr{smp.GroupImage, smp.ImgErrTestToActiveDenied}},
		{name: "test active image v1", op: smp.OpWrite, v1: true, group: smp.GroupImage, id: smp.ImageState, body: "active-hash",
			err: &wantErr{smp.GroupLayer, smp.EBADSTATE}},
		{name: "test unknown hash", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageState, body: smp.ImageStateReq{Hash: make([]byte, 32)},
			err: &wantErr{smp.GroupImage, smp.ImgErrHashNotFound}},
		{name: "test short hash", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageState, body: smp.ImageStateReq{Hash: []byte{1, 2}},
			err: &wantErr{smp.GroupImage, smp.ImgErrInvalidHash}},
		{name: "test without hash", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageState, body: smp.ImageStateReq{},
			err: &wantErr{smp.GroupLayer, smp.EINVAL}},
		{name: "confirm running", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageState, body: smp.ImageStateReq{Confirm: true}},
		{name: "upload without len", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageUpload, body: smp.UploadReq{Data: []byte{1}},
			err: &wantErr{smp.GroupLayer, smp.EINVAL}},
		{name: "upload bad magic", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageUpload, body: smp.UploadReq{Len: u32(100), Data: make([]byte, 32)},
			err: &wantErr{smp.GroupImage, smp.ImgErrInvalidImageHeaderMagic}},
		{name: "upload too large", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageUpload, body: smp.UploadReq{Len: u32(1 << 30), Data: []byte{1}},
			err: &wantErr{smp.GroupImage, smp.ImgErrInvalidImageTooLarge}},
		{name: "upload off with no session", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageUpload, body: smp.UploadReq{Off: 512, Data: []byte{1}},
			check: func(t *testing.T, b []byte) {
				decodeAs[smp.UploadRsp](t, b, func(r smp.UploadRsp) bool { return r.Off == 0 })
			}},
		{name: "erase active slot", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageErase, body: smp.EraseReq{Slot: u32(0)},
			err: &wantErr{smp.GroupLayer, smp.EBADSTATE}},
		{name: "erase secondary", op: smp.OpWrite, group: smp.GroupImage, id: smp.ImageErase},
		{name: "slot info", op: smp.OpRead, group: smp.GroupImage, id: smp.ImageSlotInfo,
			check: func(t *testing.T, b []byte) {
				decodeAs[map[string]any](t, b, func(r map[string]any) bool { return r["images"] != nil })
			}},
		{name: "storage erase", op: smp.OpWrite, group: smp.GroupZephyrBasic, id: smp.ZephyrEraseStorage},
	}
	activeHash := h.imageList()[0].Hash
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ver := smp.Version2
			if c.v1 {
				ver = smp.Version1
			}
			body := c.body
			if body == "active-hash" {
				body = smp.ImageStateReq{Hash: activeHash}
			}
			p := h.do(c.op, ver, c.group, c.id, body)
			if p.Op != c.op.Response() || p.Group != c.group || p.ID != c.id || p.Version != ver {
				t.Fatalf("answer header %+v to %s %s/%d v%d", p.Header, c.op, c.group, c.id, ver+1)
			}
			checkAnswer(t, p.Body, c.err)
			if c.check != nil {
				c.check(t, p.Body)
			}
		})
	}
}

// checkAnswer checks an answer body for the expected error (or success),
// and that an error comes in the form of the answer's version.
func checkAnswer(t *testing.T, body []byte, want *wantErr) {
	t.Helper()
	err := smp.ResponseError(body)
	if want == nil {
		if err != nil {
			t.Fatalf("answer is an error: %v", err)
		}
		return
	}
	var e *smp.Error
	if !asSMPError(err, &e) || e.Group != want.group || e.RC != want.rc {
		t.Fatalf("answer %v, want group %s rc %d", err, want.group, want.rc)
	}
	if e.Reason == "" {
		t.Errorf("error answer without rsn: %v", err)
	}
}

func decodeAs[T any](t *testing.T, body []byte, ok func(T) bool) {
	t.Helper()
	var v T
	if err := smp.DecodeResponse(body, &v); err != nil {
		t.Fatal(err)
	}
	if !ok(v) {
		t.Fatalf("answer %+v", v)
	}
}

func (h *host) imageList() []smp.ImageSlot {
	h.t.Helper()
	var st smp.ImageStateRsp
	if err := smp.DecodeResponse(h.do(smp.OpRead, smp.Version2, smp.GroupImage, smp.ImageState, nil).Body, &st); err != nil {
		h.t.Fatal(err)
	}
	return st.Images
}
