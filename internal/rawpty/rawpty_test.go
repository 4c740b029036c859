package rawpty

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRawBytesBothWays checks the pair passes every byte value unchanged
// (raw mode: no CR/LF translation, no echo) and that Close unblocks a
// Read on the master.
func TestRawBytesBothWays(t *testing.T) {
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.OpenFile(p.Path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	msg := make([]byte, 256)
	for i := range msg {
		msg[i] = byte(i)
	}
	if _, err := host.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = p.Master.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(p.Master, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("host to master: got % x", got)
	}
	if _, err := p.Master.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(host, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("master to host: got % x", got)
	}
	_ = p.Master.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := p.Master.Read(got); done <- err }()
	time.Sleep(50 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read after Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}
