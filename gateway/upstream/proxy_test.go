package upstream

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// proxy is a TCP relay between the client and the hub that can cut or stall
// the connections going through it, to produce failures the hub never makes.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu     sync.Mutex
	pairs  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

// pair is one relayed connection.
type pair struct {
	client, server net.Conn
	mu             sync.Mutex
	stalled        bool // bytes are read and dropped, like a dead link
}

func (p *pair) isStalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

// startProxy relays 127.0.0.1:0 to target until the test ends.
func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{t: t, ln: ln, target: target, pairs: map[*pair]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pr := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.copy(pr, pr.server, pr.client) })
		p.wg.Go(func() { p.copy(pr, pr.client, pr.server) })
	}
}

// copy relays src to dst; while the pair is stalled it swallows the bytes.
func (p *proxy) copy(pr *pair, dst, src net.Conn) {
	defer p.drop(pr)
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pr.isStalled() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.t.Logf("proxy: %v", err)
			}
			return
		}
	}
}

func (p *proxy) drop(pr *pair) {
	_ = pr.client.Close()
	_ = pr.server.Close()
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

// reset aborts every relayed connection with a TCP RST on both sides.
func (p *proxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		for _, c := range []net.Conn{pr.client, pr.server} {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	}
}

// stall makes the current connections a black hole (both ways); new
// connections are relayed normally.
func (p *proxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.mu.Lock()
		pr.stalled = true
		pr.mu.Unlock()
	}
}

// count is the number of relayed connections.
func (p *proxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for pr := range p.pairs {
		_ = pr.client.Close()
		_ = pr.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
