package smp

import (
	"io"
	"sync"
	"testing"
	"time"
)

// feedPort hands its data to the reader in small pieces, then behaves like
// a quiet serial line (tarm/serial's read timeout: (0, io.EOF)) until it
// is closed. Writes are discarded.
type feedPort struct {
	mu     sync.Mutex
	data   []byte
	closed chan struct{}
	once   sync.Once
}

func (p *feedPort) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.data) == 0 {
		select {
		case <-p.closed:
			return 0, io.ErrClosedPipe
		default:
			return 0, io.EOF
		}
	}
	n := copy(b[:min(len(b), 7)], p.data)
	p.data = p.data[n:]
	return n, nil
}

func (p *feedPort) Write(b []byte) (int, error) { return len(b), nil }

func (p *feedPort) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// FuzzClientReader: whatever arrives on the line, in either transport, the
// client's reader neither panics nor stops, and a request still ends (with
// an answer, an error answer or a timeout).
func FuzzClientReader(f *testing.F) {
	ok, _ := AppendFrame(nil, mustPacket(f, Header{Op: OpWriteRsp, Group: GroupOS, ID: OSEcho, Seq: 1}, []byte{0xa1, 0x61, 'r', 0x61, 'x'}), MaxLine)
	f.Add(ok)
	f.Add([]byte("[00:00] <inf> log line\n\x06\x09AAAA\n\x04\x14////\n"))
	f.Add(mustPacket(f, Header{Op: OpWriteRsp, Group: GroupOS, ID: OSEcho, Seq: 1}, []byte{0xa1, 0x62, 'r', 'c', 0x0a}))
	f.Add([]byte{0x01, 0x00, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tr := range []TransportKind{TransportBase64, TransportRaw} {
			p := &feedPort{data: append([]byte(nil), data...), closed: make(chan struct{})}
			c := NewClient(p, ClientOptions{Transport: tr, Timeout: 20 * time.Millisecond, MaxPacket: 1024})
			err := c.Echo(t.Context(), "x")
			_ = err // any outcome but a hang or a panic is fine
			if rerr := c.Err(); rerr != nil {
				t.Fatalf("%s reader stopped on line garbage: %v", tr, rerr)
			}
			c.Close()
		}
	})
}

func mustPacket(t testing.TB, h Header, body []byte) []byte {
	b, err := Packet{Header: h, Body: body}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
