package smp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/tarm/serial"
	"go.uber.org/goleak"
)

// responder is a minimal SMP server on the master side of a pty, built on
// this package's codec: enough of a device to drive the client. handle
// answers one request; it may return nil to stay silent.
type responder struct {
	t      testing.TB
	ptm    *os.File
	raw    bool
	handle func(r *responder, p Packet) []byte // the answer's wire bytes, or nil

	mu    sync.Mutex
	lines [][]byte // request lines as received (base64)
	done  chan struct{}
	port  *timedPort // the client's side of the line
}

// timedPort records when the client writes what: what a pty delivers at
// once, a UART would carry at the wire rate.
type timedPort struct {
	io.ReadWriteCloser
	mu     sync.Mutex
	writes []timedWrite
}

type timedWrite struct {
	at time.Time
	n  int
}

func (p *timedPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	p.writes = append(p.writes, timedWrite{time.Now(), len(b)})
	p.mu.Unlock()
	return p.ReadWriteCloser.Write(b)
}

// startResponder opens a pty, serves handle on its master and returns the
// responder and a client on the slave, opened with tarm/serial as the
// plugin opens a real port.
func startResponder(t *testing.T, opts ClientOptions, handle func(r *responder, p Packet) []byte) (*responder, *Client) {
	t.Helper()
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	name := tty.Name()
	r := &responder{t: t, ptm: ptm, raw: opts.Transport == TransportRaw, handle: handle, done: make(chan struct{})}
	go r.serve()
	port, err := serial.OpenPort(&serial.Config{Name: name, Baud: 115200, ReadTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tty.Close() // the port holds its own descriptor
	r.port = &timedPort{ReadWriteCloser: port}
	c := NewClient(r.port, opts)
	t.Cleanup(func() {
		c.Close()
		ptm.Close()
		<-r.done
	})
	return r, c
}

func (r *responder) serve() {
	defer close(r.done)
	if r.raw {
		for {
			pkt, err := ReadRaw(r.ptm, 0)
			if err != nil {
				return
			}
			r.answer(pkt)
		}
	}
	br := newLineReader(r.ptm)
	var re Reassembler
	for {
		line, err := br.next()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.lines = append(r.lines, line)
		r.mu.Unlock()
		pkt, ferr := re.Line(line)
		if ferr != nil || pkt == nil {
			continue
		}
		r.answer(pkt)
	}
}

func (r *responder) answer(raw []byte) {
	p, err := ParsePacket(raw)
	if err != nil {
		return
	}
	if out := r.handle(r, p); out != nil {
		_, _ = r.ptm.Write(out)
	}
}

// reply builds the wire form of an answer to p with body v (a value to
// encode, or raw CBOR bytes), in version ver.
func (r *responder) reply(p Packet, ver uint8, v any) []byte {
	body, ok := v.([]byte)
	if !ok {
		var err error
		if body, err = Marshal(v); err != nil {
			r.t.Errorf("responder: %v", err)
			return nil
		}
	}
	h := p.Header
	h.Op, h.Version = p.Op.Response(), ver
	raw, err := Packet{Header: h, Body: body}.Marshal()
	if err != nil {
		r.t.Errorf("responder: %v", err)
		return nil
	}
	if r.raw {
		return raw
	}
	out, err := AppendFrame(nil, raw, MaxLine)
	if err != nil {
		r.t.Errorf("responder: %v", err)
	}
	return out
}

type lineReader struct {
	r   io.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: r} }

func (l *lineReader) next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(l.buf, '\n'); i >= 0 {
			line := bytes.Clone(l.buf[:i+1])
			l.buf = l.buf[i+1:]
			return line, nil
		}
		var b [256]byte
		n, err := l.r.Read(b[:])
		if err != nil {
			return nil, err
		}
		l.buf = append(l.buf, b[:n]...)
	}
}

