//go:build linux

package host

import (
	"os/exec"
	"syscall"
)

// dieWithGateway asks the kernel to SIGKILL the plugin when the gateway
// dies, however it dies: SIGKILL from systemd, the OOM killer, a panic. An
// orphaned RTU plugin would keep its serial port open, and orphans would
// pile up across restarts.
//
// PR_SET_PDEATHSIG fires when the thread that forked the child exits, not
// the process (go.dev/issue/27505), so it matters which thread forks. Here
// that is whatever thread runs the supervisor goroutine: Start calls
// plugin.Client.Client, which calls Client.Start, whose cmdrunner calls
// exec.Cmd.Start on the same goroutine (go-plugin v1.8.0 starts no goroutine
// for it and never calls runtime.LockOSThread), and supervise does not lock
// its thread either. The Go runtime ends a thread only when a goroutine
// exits while locked to it with runtime.LockOSThread; an idle thread is
// parked, not ended. Nothing the gateway links calls LockOSThread on Linux
// (grep over the packages of `go list -deps ./cmd/drover`: go-plugin
// v1.8.0, grpc, mochi, paho, go-sqlite3 and the rest have no call; the
// standard library's are in the runtime itself and in Plan 9 and Windows
// code). If that ever changes, the worst case is that a goroutine locks the
// very thread that forked a plugin and exits locked: the plugin is killed,
// which the supervisor sees as a crash and restarts it.
//
// SIGKILL rather than SIGTERM: a wedged plugin would ignore SIGTERM and stay
// an orphan, and the kernel releases its ports and sockets on exit either
// way. plugins.Serve adds a second, portable line of defence: it exits
// cleanly when its parent process changes.
//
// The plugin gets no process group of its own (Setpgid). A group would only
// help when the gateway itself signals the group, yet on the crash path
// this is about nobody is left to do that, and go-plugin's Kill signals the
// pid alone. It would also take the plugin out of the terminal's job
// control, so Ctrl-Z would stop the gateway but not its plugins. A plugin
// that starts helper processes must tie their lifetime to its own.
func dieWithGateway(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
