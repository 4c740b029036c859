//go:build linux

package plugins_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/crashtest"
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
	pid, started, host := crashtest.Orphan(t, standInHostEnv+"="+exe, standInLogEnv+"="+logPath)
	// It checks its parent once a second.
	crashtest.AwaitGone(t, pid, started, 10*time.Second)
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`"parent_pid":%d`, host)
	if !strings.Contains(string(log), `"@message":"host process gone, stopping plugin"`) || !strings.Contains(string(log), want) {
		t.Errorf("plugin log lacks the parent watch's record with %s:\n%s", want, log)
	}
}