// echoDevice answers echo in the request's version.
func echoDevice(r *responder, p Packet) []byte {
	var req EchoReq
	if err := Unmarshal(p.Body, &req); err != nil {
		return r.reply(p, p.Version, map[string]any{"rc": int(EINVAL)})
	}
	return r.reply(p, p.Version, EchoRsp{R: req.D})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClientEcho(t *testing.T) {
	for _, tr := range []TransportKind{TransportBase64, TransportRaw} {
		t.Run(string(tr), func(t *testing.T) {
			_, c := startResponder(t, ClientOptions{Transport: tr, Timeout: time.Second}, echoDevice)
			for _, s := range []string{"hello", string(bytes.Repeat([]byte("x"), 300))} {
				if err := c.Echo(ctx(t), s); err != nil {
					t.Fatalf("echo %d bytes: %v", len(s), err)
				}
			}
			if v := c.Version(); v != Version2 {
				t.Errorf("version %d after a v2 device answered, want v2", v)
			}
		})
	}
}

// TestClientVersionFallback: in version auto, a device that refuses v2
// (rc 13) or answers in v1 is spoken to in v1 from then on; in version 2
// the refusal is an error; in version 1 no v2 header is ever sent.
func TestClientVersionFallback(t *testing.T) {
	refuses := func(r *responder, p Packet) []byte {
		if p.Version == Version2 {
			return r.reply(p, Version1, map[string]any{"rc": int(EUnsupportedNew)})
		}
		return echoDevice(r, p)
	}
	answersV1 := func(r *responder, p Packet) []byte {
		var req EchoReq
		_ = Unmarshal(p.Body, &req)
		return r.reply(p, Version1, EchoRsp{R: req.D})
	}
	var sawV2 bool
	onlyV1 := func(r *responder, p Packet) []byte {
		if p.Version != Version1 {
			sawV2 = true
		}
		return echoDevice(r, p)
	}
	for _, tc := range []struct {
		name    string
		mode    VersionMode
		dev     func(*responder, Packet) []byte
		wantErr bool
		wantVer uint8
	}{
		{"auto, device refuses v2", VersionAuto, refuses, false, Version1},
		{"auto, device answers v1", VersionAuto, answersV1, false, Version1},
		{"2, device refuses v2", VersionTwo, refuses, true, Version2},
		{"1", VersionOne, onlyV1, false, Version1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := startResponder(t, ClientOptions{Version: tc.mode, Timeout: time.Second}, tc.dev)
			for range 2 {
				err := c.Echo(ctx(t), "v")
				if tc.wantErr {
					if !IsVersionRefused(err) {
						t.Fatalf("echo: %v, want UNSUPPORTED_TOO_NEW", err)
					}
				} else if err != nil {
					t.Fatalf("echo: %v", err)
				}
			}
			if got := c.Version(); got != tc.wantVer {
				t.Errorf("version %d, want %d", got, tc.wantVer)
			}
			if st := c.Stats(); !tc.wantErr && tc.mode == VersionAuto && st.Requests != 3 && tc.dev != nil && st.Requests > 3 {
				t.Errorf("%d requests for two echoes", st.Requests)
			}
		})
	}
	if sawV2 {
		t.Error("version 1 client sent a v2 header")
	}
}

// TestClientErrorForms: both error forms arrive as *Error with their group.
func TestClientErrorForms(t *testing.T) {
	_, c := startResponder(t, ClientOptions{Timeout: time.Second}, func(r *responder, p Packet) []byte {
		switch p.Group {
		case GroupImage:
			return r.reply(p, Version2, map[string]any{"err": map[string]any{"group": 1, "rc": int(ImgErrHashNotFound)}})
		case GroupStat:
			return r.reply(p, Version2, map[string]any{"rc": int(ENOENT), "rsn": "no such group"})
		}
		return r.reply(p, Version2, map[string]any{"rc": int(ENOTSUP)})
	})
	_, err := c.ImageTest(ctx(t), make([]byte, 32))
	if !IsGroupRC(err, GroupImage, ImgErrHashNotFound) {
		t.Errorf("image test: %v, want image HASH_NOT_FOUND", err)
	}
	_, err = c.StatRead(ctx(t), "nope")
	if !IsRC(err, ENOENT) || !bytes.Contains([]byte(err.Error()), []byte("no such group")) {
		t.Errorf("stat read: %v, want ENOENT with its reason", err)
	}
	// An unknown group answered ENOTSUP.
	err = c.Do(ctx(t), Request{Op: OpRead, Group: 77, ID: 0}, nil)
	if !IsRC(err, ENOTSUP) {
		t.Errorf("unknown group: %v, want ENOTSUP", err)
	}
}

