// Package plugintest helps test protocol plugins and their host: an
// in-process harness that serves a plugins.Plugin over real gRPC, a contract
// suite every plugin must pass (RunContract), a scriptable in-memory plugin
// (Fake) and a helper that builds Fake as a real plugin executable
// (BuildFake) for tests that need a child process.
package plugintest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/drover-iot/drover/plugins"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Connect serves impl over real gRPC on a unix socket and returns the host's
// view of it: the same adapters, registration and dispense that go-plugin
// uses, without the child process and the handshake. Everything is stopped
// by t's cleanup.
func Connect(t testing.TB, impl plugins.Plugin) plugins.Plugin {
	t.Helper()
	// A short directory: t.TempDir() embeds the test name and a unix socket
	// path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "dpt")
	if err != nil {
		t.Fatalf("plugintest: socket dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "plugin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("plugintest: listen: %v", err)
	}

	srv := grpc.NewServer()
	if err := (&plugins.GRPCPlugin{Impl: impl}).GRPCServer(nil, srv); err != nil {
		t.Fatalf("plugintest: register: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("plugintest: serve: %v", err)
		}
	})

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("plugintest: dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	raw, err := (&plugins.GRPCPlugin{}).GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatalf("plugintest: dispense: %v", err)
	}
	p, ok := raw.(plugins.Plugin)
	if !ok {
		t.Fatalf("plugintest: dispensed %T, not a plugins.Plugin", raw)
	}
	return p
}
