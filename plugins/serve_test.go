package plugins

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

func TestAwaitNewParent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ppids   []int // what getppid returns, one per tick
		want    int
		wantOK  bool
		wantChk int // getppid calls
	}{
		{"parent stays until ctx ends", []int{10, 10, 10}, 0, false, 3},
		{"reparented to init", []int{10, 10, 1}, 1, true, 3},
		{"reparented to a subreaper", []int{10, 4242}, 4242, true, 2},
		{"no tick, no check", nil, 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// One tick per scripted answer. After the last answer ctx ends,
			// so a watch that does not return earlier sees only ctx.Done.
			tick := make(chan time.Time, len(tc.ppids))
			for range tc.ppids {
				tick <- time.Time{}
			}
			if len(tc.ppids) == 0 {
				cancel()
			}
			calls := 0
			getppid := func() int {
				p := tc.ppids[calls]
				calls++
				if calls == len(tc.ppids) {
					cancel()
				}
				return p
			}
			got, ok := awaitNewParent(ctx, 10, getppid, tick)
			if got != tc.want || ok != tc.wantOK || calls != tc.wantChk {
				t.Errorf("awaitNewParent(parent 10, getppid %v) = %d, %v after %d checks; want %d, %v after %d",
					tc.ppids, got, ok, calls, tc.want, tc.wantOK, tc.wantChk)
			}
		})
	}
}

func TestServeWatched(t *testing.T) {
	t.Run("parent gone: stopped like a host shutdown", func(t *testing.T) {
		var logs bytes.Buffer
		tick := make(chan time.Time)
		stopped := make(chan struct{})
		stops := 0
		stop := func() { stops++; close(stopped) }
		serve := func() {
			tick <- time.Time{} // the first check after serving starts
			<-stopped           // plugin.Serve returns once its gRPC server stops
		}
		orphaned := serveWatched(context.Background(), serve, stop, 10, func() int { return 1 }, tick,
			slog.New(slog.NewJSONHandler(&logs, nil)))
		if !orphaned || stops != 1 {
			t.Errorf("orphaned %v, stop called %d times; want true, once", orphaned, stops)
		}
		for _, want := range []string{`"msg":"host process gone, stopping plugin"`, `"parent_pid":10`, `"new_parent_pid":1`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log %q lacks %s", logs.String(), want)
			}
		}
	})
	t.Run("host shuts down: watch ends, nothing stopped", func(t *testing.T) {
		stops := 0
		calls := 0
		getppid := func() int { calls++; return 10 }
		tick := make(chan time.Time)
		serve := func() { tick <- time.Time{} } // one check, then the host closes the connection
		orphaned := serveWatched(context.Background(), serve, func() { stops++ }, 10, getppid, tick, slog.New(slog.DiscardHandler))
		if orphaned || stops != 0 || calls != 1 {
			t.Errorf("orphaned %v, stop called %d times, %d checks; want false, never, 1", orphaned, stops, calls)
		}
	})
}

func TestStoppableServer(t *testing.T) {
	serve := func(t *testing.T, srv *grpc.Server) (<-chan error, string) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		return done, ln.Addr().String()
	}
	// serving waits until a client connection to addr is ready, so a stop
	// that follows hits a server in the middle of serving.
	serving := func(t *testing.T, addr string) {
		t.Helper()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn.Connect()
		for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
			if !conn.WaitForStateChange(ctx, s) {
				t.Fatalf("connection to %s not ready: %v", addr, s)
			}
		}
	}
	wait := func(t *testing.T, done <-chan error, want error) {
		t.Helper()
		select {
		case err := <-done:
			if !errors.Is(err, want) {
				t.Errorf("Serve returned %v, want %v", err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after stop")
		}
	}
	t.Run("stop while serving", func(t *testing.T) {
		var s stoppableServer
		done, addr := serve(t, s.new(nil))
		serving(t, addr)
		s.stop()
		wait(t, done, nil)
	})
	t.Run("stop before go-plugin made the server", func(t *testing.T) {
		var s stoppableServer
		s.stop()
		done, _ := serve(t, s.new(nil))
		wait(t, done, grpc.ErrServerStopped)
	})
}

// busPlugin records OpenBus and CloseBus; its other methods are not called.
type busPlugin struct {
	Plugin
	mu      sync.Mutex
	closed  []string
	failFor map[string]error // CloseBus error by bus name
	hang    func(name string)
}

func (p *busPlugin) OpenBus(_ context.Context, bus BusConfig) error {
	if bus.Name == "bad" {
		return Errorf(CodeInvalid, "bad bus")
	}
	return nil
}

func (p *busPlugin) CloseBus(_ context.Context, name string) error {
	if p.hang != nil {
		p.hang(name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = append(p.closed, name)
	return p.failFor[name]
}

func (p *busPlugin) closes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.closed)
}

func TestBusTrackerClosesOpenBuses(t *testing.T) {
	ctx := context.Background()
	p := &busPlugin{failFor: map[string]error{
		"gone":  Errorf(CodeNotFound, "not open"),
		"stuck": Errorf(CodeUnavailable, "port busy"),
	}}
	b := trackBuses(p)
	for _, name := range []string{"rs485-2", "rs485-1", "bad", "closed", "gone", "stuck"} {
		_ = b.OpenBus(ctx, BusConfig{Name: name})
	}
	for _, name := range []string{"closed", "gone", "stuck"} {
		_ = b.CloseBus(ctx, name)
	}
	var logs bytes.Buffer
	b.closeAll(ctx, slog.New(slog.NewJSONHandler(&logs, nil)))

	// "bad" never opened; "closed" and "gone" (the plugin no longer knew
	// it) are forgotten; "stuck" failed to close and is tried again.
	want := []string{"closed", "gone", "stuck", "rs485-1", "rs485-2", "stuck"}
	if got := p.closes(); !slices.Equal(got, want) {
		t.Errorf("CloseBus calls %v, want %v", got, want)
	}
	if !strings.Contains(logs.String(), `"bus":"stuck"`) || strings.Contains(logs.String(), `"bus":"gone"`) {
		t.Errorf("log %q: want a warning for stuck only", logs.String())
	}
	p.mu.Lock()
	p.closed = nil
	p.mu.Unlock()
	b.closeAll(ctx, slog.New(slog.DiscardHandler))
	if got := p.closes(); !slices.Equal(got, []string{"stuck"}) {
		t.Errorf("second closeAll closed %v, want only the bus that failed: [stuck]", got)
	}
}

func TestBusTrackerAbandonsHangingClose(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release, returned := make(chan struct{}), make(chan struct{})
	p := &busPlugin{hang: func(string) {
		defer close(returned)
		cancel() // the grace period ends while CloseBus ignores ctx
		<-release
	}}
	b := trackBuses(p)
	if err := b.OpenBus(ctx, BusConfig{Name: "rs485-1"}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	b.closeAll(ctx, slog.New(slog.NewJSONHandler(&logs, nil))) // returns although CloseBus has not
	if !strings.Contains(logs.String(), `"msg":"buses still closing, exiting anyway"`) {
		t.Errorf("log %q lacks the give-up warning", logs.String())
	}
	close(release)
	<-returned
}
