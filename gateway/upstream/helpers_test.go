package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/hubtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// desiredEvent is one Handler.DesiredPatch call.
type desiredEvent struct {
	patch   map[string]any
	version int64
}

// recorder is a Handler that turns every call into a channel message.
type recorder struct {
	connected    chan context.Context
	disconnected chan error
	desired      chan desiredEvent
	method       func(ctx context.Context, name string, payload json.RawMessage) (int, any)
}

func newRecorder() *recorder {
	return &recorder{
		connected:    make(chan context.Context, 100),
		disconnected: make(chan error, 100),
		desired:      make(chan desiredEvent, 1000),
	}
}

func (r *recorder) Connected(ctx context.Context) { r.connected <- ctx }
func (r *recorder) Disconnected(err error)        { r.disconnected <- err }
func (r *recorder) DesiredPatch(patch map[string]any, version int64) {
	r.desired <- desiredEvent{patch, version}
}
func (r *recorder) Method(ctx context.Context, name string, payload json.RawMessage) (int, any) {
	if r.method == nil {
		return 501, nil
	}
	return r.method(ctx, name, payload)
}

// await returns the next value from ch or fails after d.
func await[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("no %s within %s", what, d)
		var zero T
		return zero
	}
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger logs to stderr with DROVER_TEST_LOG set, else into buf (may be nil).
func testLogger(buf *syncBuffer) *slog.Logger {
	if os.Getenv("DROVER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if buf == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// hubOptions are client options for device id on env, with a fresh key.
func hubOptions(t testing.TB, env *hubtest.Env, id string, h Handler) Options {
	t.Helper()
	d := env.CreateDevice(t, id)
	return Options{
		DeviceID: id, HostName: env.Hostname, Address: env.MQTTAddr, Key: d.PrimaryKey,
		TLS: env.TLSConfig(), Handler: h, Logger: testLogger(nil),
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	}
}

// start runs a client until the test ends and checks Run returns nil.
func start(t testing.TB, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
	})
	return c
}

func waitConnected(t testing.TB, c *Client, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("not connected within %s: %v (stats %+v)", d, err, c.Stats())
	}
}

// service returns a REST client for env whose idle connections close with the test.
func service(t testing.TB, env *hubtest.Env) *serviceclient.Client {
	t.Helper()
	cs, err := sas.ParseConnectionString(env.OwnerConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: env.TLSConfig()}
	t.Cleanup(tr.CloseIdleConnections)
	sc, err := serviceclient.New(cs, serviceclient.Options{Address: env.HTTPSAddr, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// eventually polls cond until it holds or d passes; only for state that has no event.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func num(t testing.TB, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a json.Number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v is not an integer: %v", v, err)
	}
	return i
}

func mustContain(t testing.TB, haystack string, needles ...string) {
	t.Helper()
	for _, n := range needles {
		if !strings.Contains(haystack, n) {
			t.Fatalf("%q not found in:\n%s", n, haystack)
		}
	}
}

func isNotConnected(err error) bool { return errors.Is(err, ErrNotConnected) }
