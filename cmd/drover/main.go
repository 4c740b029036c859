// Command drover is the gateway daemon and the technician's CLI.
package main

import (
	"os"

	"github.com/drover-iot/drover/gateway/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
