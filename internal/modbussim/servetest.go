package modbussim

import (
	"context"
	"testing"
)

// ServeTCP runs a simulator of the profile at path on Modbus TCP at
// 127.0.0.1 (a free port) until the test ends, and returns its address.
// It is for tests that need a real Modbus server, as httptest is for HTTP;
// the simulator's own error at the end fails t.
func ServeTCP(t testing.TB, path string, opts Options) string {
	t.Helper()
	p, err := LoadProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := New(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sim.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulator: %v", err)
		}
	})
	return addr.String()
}
