package serial

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smp"
)

// testMCU is a small SMP device on the master side of a pty, built on
// internal/smp and internal/mcuboot: enough of a Zephyr/MCUboot device to
// drive the plugin through every operation until the shared simulator
// (internal/smpsim) takes over. The slave side's path is Port.
type testMCU struct {
	t    testing.TB
	ptm  *os.File
	Port string
	done chan struct{}

	mu        sync.Mutex
	bufSize   int // 0: no params command (ENOTSUP)
	v1Only    bool
	slots     [2]*mcuSlot
	upSHA     []byte
	upLen     uint32
	upData    []byte
	firsts    []int // device offset held at each off=0 request
	settings  map[string][]byte
	stats     map[string]map[string]uint64
	busy      bool // refuse reset with EBUSY unless forced
	badBoot   bool // a test image fails to boot: the bootloader reverts
	silentFor time.Duration
	silent    time.Time // requests before this are ignored (rebooting)
	resets    int
	forced    int
	erased    int
	noise     bool // log lines and a corrupt frame before every answer
	dropNext  int  // answers to drop (lost on the line)
	received  int  // upload data bytes accepted
	cutAt     int  // reset the device (losing the upload session) when its offset passes this; 0: never
	onUpload  func(off int)
}

type mcuSlot struct {
	data      []byte
	meta      mcuboot.Image
	pending   bool
	confirmed bool
}

// newTestMCU starts a device running image version v1 (confirmed).
func newTestMCU(t testing.TB, running mcuboot.Version) *testMCU {
	t.Helper()
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	img := mcuboot.Build(running, bytes.Repeat([]byte{0x5a}, 1000))
	meta, err := mcuboot.Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	m := &testMCU{t: t, ptm: ptm, Port: tty.Name(), done: make(chan struct{}), bufSize: 384,
		slots:     [2]*mcuSlot{{data: img, meta: meta, confirmed: true}},
		settings:  map[string][]byte{"app/interval": {10, 0, 0, 0}, "app/name": []byte("pump")},
		stats:     map[string]map[string]uint64{"app": {"uptime_s": 42, "resets": 0}},
		silentFor: 300 * time.Millisecond}
	// Keep the slave open until the port is opened by the plugin, so the
	// pty does not hang up in between.
	t.Cleanup(func() {
		ptm.Close()
		tty.Close()
		<-m.done
	})
	go m.serve()
	return m
}

func (m *testMCU) serve() {
	defer close(m.done)
	var re smp.Reassembler
	re.MaxPacket = 8192
	var buf []byte
	chunk := make([]byte, 1024)
	for {
		n, err := m.ptm.Read(chunk)
		if err != nil {
			return
		}
		buf = append(buf, chunk[:n]...)
		for {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			line := buf[:i+1]
			pkt, _ := re.Line(line)
			buf = buf[i+1:]
			if pkt != nil {
				m.answer(pkt)
			}
		}
	}
}

func (m *testMCU) answer(raw []byte) {
	p, err := smp.ParsePacket(raw)
	if err != nil {
		return
	}
	m.mu.Lock()
	if time.Now().Before(m.silent) {
		m.mu.Unlock()
		return
	}
	ver := p.Version
	if m.v1Only {
		ver = smp.Version1
	}
	body, after := m.handle(p)
	drop := m.dropNext > 0
	if drop {
		m.dropNext--
	}
	noise := m.noise
	m.mu.Unlock()
	if body != nil && !drop {
		h := p.Header
		h.Op, h.Version = p.Op.Response(), ver
		pkt, err := smp.Packet{Header: h, Body: body}.Marshal()
		if err != nil {
			m.t.Errorf("testMCU: %v", err)
			return
		}
		var out []byte
		if noise {
			out = append(out, "[00:01:02.003] <inf> main: tick\r\n"...)
			bad, _ := smp.AppendFrame(nil, pkt, smp.MaxLine)
			bad[len(bad)-4] ^= 0x01
			out = append(out, bad...)
			out = append(out, 0x00, 0xff, '\n')
		}
		out, _ = smp.AppendFrame(out, pkt, smp.MaxLine)
		_, _ = m.ptm.Write(out)
	}
	if after != nil {
		after()
	}
}

