// Package cli is the drover command line: the gateway daemon (`drover run`)
// and the technician's tools.
package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/version"
)

// Version is the build's version (internal/version, stamped by make).
var Version = version.Version

// Main runs drover with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "drover",
		Short:         "Drover edge gateway and technician tools",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(append([]*cobra.Command{runCmd(stderr), demoCmd(stdout, stderr), versionCmd(stdout)}, technicianCmds(stdout, stderr)...)...)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(stderr, "drover: %v\n", err)
		return 1
	}
	return 0
}

func versionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, "drover", Version) },
	}
}