// TestClientSurvivesNoise: console text, garbage, a frame with a bad CRC
// and an over-long frame around the answer; the client skips them all and
// counts them.
func TestClientSurvivesNoise(t *testing.T) {
	bad, _ := AppendFrame(nil, bigPacket(20), MaxLine)
	bad[5] ^= 0x01 // base64 still valid; CRC wrong
	long := append([]byte{0x06, 0x09}, []byte("//8=")...)
	_, c := startResponder(t, ClientOptions{Timeout: time.Second, Retries: 0}, func(r *responder, p Packet) []byte {
		var out []byte
		out = append(out, "[00:00:01.000,000] <inf> app: sensor ok\r\n"...)
		out = append(out, 0xff, 0x00, 0x13, '\n')
		out = append(out, long...)
		out = append(out, '\n')
		out = append(out, bad...)
		out = append(out, "more log\n"...)
		return append(out, echoDevice(r, p)...)
	})
	for range 3 {
		if err := c.Echo(ctx(t), "through the noise"); err != nil {
			t.Fatalf("echo: %v", err)
		}
	}
	st := c.Stats()
	if st.TextLines < 6 || st.Discarded < 3 {
		t.Errorf("stats %+v: want the text lines and discarded frames counted", st)
	}
}

// TestClientRetriesLostAndCorrupt: an answer that never comes, and one
// with a bad CRC, are retried with a new sequence number; a late answer to
// the first attempt is dropped as stale.
func TestClientRetriesLostAndCorrupt(t *testing.T) {
	var n int
	var mu sync.Mutex
	_, c := startResponder(t, ClientOptions{Timeout: 300 * time.Millisecond, Retries: 2}, func(r *responder, p Packet) []byte {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		switch k {
		case 1: // lost
			return nil
		case 2: // corrupt
			out := echoDevice(r, p)
			out[len(out)-3] ^= 0x04
			return out
		}
		return echoDevice(r, p)
	})
	start := time.Now()
	if err := c.Echo(ctx(t), "again"); err != nil {
		t.Fatalf("echo: %v", err)
	}
	if st := c.Stats(); st.Retries != 2 || st.Discarded != 1 {
		t.Errorf("stats %+v, want 2 retries and 1 discarded frame", st)
	}
	// The corrupt answer is retried at once, not after the timeout.
	if el := time.Since(start); el > 300*time.Millisecond+600*time.Millisecond {
		t.Errorf("took %v", el)
	}

	// A device that never answers: ErrTimeout after every attempt.
	_, silent := startResponder(t, ClientOptions{Timeout: 100 * time.Millisecond, Retries: 1}, func(*responder, Packet) []byte { return nil })
	err := silent.Echo(ctx(t), "anyone?")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("silent device: %v, want ErrTimeout", err)
	}
	if st := silent.Stats(); st.Requests != 2 {
		t.Errorf("silent device: %d requests, want 2", st.Requests)
	}
	// Reset is never sent twice.
	if err := silent.Reset(ctx(t), false); !errors.Is(err, ErrTimeout) {
		t.Fatalf("reset: %v", err)
	}
	if st := silent.Stats(); st.Requests != 3 {
		t.Errorf("reset sent %d times, want once", st.Requests-2)
	}
}

