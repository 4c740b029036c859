package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/internal/crashtest"
)

// helperEnv names the directory a TestDaemonHelperProcess child works in.
const helperEnv = "DROVER_DAEMON_HELPER_DIR"

// TestDaemonHelperProcess is the child of TestConfigJobCrashRecovery, not
// a test: it runs the device side of a gateway, hands pump-1 desired
// config v1 (setpoint 22.5), lets its job's write hang on the bus, prints
// READY once the job is stored running, and waits to be killed.
func TestDaemonHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process of TestConfigJobCrashRecovery")
	}
	s := newStack(t, dir, stackOptions{initial: pumpInitial})
	s.plug.hold() // never released: the write hangs
	s.awaitOnline("pump-1")
	s.desired("pump-1", map[string]any{"config": map[string]any{"setpoint": json.Number("22.5")}}, 1)
	s.plug.writes.Await(t, waitLimit, "the write on the bus", func(w []string) bool { return len(w) == 1 })
	j := s.jobsOf("pump-1")[0]
	s.awaitJob(j.ID, "running", func(j jobs.Job) bool { return j.State == jobs.StateRunning })
	fmt.Println("READY")
	// Bound the child's life if the parent never kills it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	<-ctx.Done()
}

// TestConfigJobCrashRecovery kills a gateway with SIGKILL while a config
// job's write is on the bus, starts a new one on the same data directory,
// and checks that the job resumes (config writes are idempotent), writes
// the value and reports reported.config applied, with no desired property
// delivered again.
func TestConfigJobCrashRecovery(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("inside the helper process")
	}
	dir := t.TempDir()
	writeGateway(t, dir, "")
	killHelper(t, dir)

	var before jobs.Job
	s := newStack(t, dir, stackOptions{initial: pumpInitial, beforeRun: func(s *stack) {
		js := s.jobsOf("pump-1")
		if len(js) != 1 {
			t.Fatalf("after the kill: %d jobs, want 1", len(js))
		}
		before = js[0]
	}})
	if before.State != jobs.StateRunning || before.Kind != jobs.KindConfig || before.Attempts != 1 {
		t.Fatalf("after the kill the job is %s %s attempts %d, want a running config job", before.State, before.Kind, before.Attempts)
	}
	j := s.awaitJob(before.ID, "ended", final)
	if j.State != jobs.StateSucceeded || j.Resumes != 1 || j.Attempts != 2 {
		t.Fatalf("resumed job: %s (%s) resumes %d attempts %d error %q", j.State, j.Reason, j.Resumes, j.Attempts, j.Error)
	}
	if r := configResult(t, j); r.Status != bridges.ConfigApplied || r.Version != 1 {
		t.Fatalf("resumed job result %+v", r)
	}
	s.awaitConfig("pump-1", bridges.ConfigApplied, 1)
	if v := s.plug.value(t, "pump-1", "setpoint"); v != 22.5 {
		t.Fatalf("setpoint after recovery = %v, want 22.5", v)
	}
}

// killHelper runs TestDaemonHelperProcess on dir until READY and kills it
// with SIGKILL.
func killHelper(t *testing.T, dir string) {
	t.Helper()
	crashtest.KillAtReady(t, "TestDaemonHelperProcess", waitLimit, helperEnv+"="+dir)
}
