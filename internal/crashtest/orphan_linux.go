//go:build linux

package crashtest

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Orphan runs this test binary again as a stand-in parent (env selects the
// role the caller's init gives it), which starts a child and prints the
// child's pid on a line. Orphan checks that the child is alive under the
// stand-in, SIGKILLs the stand-in and returns the now orphaned child's pid,
// its start time (see ProcStat) and the dead parent's pid. A cleanup kills
// the child if it is still the same process when the test ends.
func Orphan(t testing.TB, env ...string) (pid int, started string, parent int) {
	t.Helper()
	sp := exec.Command(os.Args[0], "-test.run=^$")
	sp.Env = append(os.Environ(), env...)
	sp.Stderr = os.Stderr
	out, err := sp.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Start(); err != nil {
		t.Fatalf("start stand-in parent: %v", err)
	}
	t.Cleanup(func() { _ = sp.Process.Kill(); _ = sp.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the child's pid from the stand-in parent: %v", err)
	}
	pid, err = strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("stand-in parent printed %q, want a pid", line)
	}
	started, ppid := ProcStat(pid)
	if started == "" || ppid != sp.Process.Pid {
		t.Fatalf("child %d: start time %q, parent %d; want a live child of %d", pid, started, ppid, sp.Process.Pid)
	}
	t.Cleanup(func() { // leave no orphan behind when the test fails
		if s, _ := ProcStat(pid); s == started {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := sp.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = sp.Wait()
	return pid, started, sp.Process.Pid
}

// AwaitGone waits up to limit for the process pid that started at started
// to be gone (exited, a zombie, or its pid reused), and fails t otherwise.
// It is not the caller's child, so there is no exit to wait on: it polls.
func AwaitGone(t testing.TB, pid int, started string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for s, _ := ProcStat(pid); s == started; s, _ = ProcStat(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running %v after its parent was killed", pid, limit)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
