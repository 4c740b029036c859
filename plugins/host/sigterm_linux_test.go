//go:build linux

package host_test

import (
	"syscall"
	"testing"

	"github.com/drover-iot/drover/plugins/host"
)

// TestPluginOutlastsGroupSIGTERM: a service manager's SIGTERM to the whole
// process group reaches the plugin too; it keeps serving until the host
// closes it, so the gateway's graceful stop is not cut short.
func TestPluginOutlastsGroupSIGTERM(t *testing.T) {
	inst, err := host.Start(callCtx(t), host.Options{Dir: pluginDir, Logger: discard()}, "fake")
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if err := syscall.Kill(inst.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A fatal signal ends a process as soon as the kernel delivers it, long
	// before three gRPC round trips; the plugin must still answer them.
	for i := range 3 {
		if err := inst.Ping(callCtx(t)); err != nil {
			t.Fatalf("ping %d after SIGTERM: %v", i+1, err)
		}
	}
	select {
	case <-inst.Lost():
		t.Fatal("plugin lost after SIGTERM")
	default:
	}
	inst.Close()
	if st := inst.ExitStatus(); st != "exit status 0" {
		t.Errorf("exit after Close: %q, want exit status 0", st)
	}
}
