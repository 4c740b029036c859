package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is a TLS listener for mochi that owns every connection it accepts:
// it bounds the time to TLS handshake and CONNECT, tracks each connection's
// goroutine, and on Close closes them all (authenticated or not) and waits.
// mochi's own TCP listener leaves a silent half-open client blocking Close.
type listener struct {
	id      string
	addr    string
	tls     *tls.Config
	timeout time.Duration // for TLS handshake plus CONNECT
	log     *slog.Logger
	onEnd   func(*trackedConn, error) // called after mochi is done with a connection
	ln      net.Listener
	stop    chan struct{} // closed by Close
	serving chan struct{} // closed when Serve returns

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
	wg     sync.WaitGroup // connection goroutines
}

var _ listeners.Listener = (*listener)(nil)

func newListener(addr string, cfg *tls.Config, timeout time.Duration, log *slog.Logger, onEnd func(*trackedConn, error)) *listener {
	return &listener{
		id:      "iothub-tls",
		addr:    addr,
		tls:     cfg,
		timeout: timeout,
		log:     log,
		onEnd:   onEnd,
		stop:    make(chan struct{}),
		serving: make(chan struct{}),
		conns:   make(map[*trackedConn]struct{}),
	}
}

// Init opens the TCP socket (mochi calls it from AddListener).
func (l *listener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

// ID returns the listener id.
func (l *listener) ID() string { return l.id }

// Address returns the bound address.
func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

// Protocol returns "tls".
func (l *listener) Protocol() string { return "tls" }

// Serve accepts connections until Close. mochi runs it on its own goroutine;
// Close waits for it through l.serving.
func (l *listener) Serve(establish listeners.EstablishFn) {
	defer close(l.serving)
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off instead of spinning or quitting.
			l.log.Warn("accept failed", "error", err)
			select {
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		_ = raw.SetDeadline(time.Now().Add(l.timeout)) // mochi resets it after CONNECT
		c := &trackedConn{Conn: tls.Server(raw, l.tls), raw: raw, remote: raw.RemoteAddr().String()}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = raw.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handle(c, establish)
	}
}

func (l *listener) handle(c *trackedConn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	err := establish(l.id, c) // runs mochi's whole client lifecycle
	c.kill()
	l.onEnd(c, err)
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	if err != nil {
		l.log.Debug("connection closed", "remote", c.remote, "error", err)
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines. It does not use mochi's closeClients: that writes an MQTT 5
// DISCONNECT (not valid in 3.1.1) and can block on a stuck peer; IoT Hub
// simply closes the connection.
func (l *listener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.stop)
	for c := range l.conns {
		c.kill()
	}
	l.mu.Unlock()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.wg.Wait()
}

// waitServe waits for Serve to return; only call it if Serve was started.
func (l *listener) waitServe() { <-l.serving }