func enc(v any) []byte {
	b, err := smp.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func rc(r smp.RC) []byte { return enc(map[string]any{"rc": int(r)}) }

func (m *testMCU) imgErr(ver uint8, r smp.RC) []byte {
	return smp.ErrorBody(ver, &smp.Error{Group: smp.GroupImage, RC: r})
}

// handle answers one request (m.mu held); after runs once the answer is
// written (a reset).
func (m *testMCU) handle(p smp.Packet) (body []byte, after func()) {
	switch {
	case p.Group == smp.GroupOS && p.ID == smp.OSEcho:
		var req smp.EchoReq
		if smp.Unmarshal(p.Body, &req) != nil {
			return rc(smp.EINVAL), nil
		}
		return enc(smp.EchoRsp{R: req.D}), nil
	case p.Group == smp.GroupOS && p.ID == smp.OSParams:
		if m.bufSize == 0 {
			return rc(smp.ENOTSUP), nil
		}
		return enc(smp.ParamsRsp{BufSize: uint32(m.bufSize), BufCount: 4}), nil
	case p.Group == smp.GroupOS && p.ID == smp.OSInfo:
		return enc(smp.OSInfoRsp{Output: "Zephyr testmcu 3.7.0 arm"}), nil
	case p.Group == smp.GroupOS && p.ID == smp.OSBootloaderInfo:
		var req smp.BootloaderInfoReq
		_ = smp.Unmarshal(p.Body, &req)
		if req.Query == "mode" {
			mode := 2
			return enc(smp.BootloaderInfoRsp{Mode: &mode}), nil
		}
		return enc(smp.BootloaderInfoRsp{Bootloader: "MCUboot"}), nil
	case p.Group == smp.GroupOS && p.ID == smp.OSDateTime:
		return enc(smp.DateTime{DateTime: "2026-12-06T01:02:03.000000Z"}), nil
	case p.Group == smp.GroupOS && p.ID == smp.OSReset:
		var req smp.ResetReq
		_ = smp.Unmarshal(p.Body, &req)
		forced := req.Force != nil && *req.Force == 1
		if m.busy && !forced {
			return rc(smp.EBUSY), nil
		}
		if forced {
			m.forced++
		}
		return enc(map[string]any{}), m.reboot
	case p.Group == smp.GroupImage && p.ID == smp.ImageState:
		if p.Op == smp.OpWrite {
			return m.stateWrite(p)
		}
		return enc(smp.ImageStateRsp{Images: m.list()}), nil
	case p.Group == smp.GroupImage && p.ID == smp.ImageUpload:
		return m.upload(p)
	case p.Group == smp.GroupStat && p.ID == smp.StatRead:
		var req smp.StatReadReq
		_ = smp.Unmarshal(p.Body, &req)
		f, ok := m.stats[req.Name]
		if !ok {
			return rc(smp.ENOENT), nil
		}
		return enc(smp.StatReadRsp{Name: req.Name, Fields: f}), nil
	case p.Group == smp.GroupSettings && p.ID == smp.SettingsReadWrite:
		var req smp.SettingsWriteReq
		if smp.Unmarshal(p.Body, &req) != nil {
			return rc(smp.EINVAL), nil
		}
		if p.Op == smp.OpWrite {
			m.settings[req.Name] = req.Val
			return enc(map[string]any{}), nil
		}
		v, ok := m.settings[req.Name]
		if !ok {
			return rc(smp.ENOENT), nil
		}
		return enc(smp.SettingsReadRsp{Val: v}), nil
	case p.Group == smp.GroupSettings && (p.ID == smp.SettingsCommit || p.ID == smp.SettingsLoadSave):
		return enc(map[string]any{}), nil
	case p.Group == smp.GroupZephyrBasic && p.ID == smp.ZephyrEraseStorage:
		m.erased++
		m.settings = map[string][]byte{}
		return enc(map[string]any{}), nil
	}
	return rc(smp.ENOTSUP), nil
}

func (m *testMCU) list() []smp.ImageSlot {
	var out []smp.ImageSlot
	for i, s := range m.slots {
		if s == nil {
			continue
		}
		out = append(out, smp.ImageSlot{Slot: uint32(i), Version: s.meta.Version.String(), Hash: s.meta.Hash,
			Active: i == 0, Confirmed: s.confirmed, Pending: s.pending, Bootable: true})
	}
	return out
}

func (m *testMCU) stateWrite(p smp.Packet) ([]byte, func()) {
	var req smp.ImageStateReq
	if smp.Unmarshal(p.Body, &req) != nil {
		return rc(smp.EINVAL), nil
	}
	if req.Confirm {
		if req.Hash == nil || bytes.Equal(req.Hash, m.slots[0].meta.Hash) {
			m.slots[0].confirmed = true
			return enc(smp.ImageStateRsp{Images: m.list()}), nil
		}
		return m.imgErr(p.Version, smp.ImgErrConfirmationDenied), nil
	}
	switch {
	case len(req.Hash) != 32:
		return m.imgErr(p.Version, smp.ImgErrInvalidHash), nil
	case bytes.Equal(req.Hash, m.slots[0].meta.Hash):
		return m.imgErr(p.Version, smp.ImgErrTestToActiveDenied), nil
	case m.slots[1] == nil || !bytes.Equal(req.Hash, m.slots[1].meta.Hash):
		return m.imgErr(p.Version, smp.ImgErrHashNotFound), nil
	case m.slots[1].pending:
		return m.imgErr(p.Version, smp.ImgErrImageAlreadyPending), nil
	}
	m.slots[1].pending = true
	return enc(smp.ImageStateRsp{Images: m.list()}), nil
}

func (m *testMCU) upload(p smp.Packet) ([]byte, func()) {
	var req smp.UploadReq
	if smp.Unmarshal(p.Body, &req) != nil {
		return rc(smp.EINVAL), nil
	}
	if req.Off == 0 {
		m.firsts = append(m.firsts, len(m.upData))
		if req.Len == nil {
			return rc(smp.EINVAL), nil
		}
		if !bytes.Equal(req.Sha, m.upSHA) || *req.Len != m.upLen || len(m.upData) == 0 {
			m.upSHA, m.upLen, m.upData = req.Sha, *req.Len, nil
			m.slots[1] = nil // erased
		} else {
			return enc(smp.UploadRsp{Off: uint32(len(m.upData))}), nil
		}
	}
	if m.upSHA == nil {
		// No session (the device rebooted): ask for the start again.
		return enc(smp.UploadRsp{Off: 0}), nil
	}
	if req.Off == uint32(len(m.upData)) {
		m.upData = append(m.upData, req.Data...)
		m.received += len(req.Data)
	}
	off := len(m.upData)
	if m.onUpload != nil {
		m.onUpload(off)
	}
	if off == int(m.upLen) {
		if meta, err := mcuboot.Parse(m.upData); err == nil {
			m.slots[1] = &mcuSlot{data: m.upData, meta: meta}
		}
	}
	if m.cutAt > 0 && off > m.cutAt {
		m.cutAt = 0
		m.upSHA, m.upData = nil, nil // the session lives in RAM
		return nil, m.reboot
	}
	return enc(smp.UploadRsp{Off: uint32(off)}), nil
}

// reboot models MCUboot at the next boot: a pending image is swapped in
// for a test (unless it fails to boot: then the old one stays); a test
// image never confirmed is reverted.
func (m *testMCU) reboot() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resets++
	m.stats["app"]["resets"]++
	m.silent = time.Now().Add(m.silentFor)
	s0, s1 := m.slots[0], m.slots[1]
	switch {
	case s1 != nil && s1.pending:
		s1.pending = false
		if !m.badBoot {
			m.slots[0], m.slots[1] = s1, s0
			s1.confirmed = false
		}
	case !s0.confirmed && s1 != nil:
		m.slots[0], m.slots[1] = s1, s0 // revert
	}
	m.upSHA, m.upData = nil, nil
}
