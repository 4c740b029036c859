package modbussim

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pumpProfilePath is the example profile shipped in configs/devsim.
func pumpProfilePath(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "configs", "devsim", "demo-pump.yaml")
}

func loadPump(t *testing.T) *Profile {
	t.Helper()
	p, err := LoadProfile(pumpProfilePath(t))
	if err != nil {
		t.Fatalf("load pump profile: %v", err)
	}
	return p
}

// endpoints is a running simulator under test.
type endpoints struct {
	sim   *Sim
	clock *fakeClock
	tcp   string
	rtu   string // pty path, "" if not opened
	ascii string
}

type startOpts struct {
	opts  Options
	rtu   bool
	ascii bool
}

// startSim runs the pump simulator on 127.0.0.1:0 (and ptys if asked) with a
// fake clock until the test ends.
func startSim(t *testing.T, so startOpts) *endpoints {
	t.Helper()
	clk := newFakeClock()
	if so.opts.Now == nil {
		so.opts.Now = clk.Now
	}
	s, err := New(loadPump(t), so.opts)
	if err != nil {
		t.Fatalf("new sim: %v", err)
	}
	ep := &endpoints{sim: s, clock: clk}
	addr, err := s.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ep.tcp = addr.String()
	if so.rtu {
		if ep.rtu, err = s.OpenPTY(RTU); err != nil {
			t.Fatalf("open rtu pty: %v", err)
		}
	}
	if so.ascii {
		if ep.ascii, err = s.OpenPTY(ASCII); err != nil {
			t.Fatalf("open ascii pty: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return ep
}

// tcpClient is a minimal Modbus TCP client for tests.
type tcpClient struct {
	t    *testing.T
	conn net.Conn
	tid  uint16
}

func dialTCP(t *testing.T, addr string) *tcpClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &tcpClient{t: t, conn: c}
}

var errNoAnswer = errors.New("no answer")

// call sends pdu to unit and returns the response PDU, or errNoAnswer if
// none came within wait.
func (c *tcpClient) call(unit byte, pdu []byte, wait time.Duration) ([]byte, error) {
	c.tid++
	req := binary.BigEndian.AppendUint16(nil, c.tid)
	req = binary.BigEndian.AppendUint16(req, 0)
	req = binary.BigEndian.AppendUint16(req, uint16(1+len(pdu)))
	req = append(append(req, unit), pdu...)
	if _, err := c.conn.Write(req); err != nil {
		return nil, err
	}
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(wait))
		hdr := make([]byte, 7)
		if _, err := io.ReadFull(c.conn, hdr); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, errNoAnswer
			}
			return nil, err
		}
		body := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
		if _, err := io.ReadFull(c.conn, body); err != nil {
			return nil, err
		}
		if binary.BigEndian.Uint16(hdr) != c.tid {
			continue // a late answer to an earlier request
		}
		if hdr[6] != unit {
			c.t.Errorf("reply unit %d, want %d", hdr[6], unit)
		}
		return body, nil
	}
}

func (c *tcpClient) mustCall(unit byte, pdu []byte) []byte {
	c.t.Helper()
	r, err := c.call(unit, pdu, 5*time.Second)
	if err != nil {
		c.t.Fatalf("unit %d request % X: %v", unit, pdu, err)
	}
	return r
}

// serialClient talks RTU to a pty slave path.
type serialClient struct {
	t *testing.T
	f *os.File
}

func openSerial(t *testing.T, path string) *serialClient {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &serialClient{t: t, f: f}
}

// readFor reads until n bytes arrived or wait passed.
func (c *serialClient) readFor(n int, wait time.Duration) []byte {
	deadline := time.Now().Add(wait)
	var out []byte
	buf := make([]byte, 512)
	for len(out) < n {
		_ = c.f.SetReadDeadline(deadline)
		k, err := c.f.Read(buf)
		out = append(out, buf[:k]...)
		if err != nil {
			break
		}
	}
	return out
}

// rtuCall sends addr+pdu with a CRC and reads a reply of want bytes.
func (c *serialClient) rtuCall(adu []byte, want int, wait time.Duration) []byte {
	c.t.Helper()
	if _, err := c.f.Write(appendCRC(append([]byte(nil), adu...))); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	return c.readFor(want, wait)
}

func readHolding(addr, n uint16) []byte {
	return put16(put16([]byte{fcReadHolding}, addr), n)
}

func writeSingle(addr, v uint16) []byte {
	return put16(put16([]byte{fcWriteSingleReg}, addr), v)
}
