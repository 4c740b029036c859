// Command drover-plugin-modbus is Drover's Modbus protocol plugin (TCP, RTU,
// ASCII). The gateway starts it; run by hand it refuses, as go-plugin does.
package main

import (
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/modbus"
)

func main() {
	plugins.Serve(modbus.New(modbus.Options{Log: plugins.Logger()}))
}
