//go:build !linux

package host

import "os/exec"

// dieWithGateway does nothing outside Linux. (FreeBSD has the same
// SysProcAttr.Pdeathsig, but the gateway targets Linux.) There the plugin's
// own parent watch in plugins.Serve ends an orphaned plugin.
func dieWithGateway(*exec.Cmd) {}
