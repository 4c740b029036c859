package localapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultAddr is where the local API listens unless told otherwise.
const DefaultAddr = "127.0.0.1:7080"

// UnixPrefix marks an address as a unix socket path: "unix:/run/drover.sock".
const UnixPrefix = "unix:"

// Server timeouts. There is no write timeout: a scan streams for minutes.
const (
	readHeaderTimeout      = 5 * time.Second
	readTimeout            = 30 * time.Second
	idleTimeout            = 60 * time.Second
	maxHeaderBytes         = 16 << 10
	DefaultShutdownTimeout = 5 * time.Second
)

// Options configure a Server.
type Options struct {
	Addr    string  // host:port or unix:/path; DefaultAddr when empty
	Backend Backend // required
	Token   string  // bearer token for mutating routes (EnsureToken); required
	Logger  *slog.Logger

	// ShutdownTimeout bounds how long Run waits for requests in flight
	// after ctx ends; DefaultShutdownTimeout when zero. Scans are stopped at
	// once.
	ShutdownTimeout time.Duration
	// Now is the clock stamped on status and device lists; time.Now when nil.
	Now func() time.Time
	// Metrics, when set, is served at GET /metrics (Prometheus text format),
	// under the same rule as the other reads: open on loopback, the bearer
	// token otherwise.
	Metrics http.Handler
}

// Server is the local API server. New builds it; Run serves.
type Server struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	ready   chan struct{}
	closing chan struct{} // closed when shutdown starts: ends scans

	mu           sync.Mutex
	running      bool
	addr         string // actual address, set before ready closes
	protectReads bool   // listening off loopback: reads need the token too
}

// New checks opts and builds a Server. It starts nothing.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("local api: no backend")
	}
	if strings.TrimSpace(opts.Token) == "" {
		return nil, errors.New("local api: no token (use EnsureToken)")
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if path, ok := strings.CutPrefix(opts.Addr, UnixPrefix); ok && path == "" {
		return nil, fmt.Errorf("local api: address %q names no socket path", opts.Addr)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		ready:   make(chan struct{}),
		closing: make(chan struct{}),
	}
	s.mux = s.routes()
	return s, nil
}

// Ready is closed once the server listens (Addr is then valid). It stays
// open when Run fails to listen.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on, "127.0.0.1:41234" or
// "unix:/run/drover.sock"; empty before Ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Handler returns the API's HTTP handler, for embedding and tests. It
// treats every request as coming over loopback.
func (s *Server) Handler() http.Handler { return s.mux }

// Run listens, serves until ctx ends, then shuts down: running scans are
// stopped at once, other requests get ShutdownTimeout to finish. It returns
// nil after a shutdown caused by ctx, and an error when it cannot listen or
// serving fails. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("local api: Run called twice")
	}
	s.running = true
	s.mu.Unlock()

	ln, err := s.listen()
	if err != nil {
		return err
	}
	// Handlers get a context that outlives ctx by the grace period.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var once sync.Once
	srv.RegisterOnShutdown(func() { once.Do(func() { close(s.closing) }) })

	s.mu.Lock()
	s.addr = addrString(ln.Addr())
	s.protectReads = !loopback(ln.Addr())
	addr, protect := s.addr, s.protectReads
	s.mu.Unlock()
	s.log.Info("local api listening", "addr", addr, "reads_need_token", protect)
	close(s.ready)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve local api on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("local api shutdown timed out", "error", err)
		cancelBase()
		_ = srv.Close()
	}
	<-served // http.ErrServerClosed once Shutdown or Close was called
	return nil
}

// listen opens the TCP or unix listener. A unix socket file left behind by
// a crashed daemon is removed; a live one (something answers) is an error.
func (s *Server) listen() (net.Listener, error) {
	path, isUnix := strings.CutPrefix(s.opts.Addr, UnixPrefix)
	if !isUnix {
		ln, err := net.Listen("tcp", s.opts.Addr)
		if err != nil {
			return nil, fmt.Errorf("listen local api on %s: %w", s.opts.Addr, err)
		}
		return ln, nil
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen local api on %s: %w", s.opts.Addr, err)
	}
	// Owner and group may connect; reads are open to whoever can.
	if err := os.Chmod(path, 0o660); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("restrict local api socket %s: %w", path, err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check local api socket %s: %w", path, err)
	}
	if st.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("local api socket %s: a file that is not a socket is in the way", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("local api socket %s: another process is serving on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check local api socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale local api socket %s: %w", path, err)
	}
	return nil
}

func addrString(a net.Addr) string {
	if a.Network() == "unix" {
		return UnixPrefix + a.String()
	}
	return a.String()
}

// loopback reports whether only local users can reach a listener: a unix
// socket or a TCP listener on a loopback address.
func loopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}
