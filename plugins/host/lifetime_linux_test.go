//go:build linux

package host

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/crashtest"
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
	pid, started, _ := crashtest.Orphan(t, lifetimeRoleEnv+"=gateway")
	crashtest.AwaitGone(t, pid, started, 10*time.Second)
}
