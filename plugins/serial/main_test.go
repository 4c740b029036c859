package serial

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every SMP reader
// stops with its bus, every test device with its pty.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
