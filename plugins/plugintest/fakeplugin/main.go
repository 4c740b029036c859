// Command fakeplugin serves plugintest.Fake as a real Drover plugin process,
// for tests of the host and of the contract across a process boundary.
//
// Its behaviour follows its file name, drover-plugin-<mode>:
//
//	garbage     print a line that is not a handshake, then wait to be killed
//	badcookie   serve with a different magic cookie (exits: "not meant to be executed directly")
//	badversion  serve protocol version 99
//	anything    serve a Fake that describes itself as <mode>
//
// Faults are armed over the wire by writing plugintest.FaultPoint (see
// plugintest.ParseFault). A crash fault exits the process with the given
// code; a hang fault stops the whole process with SIGSTOP, so it no longer
// answers anything, health pings included.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/plugintest"
	"github.com/hashicorp/go-plugin"
)

func main() {
	mode := strings.TrimPrefix(filepath.Base(os.Args[0]), "drover-plugin-")
	log := plugins.Logger()
	switch mode {
	case plugintest.ModeGarbage:
		fmt.Println("hello, I am not a plugin handshake")
		time.Sleep(time.Minute) // the host kills us long before
		return
	case plugintest.ModeBadCookie:
		cfg := plugins.ServeConfig(plugintest.NewFake())
		cfg.MagicCookieKey, cfg.MagicCookieValue = "NOT_DROVER", "nope"
		plugin.Serve(cfg)
		return
	case plugintest.ModeBadVersion:
		cfg := plugins.ServeConfig(plugintest.NewFake())
		cfg.ProtocolVersion = 99
		plugin.Serve(cfg)
		return
	}
	f := plugintest.NewFake()
	f.Name = mode
	f.Log = log
	f.Hang = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGSTOP) }
	log.Info("fake plugin starting", "mode", mode, "pid", os.Getpid())
	plugins.Serve(f)
}
