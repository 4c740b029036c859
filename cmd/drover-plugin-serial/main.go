// Command drover-plugin-serial is Drover's plugin for microcontrollers
// managed over SMP (MCUmgr) on a UART. The gateway starts it; run by hand
// it refuses, as go-plugin does.
package main

import (
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/serial"
)

func main() {
	plugins.Serve(serial.New(serial.Options{Log: plugins.Logger()}))
}
