package smpsim

import (
	"context"
	"testing"
	"time"
)

// ServePTY runs a device of cfg on a new pseudo-terminal until the test
// ends, and returns, once the device has booted, the port path and the device (for counters, faults and
// state). It is for tests that need a real SMP device on a serial port, as
// httptest is for HTTP; a bad cfg or the device's own error fails t.
func ServePTY(t testing.TB, cfg Config) (string, *Device) {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path, err := d.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("smp simulator: %v", err)
		}
	})
	// The device boots first (banner lines); hand it over once it listens.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := d.Wait(wctx, func(c Counters) bool { return c.Boots > 0 }); err != nil {
		t.Fatal(err)
	}
	return path, d
}
