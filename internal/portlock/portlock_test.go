//go:build unix

package portlock

import (
	"errors"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// TestLockIsExclusive: a second Lock of a held port fails with ErrInUse and
// a message naming the port; once the first is released, the port locks
// again.
func TestLockIsExclusive(t *testing.T) {
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { ptm.Close(); tty.Close() })
	path := tty.Name()

	first, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(path)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "serial port "+path+" is in use by another process") {
		t.Fatalf("second Lock: %v, want in use naming %s", err, path)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Lock(path)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again.Close()

	if _, err := Lock("/dev/no-such-port"); err == nil || errors.Is(err, ErrInUse) {
		t.Fatalf("Lock of a missing port: %v, want an open error", err)
	}
}
