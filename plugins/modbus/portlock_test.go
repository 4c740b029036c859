//go:build unix

package modbus

import (
	"regexp"
	"strings"
	"testing"

	"github.com/drover-iot/drover/internal/testenv"
)

// TestSerialPortIsExclusive: while the transport holds a serial port, a
// second opener — in this process or another — is refused with a message
// naming the port; once closed, the port opens again.
func TestSerialPortIsExclusive(t *testing.T) {
	a, _ := ptyPair(t)
	b := &Bus{Mode: ModeRTU, Port: a, Baud: 19200, DataBits: 8, Parity: ParityEven, StopBits: 1}
	first, err := openTarm(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openTarm(b); err == nil || !strings.Contains(err.Error(), "serial port "+a+" is in use by another process") {
		t.Fatalf("second open: %v, want in use", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := openTarm(b)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()

	// Another process holding the lock the usual way (util-linux flock(1)).
	testenv.RequireTool(t, "flock", "Debian util-linux")
	child(t, false, regexp.MustCompile(`^locked`), 1, "flock", "--exclusive", "--nonblock", a, "sh", "-c", "echo locked; exec sleep 60")
	if _, err := openTarm(b); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("open while flock(1) holds the port: %v, want in use", err)
	}
}
