package soak

import (
	"io"
	"net"
	"sync"
	"testing"
)

// proxyMode is what the cut proxy does with the bytes between the gateway and the hub.
type proxyMode int

const (
	modePass  proxyMode = iota // copy both ways
	modeStall                  // stop copying; sockets stay open, bytes wait in the kernel's buffers
	modeReset                  // close both sides of every connection; new connections are closed at once
)

func (m proxyMode) String() string {
	switch m {
	case modePass:
		return "pass"
	case modeStall:
		return "stall"
	case modeReset:
		return "reset"
	}
	return "unknown"
}

// cutProxy is a TCP proxy between the gateway's upstream address and the
// hub's MQTT listener whose mode the test switches to cut the link while
// both ends stay up.
type cutProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	mode    proxyMode
	changed chan struct{} // closed and replaced at every mode change
	pairs   map[*pair]struct{}
	closed  bool
	wg      sync.WaitGroup // accept loop and every copier
	accepts int            // connections accepted so far
}

// pair is one proxied connection: the gateway's side and the hub's side.
type pair struct {
	down, up net.Conn
	once     sync.Once
}

func (p *pair) close() {
	p.once.Do(func() {
		_ = p.down.Close()
		_ = p.up.Close()
	})
}

// startProxy listens on a loopback port and forwards to target; it stops when the test ends.
func startProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &cutProxy{ln: ln, target: target, changed: make(chan struct{}), pairs: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address the gateway connects to.
func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

// Accepts counts the connections accepted so far.
func (p *cutProxy) Accepts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

// SetMode switches the proxy; reset closes every open connection at once.
func (p *cutProxy) SetMode(m proxyMode) {
	p.mu.Lock()
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	var victims []*pair
	if m == modeReset {
		for pr := range p.pairs {
			victims = append(victims, pr)
		}
	}
	p.mu.Unlock()
	for _, pr := range victims {
		pr.close()
	}
}

// Close stops accepting, closes every connection and waits for the copiers.
func (p *cutProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.changed)
	p.changed = make(chan struct{})
	victims := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		victims = append(victims, pr)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, pr := range victims {
		pr.close()
	}
	p.wg.Wait()
}

func (p *cutProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		p.accepts++
		if p.closed || p.mode == modeReset {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close() // hub down: the gateway sees a closed connection, as it would without the proxy
			continue
		}
		pr := &pair{down: c, up: up}
		p.mu.Lock()
		if p.closed || p.mode == modeReset {
			p.mu.Unlock()
			pr.close()
			continue
		}
		p.pairs[pr] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.copy(pr, up, c)
		go p.copy(pr, c, up)
	}
}

// gate blocks while the proxy stalls and says whether copying may go on.
func (p *cutProxy) gate() bool {
	for {
		p.mu.Lock()
		m, ch, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed || m == modeReset:
			return false
		case m == modePass:
			return true
		}
		<-ch
	}
}

// copy moves bytes from src to dst, holding them (never dropping them) while stalled.
func (p *cutProxy) copy(pr *pair, dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		pr.close()
		p.mu.Lock()
		delete(p.pairs, pr)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		if !p.gate() {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, reset or closed by SetMode/Close: the pair goes away
		}
	}
}

// TestCutProxy checks the proxy itself: bytes pass, wait while stalled
// (none lost), and connections are closed on reset.
func TestCutProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	var ewg sync.WaitGroup
	ewg.Add(1)
	go func() {
		defer ewg.Done()
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			ewg.Add(1)
			go func() { defer ewg.Done(); defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	defer ewg.Wait()
	defer echo.Close()
	p := startProxy(t, echo.Addr().String())

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(msg string) string {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("read %q: %v", msg, err)
		}
		return string(b)
	}
	t.Run("pass", func(t *testing.T) {
		if got := roundTrip("hello"); got != "hello" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("stall holds bytes until pass", func(t *testing.T) {
		p.SetMode(modeStall)
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			b := make([]byte, 4)
			_, _ = io.ReadFull(c, b)
			got <- string(b)
		}()
		select {
		case s := <-got:
			t.Fatalf("bytes passed a stalled proxy: %q", s)
		default:
		}
		p.SetMode(modePass)
		if s := <-got; s != "held" {
			t.Fatalf("after the stall got %q", s)
		}
	})
	t.Run("reset closes and refuses", func(t *testing.T) {
		p.SetMode(modeReset)
		b := make([]byte, 1)
		if _, err := c.Read(b); err == nil {
			t.Fatal("connection still open after reset")
		}
		c2, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if _, err := c2.Read(b); err == nil {
			t.Fatal("new connection not closed during reset")
		}
		p.SetMode(modePass)
		c3, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c3.Close()
		if _, err := c3.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c3, b); err != nil || b[0] != 'x' {
			t.Fatalf("after reset: %q %v", b, err)
		}
	})
}
