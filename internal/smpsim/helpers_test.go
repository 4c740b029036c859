package smpsim

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/smp"
	"golang.org/x/sys/unix"
)

// host is a bare SMP host on the device's pseudo-terminal, built on the
// codec only (not on the plugin's client), so the tests see exactly what
// the device puts on the line.
type host struct {
	t    testing.TB
	f    *os.File
	raw  bool
	seq  uint8
	pkts chan smp.Packet
	text chan string
	done chan struct{}
}

func dial(t testing.TB, path string, raw bool) *host {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, f: f, raw: raw, pkts: make(chan smp.Packet, 64), text: make(chan string, 256), done: make(chan struct{})}
	go h.read()
	t.Cleanup(func() {
		_ = f.Close()
		<-h.done
	})
	return h
}

func (h *host) read() {
	defer close(h.done)
	dec := smp.NewDecoder(h.f, 0)
	dec.Text = func(l []byte) {
		select {
		case h.text <- string(l):
		default:
		}
	}
	for {
		var pkt []byte
		var err error
		if h.raw {
			pkt, err = smp.ReadRaw(h.f, 0)
		} else {
			pkt, err = dec.ReadPacket()
		}
		var fe *smp.FrameError
		if errors.As(err, &fe) {
			continue
		}
		if err != nil {
			return
		}
		p, err := smp.ParsePacket(pkt)
		if err != nil {
			continue
		}
		h.pkts <- p
	}
}

// frame encodes a request packet for the line.
func (h *host) frame(op smp.Op, ver uint8, g smp.Group, id uint8, body any) []byte {
	h.t.Helper()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	case nil:
		b = []byte{0xa0}
	default:
		var err error
		if b, err = smp.Marshal(body); err != nil {
			h.t.Fatal(err)
		}
	}
	h.seq++
	pkt, err := smp.Packet{Header: smp.Header{Op: op, Version: ver, Group: g, ID: id, Seq: h.seq}, Body: b}.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	if h.raw {
		return pkt
	}
	wire, err := smp.AppendFrame(nil, pkt, smp.MaxLine)
	if err != nil {
		h.t.Fatal(err)
	}
	return wire
}

func (h *host) write(b []byte) {
	h.t.Helper()
	if _, err := h.f.Write(b); err != nil {
		h.t.Fatal(err)
	}
}

// await returns the next answer with the last request's sequence number.
func (h *host) await(timeout time.Duration) (smp.Packet, bool) {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case p := <-h.pkts:
			if p.Seq == h.seq {
				return p, true
			}
		case <-tm.C:
			return smp.Packet{}, false
		}
	}
}

// do sends one request and returns its answer.
func (h *host) do(op smp.Op, ver uint8, g smp.Group, id uint8, body any) smp.Packet {
	h.t.Helper()
	h.write(h.frame(op, ver, g, id, body))
	p, ok := h.await(10 * time.Second)
	if !ok {
		h.t.Fatalf("no answer to %s %s/%d (v%d)", op, g, id, ver+1)
	}
	return p
}

// echo checks the device still answers.
func (h *host) echo(s string) {
	h.t.Helper()
	p := h.do(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, smp.EchoReq{D: s})
	var r smp.EchoRsp
	if err := smp.DecodeResponse(p.Body, &r); err != nil || r.R != s {
		h.t.Fatalf("echo %q: %q, %v", s, r.R, err)
	}
}

func waitCounters(t testing.TB, d *Device, what string, cond func(Counters) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// upload sends a whole image stop-and-wait with chunks that fill the
// device's buffer, and returns the last answer.
func (h *host) upload(img []byte, chunk int) smp.UploadRsp {
	h.t.Helper()
	sum := sha256Sum(img)
	off := uint32(0)
	var last smp.UploadRsp
	for off < uint32(len(img)) {
		end := min(int(off)+chunk, len(img))
		req := smp.UploadReq{Off: off, Data: img[off:end]}
		if off == 0 {
			n := uint32(len(img))
			req.Len, req.Sha = &n, sum
		}
		p := h.do(smp.OpWrite, smp.Version2, smp.GroupImage, smp.ImageUpload, req)
		if err := smp.DecodeResponse(p.Body, &last); err != nil {
			h.t.Fatalf("upload at %d: %v", off, err)
		}
		if last.Off <= off {
			h.t.Fatalf("upload at %d: device answered off %d", off, last.Off)
		}
		off = last.Off
	}
	return last
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func asSMPError(err error, e **smp.Error) bool { return errors.As(err, e) }
