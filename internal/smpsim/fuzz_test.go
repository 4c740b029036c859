package smpsim

import (
	"testing"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smp"
)

// FuzzAnswer feeds arbitrary packets to the SMP server: it never panics,
// and an answer, when there is one, is a well-formed response packet that
// fits the device's buffer.
func FuzzAnswer(f *testing.F) {
	seed := func(op smp.Op, g smp.Group, id uint8, body any) {
		b, err := smp.Marshal(body)
		if err != nil {
			f.Fatal(err)
		}
		p, err := smp.Packet{Header: smp.Header{Op: op, Version: smp.Version2, Group: g, ID: id}, Body: b}.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	n := uint32(1000)
	img := BuildImage(mcuboot.Version{Major: 3}, 900, false)
	seed(smp.OpWrite, smp.GroupOS, smp.OSEcho, smp.EchoReq{D: "x"})
	seed(smp.OpWrite, smp.GroupImage, smp.ImageUpload, smp.UploadReq{Len: &n, Data: img[:200]})
	seed(smp.OpWrite, smp.GroupImage, smp.ImageState, smp.ImageStateReq{Hash: make([]byte, 32)})
	seed(smp.OpWrite, smp.GroupSettings, smp.SettingsReadWrite, smp.SettingsWriteReq{Name: "app/name", Val: []byte("v")})
	seed(smp.OpRead, smp.GroupStat, smp.StatRead, smp.StatReadReq{Name: "app"})
	seed(smp.OpRead, smp.GroupOS, smp.OSInfo, smp.OSInfoReq{Format: "a"})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	d, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		rsp, rep, ok := d.answer(pkt)
		if !ok || rep.cut {
			return
		}
		p, err := smp.ParsePacket(rsp)
		if err != nil || !p.Op.IsResponse() || len(rsp) > smp.MaxPacketFor(d.cfg.BufSize) {
			t.Fatalf("answer %x to %x: %v", rsp, pkt, err)
		}
	})
}