// TestClientBufSize: the params answer sets the packet size; a device
// without the command gets the default.
func TestClientBufSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		rsp  any
		want int
	}{
		{"params", ParamsRsp{BufSize: 2048, BufCount: 4}, 2048},
		{"no params", map[string]any{"rc": int(ENOTSUP)}, DefaultBufSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := startResponder(t, ClientOptions{Timeout: time.Second}, func(r *responder, p Packet) []byte {
				return r.reply(p, p.Version, tc.rsp)
			})
			got, err := c.BufSize(ctx(t))
			if err != nil || got != tc.want {
				t.Fatalf("BufSize = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

// uploadDevice is an upload server with Zephyr's offset rules: a chunk at
// an unexpected offset is dropped and answered with the expected one; off
// 0 with the session's sha resumes.
type uploadDevice struct {
	mu      sync.Mutex
	bufSize int
	sha     []byte
	length  uint32
	data    []byte
	packets []int // sizes of upload packets received
	firsts  []uint32
	dropAt  int // answer nothing to the request with this index (1-based), once
	n       int
}

func (d *uploadDevice) handle(r *responder, p Packet) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.Group == GroupOS && p.ID == OSParams {
		return r.reply(p, p.Version, ParamsRsp{BufSize: uint32(d.bufSize), BufCount: 4})
	}
	var req UploadReq
	if err := Unmarshal(p.Body, &req); err != nil {
		return r.reply(p, p.Version, map[string]any{"rc": int(EINVAL)})
	}
	d.n++
	d.packets = append(d.packets, HeaderSize+len(p.Body))
	if req.Off == 0 {
		d.firsts = append(d.firsts, uint32(len(d.data)))
		if req.Len == nil || len(req.Sha) != 32 {
			return r.reply(p, p.Version, map[string]any{"rc": int(EINVAL)})
		}
		if !bytes.Equal(req.Sha, d.sha) || *req.Len != d.length {
			d.sha, d.length, d.data = req.Sha, *req.Len, nil
		} else if len(d.data) > 0 {
			return r.reply(p, p.Version, UploadRsp{Off: uint32(len(d.data))})
		}
	}
	if req.Off == uint32(len(d.data)) {
		d.data = append(d.data, req.Data...)
	}
	if d.n == d.dropAt {
		return nil
	}
	return r.reply(p, p.Version, UploadRsp{Off: uint32(len(d.data))})
}

func TestClientUpload(t *testing.T) {
	img := bytes.Repeat([]byte("firmware"), 2000) // 16000 bytes
	for _, buf := range []int{384, 2048} {
		t.Run(fmt.Sprintf("buf%d", buf), func(t *testing.T) {
			dev := &uploadDevice{bufSize: buf, dropAt: 5}
			_, c := startResponder(t, ClientOptions{Timeout: 300 * time.Millisecond, Retries: 1, EraseTimeout: time.Second}, dev.handle)
			var last int
			err := c.Upload(ctx(t), img, UploadOptions{Progress: func(off, total int) {
				if off < last || total != len(img) {
					t.Errorf("progress %d/%d after %d", off, total, last)
				}
				last = off
			}})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dev.data, img) {
				t.Fatalf("device holds %d bytes, not the image", len(dev.data))
			}
			if sum := sha256.Sum256(img); !bytes.Equal(dev.sha, sum[:]) {
				t.Error("sha is not the image's SHA-256")
			}
			for i, n := range dev.packets {
				if n > buf-4 {
					t.Errorf("packet %d of %d bytes, over buf_size-4 = %d", i, n, buf-4)
				}
			}
			if dev.packets[1] < buf-4-8 {
				t.Errorf("second packet %d bytes, want it to fill the buffer (%d)", dev.packets[1], buf-4)
			}

			// A new upload of the same image resumes where the device is,
			// not from byte 0: cut the session at half, then upload again.
			dev.mu.Lock()
			dev.data = dev.data[:len(img)/2]
			dev.packets, dev.firsts = nil, nil
			dev.mu.Unlock()
			if err := c.Upload(ctx(t), img, UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dev.data, img) || len(dev.firsts) != 1 || dev.firsts[0] != uint32(len(img)/2) {
				t.Fatalf("resume: device held %v at the off=0 request; want one session request at %d", dev.firsts, len(img)/2)
			}
			var sent int
			for _, n := range dev.packets {
				sent += n
			}
			if sent > len(img)/2+len(img)/4 {
				t.Errorf("resume sent %d packet bytes for the %d missing", sent, len(img)/2)
			}
		})
	}
}

// TestClientPacesLines: continuation lines are never written faster than the
// wire carries them (the pty itself has no wire rate), so a device with a
// 2-line pool that decodes a line in its wire time drops none. How close
// to the wire rate the pacing stays is the upload benchmark's business.
func TestClientPacesLines(t *testing.T) {
	const charTime = 10 * time.Second / 115200
	r, c := startResponder(t, ClientOptions{Timeout: time.Second, CharTime: charTime}, echoDevice)
	s := string(bytes.Repeat([]byte("p"), 600)) // about 9 lines
	if err := c.Echo(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	r.port.mu.Lock()
	defer r.port.mu.Unlock()
	w := r.port.writes
	if len(w) < 5 {
		t.Fatalf("%d writes, want one per line", len(w))
	}
	var wire time.Duration
	for i := 1; i < len(w); i++ {
		wire += time.Duration(w[i-1].n) * charTime
		if got := w[i].at.Sub(w[0].at); got < wire {
			t.Errorf("line %d written %v after the first, before the wire time %v of the lines before it", i, got, wire)
		}
	}
}

// TestClientClose: Close fails a waiting request and stops the reader.
func TestClientClose(t *testing.T) {
	got := make(chan struct{})
	var once sync.Once
	_, c := startResponder(t, ClientOptions{Timeout: 10 * time.Second}, func(*responder, Packet) []byte {
		once.Do(func() { close(got) })
		return nil
	})
	errc := make(chan error, 1)
	go func() { errc <- c.Echo(context.Background(), "x") }()
	select { // the request is on the line
	case <-got:
	case err := <-errc:
		t.Fatalf("echo returned early: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("echo after Close: %v, want ErrClosed", err)
	}
	if err := c.Echo(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("echo on a closed client: %v", err)
	}
}
