// Package crashtest cuts the power on a helper process at a point a test
// chooses: the test binary runs itself again as the helper, which works
// until it prints READY on its own line and is then killed with SIGKILL.
// What the helper committed before READY must survive; the test then opens
// the same files and checks.
package crashtest

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// KillAtReady runs the test named helper (a TestXxx that does nothing
// unless its environment says so) in a child of this test binary with env
// added (KEY=VALUE), waits up to wait for its READY line and SIGKILLs it.
// It fails t when the helper ends or stays silent first (with the
// helper's stderr), or does not die of the SIGKILL.
func KillAtReady(t testing.TB, helper string, wait time.Duration, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", helper, err)
	}
	ready := make(chan bool, 1)
	go func() { // ends when the helper's stdout closes, at the latest when it dies below
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper %s ended before READY; stderr:\n%s", helper, stderr.String())
		}
	case <-timer.C:
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper %s not READY within %v; stderr:\n%s", helper, wait, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper %s did not die of SIGKILL: %v", helper, err)
	}
}
