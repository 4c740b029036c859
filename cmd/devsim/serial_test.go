package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/internal/smpsim"
	"golang.org/x/sys/unix"
)

// TestDevsimSerialBinary runs the real binary with two devices, reads the
// serial:/ready lines, talks SMP to both ptys and stops it with SIGTERM.
func TestDevsimSerialBinary(t *testing.T) {
	bin := buildDevsim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serial", "--count", "2", "--baud", "0", "--buf-size", "512",
		"--image-version", "1.2.3", "--fault", "refuse-reset", "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ports []string
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		if line == "ready" {
			break
		}
		p, ok := strings.CutPrefix(line, "serial: ")
		if !ok {
			t.Fatalf("unexpected stdout line %q", line)
		}
		ports = append(ports, p)
	}
	exited := make(chan error, 1)
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	if len(ports) != 2 {
		t.Fatalf("ports %v", ports)
	}
	for _, p := range ports {
		f, err := os.OpenFile(p, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := smp.NewClient(f, smp.ClientOptions{Timeout: 5 * time.Second})
		// The device boots first; echo until it listens.
		for {
			err = c.Echo(ctx, "hello")
			if err == nil || ctx.Err() != nil {
				break
			}
		}
		n, err := c.BufSize(ctx)
		if err != nil || n != 512 {
			t.Fatalf("%s: buffer size %d, %v", p, n, err)
		}
		st, err := c.ImageState(ctx)
		if err != nil || len(st) == 0 || st[0].Version != "1.2.3" {
			t.Fatalf("%s: image list %+v, %v", p, st, err)
		}
		if err := c.Reset(ctx, false); !smp.IsRC(err, smp.EBUSY) {
			t.Fatalf("%s: reset with refuse-reset: %v", p, err)
		}
		_ = c.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 0 {
			t.Fatalf("devsim serial exit: %v", err)
		}
	}
}

func TestParseSerialFaults(t *testing.T) {
	cases := []struct {
		specs []string
		want  smpsim.Faults
		err   bool
	}{
		{[]string{"drop-requests=1,drop-responses=2", "corrupt=3"}, smpsim.Faults{DropRequests: 1, DropResponses: 2, CorruptResponses: 3}, false},
		{[]string{"reset-at=65536,erase-delay=2s,write-delay=5ms"}, smpsim.Faults{ResetAtOffset: 65536, EraseDelay: 2 * time.Second, WriteDelay: 5 * time.Millisecond}, false},
		{[]string{"drop-every=7,corrupt-every=11"}, smpsim.Faults{DropEvery: 7, CorruptEvery: 11}, false},
		{[]string{"refuse-reset", "fail-boot=2.0.0"}, smpsim.Faults{RefuseReset: true, FailBoot: []string{"2.0.0"}}, false},
		{[]string{"drop-requests"}, smpsim.Faults{}, true},
		{[]string{"drop-requests=-1"}, smpsim.Faults{}, true},
		{[]string{"explode=1"}, smpsim.Faults{}, true},
	}
	for _, c := range cases {
		var got smpsim.Faults
		err := parseSerialFaults(c.specs, &got)
		if (err != nil) != c.err {
			t.Errorf("%v: err %v", c.specs, err)
			continue
		}
		if !c.err && (got.DropRequests != c.want.DropRequests || got.DropResponses != c.want.DropResponses ||
			got.CorruptResponses != c.want.CorruptResponses || got.DropEvery != c.want.DropEvery || got.CorruptEvery != c.want.CorruptEvery || got.ResetAtOffset != c.want.ResetAtOffset ||
			got.EraseDelay != c.want.EraseDelay || got.WriteDelay != c.want.WriteDelay || got.RefuseReset != c.want.RefuseReset ||
			strings.Join(got.FailBoot, ",") != strings.Join(c.want.FailBoot, ",")) {
			t.Errorf("%v: %+v, want %+v", c.specs, got, c.want)
		}
	}
}
