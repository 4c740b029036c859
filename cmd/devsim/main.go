// Command devsim runs device simulators for tests, demos and the bench.
//
// Each simulator is a subcommand in its own file (modbus.go, serial.go, …). A
// subcommand prints one line per endpoint it serves ("tcp: ADDR",
// "rtu: /dev/pts/N", "serial: /dev/pts/N", …) on stdout, then "ready", and logs to stderr.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "devsim",
		Short:         "Device simulators: Modbus TCP/RTU/ASCII slaves, SMP serial microcontrollers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// One constructor per simulator; add new ones here.
	root.AddCommand(
		newModbusCmd(),
		newSerialCmd(),
		newImageCmd(),
	)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "devsim:", err)
		os.Exit(1)
	}
}

// newLogger is the stderr logger of every simulator, at the --log-level
// given (debug, info, warn or error).
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("parse --log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
