// Package hubcmd is the droverhub command line.
package hubcmd

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/version"
	"github.com/drover-iot/drover/localhub"
	"github.com/drover-iot/drover/localhub/console"
)

// Main runs droverhub with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "droverhub",
		Short:         "localhub: a self-hosted hub wire-compatible with Azure IoT Hub",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(stdout, stderr), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(stdout, "droverhub", version.Version) },
	})
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(stderr, "droverhub: %v\n", err)
		return 1
	}
	return 0
}

func serveCmd(stdout, stderr io.Writer) *cobra.Command {
	var o localhub.Options
	var level string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the hub (MQTT over TLS for devices, HTTPS for operators)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: %w", level, err)
			}
			o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
			o.UI = console.ForHub
			h, err := localhub.New(o)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				select {
				case <-h.Ready():
					fmt.Fprintf(stdout, "droverhub ready\n  mqtt:  %s\n  https: %s\n  ca:    %s\n  owner connection string: %s\n",
						h.MQTTAddr(), h.HTTPSAddr(), h.CAFile(), h.OwnerConnectionStringFile())
				case <-ctx.Done():
				}
			}()
			return h.Run(ctx)
		},
	}
	c.Flags().StringVar(&o.DataDir, "data", "", "data directory (database, TLS material, owner connection string)")
	c.Flags().StringVar(&o.Hostname, "hostname", "localhost", "hub hostname: SAS resource URIs, MQTT usernames, server certificate")
	c.Flags().StringVar(&o.MQTTAddr, "mqtt-addr", ":8883", "MQTT over TLS listen address")
	c.Flags().StringVar(&o.HTTPSAddr, "https-addr", ":8443", "HTTPS listen address")
	c.Flags().Int64Var(&o.MaxTelemetry, "max-telemetry", 100000, "telemetry messages kept (oldest pruned)")
	c.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	_ = c.MarkFlagRequired("data")
	return c
}
