package modbus

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/testenv"
)

const python = "/usr/bin/python3"

// startupTimeout bounds how long a child process may take to say it is ready.
const startupTimeout = 30 * time.Second

func requireSocat(t testing.TB) {
	t.Helper()
	testenv.RequireTool(t, "socat", "Debian socat: RTU tests need a pty pair")
}

func requirePymodbus(t testing.TB) {
	t.Helper()
	testenv.RequirePython(t, python, "Debian python3-pymodbus with python3-serial-asyncio", "pymodbus.server.async_io", "serial_asyncio")
}

// child starts a process whose stream (stdout or stderr) is scanned line by
// line; ready returns the submatches of the first line matching re, each
// time it is called, until want lines have matched. The process is killed
// by PID at cleanup.
func child(t testing.TB, useStderr bool, re *regexp.Regexp, want int, name string, args ...string) [][]string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var pipe io.ReadCloser
	var err error
	if useStderr {
		pipe, err = cmd.StderrPipe()
	} else {
		pipe, err = cmd.StdoutPipe()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan []string)
	var tail []string
	go func() { // ends when the process dies and the pipe closes
		defer close(lines)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				lines <- m
			} else if len(tail) < 20 {
				tail = append(tail, sc.Text())
			}
		}
	}()
	timer := time.NewTimer(startupTimeout)
	defer timer.Stop()
	var out [][]string
	for len(out) < want {
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatalf("%s %s exited before it was ready: %s", name, strings.Join(args, " "), strings.Join(tail, "\n"))
			}
			out = append(out, m)
		case <-timer.C:
			t.Fatalf("%s %s not ready after %s", name, strings.Join(args, " "), startupTimeout)
		}
	}
	go func() { // keep draining so the child never blocks on a full pipe
		for range lines {
		}
	}()
	return out
}

var (
	// socat logs "PTY is <path>" per side and applies the raw options after
	// that line, so the ptys are only ours once it starts its transfer loop.
	socatPTY = regexp.MustCompile(`PTY is (\S+)|starting data transfer loop`)
	pyReady  = regexp.MustCompile(`^READY (\S+)`)
)

// ptyPair starts socat with two linked pseudo-terminals and returns their
// paths (a null-modem cable: bytes written to one are read from the other).
func ptyPair(t testing.TB) (string, string) {
	t.Helper()
	requireSocat(t)
	m := child(t, true, socatPTY, 3, "socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0")
	if m[0][1] == "" || m[1][1] == "" {
		t.Fatalf("socat did not report two ptys before its transfer loop: %q", m)
	}
	return m[0][1], m[1][1]
}

// startPymodbus starts testdata/pymodbus_server.py and returns what it
// printed after READY (the TCP port, or the device).
func startPymodbus(t testing.TB, args ...string) string {
	t.Helper()
	requirePymodbus(t)
	m := child(t, false, pyReady, 1, python, append([]string{"testdata/pymodbus_server.py"}, args...)...)
	return m[0][1]
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
