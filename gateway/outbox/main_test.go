package outbox

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (writers,
// drainer turns, database openers).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
