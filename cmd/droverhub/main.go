// Command droverhub runs localhub, Drover's self-hosted hub that speaks the
// Azure IoT Hub device (MQTT) and service (HTTPS) protocols.
package main

import (
	"os"

	"github.com/drover-iot/drover/localhub/hubcmd"
)

func main() { os.Exit(hubcmd.Main(os.Args[1:], os.Stdout, os.Stderr)) }
