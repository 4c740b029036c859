package smpsim

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a device or host goroutine outlives its
// test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
