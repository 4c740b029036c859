//go:build linux

package plugins_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/plugintest"
)

// Environment of the stand-in host that TestOrphanedPluginStopsItself
// starts by running this test binary again. It is read in init, before
// TestMain.
const (
	standInHostEnv = "DROVER_PLUGINS_TEST_STAND_IN_HOST" // the plugin executable to start
	standInLogEnv  = "DROVER_PLUGINS_TEST_STAND_IN_LOG"  // file for the plugin's stderr
)

func init() {
	exe := os.Getenv(standInHostEnv)
	if exe == "" {
		return
	}
	// A host without the parent-death signal: only the plugin's own
	// parent watch can end the plugin once this process is killed.
	fail := func(err error) { fmt.Fprintln(os.Stderr, "stand-in host:", err); os.Exit(2) }
	logf, err := os.Create(os.Getenv(standInLogEnv))
	if err != nil {
		fail(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), plugins.Handshake.MagicCookieKey+"="+plugins.Handshake.MagicCookieValue)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		fail(err)
	}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	// The handshake line comes after Serve has noted its parent.
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		fail(fmt.Errorf("read handshake: %w", err))
	}
	fmt.Println(cmd.Process.Pid)
	time.Sleep(time.Minute) // killed by the test long before
	os.Exit(0)
}

// TestOrphanedPluginStopsItself runs the fake plugin under a stand-in host
// that does not set the parent-death signal, kills the host with SIGKILL,
// and checks that the plugin notices its new parent and exits on its own.
func TestOrphanedPluginStopsItself(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the fake plugin and runs real processes")
	}
	exe := filepath.Join(plugintest.BuildFake(t), "drover-plugin-fake")
	logPath := filepath.Join(t.TempDir(), "plugin.log")
	host := exec.Command(os.Args[0], "-test.run=^$")
	host.Env = append(os.Environ(), standInHostEnv+"="+exe, standInLogEnv+"="+logPath)
	host.Stderr = os.Stderr
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatalf("start stand-in host: %v", err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the plugin's pid from the stand-in host: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("stand-in host printed %q, want a pid", line)
	}
	started, ppid := procStat(pid)
	if started == "" || ppid != host.Process.Pid {
		t.Fatalf("plugin %d: start time %q, parent %d; want a live child of %d", pid, started, ppid, host.Process.Pid)
	}
	t.Cleanup(func() { // leave no orphan behind when the test fails
		if s, _ := procStat(pid); s == started {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()

	// The plugin is not our child: there is no exit to wait on, so poll.
	// It checks its parent once a second.
	deadline := time.Now().Add(10 * time.Second)
	for s, _ := procStat(pid); s == started; s, _ = procStat(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d still running 10 s after its host was killed", pid)
		}
		time.Sleep(25 * time.Millisecond)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`"parent_pid":%d`, host.Process.Pid)
	if !strings.Contains(string(log), `"@message":"host process gone, stopping plugin"`) || !strings.Contains(string(log), want) {
		t.Errorf("plugin log lacks the parent watch's record with %s:\n%s", want, log)
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
