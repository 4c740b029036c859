//go:build linux

package host

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lifetimeRoleEnv turns this test binary into a stand-in gateway or a
// stand-in plugin for TestPluginDiesWithKilledGateway. It is read in init,
// before TestMain builds the fake plugin, so a stand-in starts in
// milliseconds.
const lifetimeRoleEnv = "DROVER_HOST_TEST_LIFETIME_ROLE"

func init() {
	switch os.Getenv(lifetimeRoleEnv) {
	case "gateway":
		// Starts a plugin the way Start does, says its pid, then waits for
		// the test to kill it.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), lifetimeRoleEnv+"=plugin")
		dieWithGateway(cmd)
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start stand-in plugin:", err)
			os.Exit(2)
		}
		fmt.Println(cmd.Process.Pid)
		time.Sleep(time.Minute) // killed by the test long before
		os.Exit(0)
	case "plugin":
		// No parent watch here: only the kernel's parent-death signal can
		// end this process within the test's deadline.
		time.Sleep(time.Minute)
		os.Exit(0)
	}
}

// TestPluginDiesWithKilledGateway kills a stand-in gateway with SIGKILL and
// checks that the kernel kills the plugin it started through dieWithGateway.
func TestPluginDiesWithKilledGateway(t *testing.T) {
	gw := exec.Command(os.Args[0], "-test.run=^$")
	gw.Env = append(os.Environ(), lifetimeRoleEnv+"=gateway")
	gw.Stderr = os.Stderr
	out, err := gw.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatalf("start stand-in gateway: %v", err)
	}
	t.Cleanup(func() { _ = gw.Process.Kill(); _ = gw.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the plugin's pid from the stand-in gateway: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("stand-in gateway printed %q, want a pid", line)
	}
	started, ppid := procStat(pid)
	if started == "" || ppid != gw.Process.Pid {
		t.Fatalf("plugin %d: start time %q, parent %d; want a live child of %d", pid, started, ppid, gw.Process.Pid)
	}
	t.Cleanup(func() { // leave no orphan behind when the test fails
		if s, _ := procStat(pid); s == started {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	if err := gw.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = gw.Wait()

	// The plugin is not our child: there is no exit to wait on, so poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, _ := procStat(pid); s != started {
			return // gone, a zombie, or its pid reused
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d still running 10 s after its gateway was killed", pid)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// procStat returns the start time (field 22 of /proc/PID/stat, clock ticks
// since boot) and parent pid of a live process; "" when pid is gone or a
// zombie. The start time tells a process from a later one with its pid.
func procStat(pid int) (started string, ppid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state, ppid, ... with starttime 20th (proc_pid_stat(5)).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[19], ppid
}
