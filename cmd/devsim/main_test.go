package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildDevsim compiles this command into a temporary directory.
func buildDevsim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "devsim")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const pumpProfile = "../../configs/devsim/demo-pump.yaml"

// TestDevsimModbusBinary runs the real binary, reads its tcp:/rtu:/ready
// lines, talks to both endpoints and stops it with SIGTERM.
func TestDevsimModbusBinary(t *testing.T) {
	bin := buildDevsim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "modbus", "--profile", pumpProfile,
		"--tcp", "127.0.0.1:0", "--rtu", "--units", "1-2", "--fault", "unit=2,exception=6", "--log-level", "warn",
		"--firmware-version", "7.7.7")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := bufio.NewScanner(stdout)
	endpoints := map[string]string{}
	for lines.Scan() {
		line := lines.Text()
		if line == "ready" {
			break
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("unexpected stdout line %q", line)
		}
		endpoints[k] = v
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	if endpoints["tcp"] == "" || !strings.HasPrefix(endpoints["rtu"], "/dev/pts/") {
		t.Fatalf("endpoints %v; stderr:\n%s", endpoints, stderr.String())
	}
	if strings.HasSuffix(endpoints["tcp"], ":0") {
		t.Errorf("tcp line shows port 0, want the actual port: %s", endpoints["tcp"])
	}

	t.Run("tcp", func(t *testing.T) {
		c, err := net.Dial("tcp", endpoints["tcp"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		for _, tt := range []struct{ req, want string }{
			{"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x0a\x00\x02", "\x00\x01\x00\x00\x00\x07\x01\x03\x04\x41\xac\x00\x00"},
			{"\x00\x02\x00\x00\x00\x06\x02\x03\x00\x0a\x00\x02", "\x00\x02\x00\x00\x00\x03\x02\x83\x06"},
			{"\x00\x03\x00\x00\x00\x06\x07\x03\x00\x0a\x00\x02", "\x00\x03\x00\x00\x00\x03\x07\x83\x0b"},
			// The pump's firmware version comes from FC 43: --firmware-version.
			{"\x00\x04\x00\x00\x00\x05\x01\x2b\x0e\x04\x02", "\x00\x04\x00\x00\x00\x0f\x01\x2b\x0e\x04\x82\x00\x00\x01\x02\x057.7.7"},
			// Firmware status register: idle.
			{"\x00\x05\x00\x00\x00\x06\x01\x03\x03\xde\x00\x01", "\x00\x05\x00\x00\x00\x05\x01\x03\x02\x00\x00"},
		} {
			if _, err := c.Write([]byte(tt.req)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(tt.want))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != tt.want {
				t.Errorf("request % X: got % X (%v), want % X", tt.req, got, err, tt.want)
			}
		}
	})
	t.Run("rtu", func(t *testing.T) {
		f, err := os.OpenFile(endpoints["rtu"], os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x84, 0x0A}); err != nil {
			t.Fatal(err)
		}
		_ = f.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 7)
		if _, err := io.ReadFull(f, got); err != nil || got[0] != 1 || got[1] != 3 || got[2] != 2 {
			t.Errorf("reply % X, %v", got, err)
		}
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("devsim exited with %v; stderr:\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("devsim did not stop on SIGTERM")
	}
}

func TestDevsimModbusBadInput(t *testing.T) {
	bin := buildDevsim(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("points:\n  - {name: a, table: holding, address: 0, type: int16,\n     sim: {kind: sine, colour: red}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"profile error names file and line", []string{"modbus", "--profile", bad}, bad + ":3: points[0].sim.colour"},
		{"missing profile flag", []string{"modbus"}, `"profile" not set`},
		{"bad units", []string{"modbus", "--profile", pumpProfile, "--units", "0-300"}, "unit list"},
		{"bad fault", []string{"modbus", "--profile", pumpProfile, "--fault", "unit=9,drop=1"}, "not served"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, tt.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output %q does not contain %q", out, tt.want)
			}
		})
	}
}
