package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/localhub"
)

func demoCmd(stdout, stderr io.Writer) *cobra.Command {
	var dataDir, mqttAddr, httpsAddr string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the demo: an embedded hub (and, with the gateway, simulated devices)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(dataDir)
			if err != nil {
				return err
			}
			h, err := localhub.New(localhub.Options{
				DataDir: filepath.Join(abs, "hub"), MQTTAddr: mqttAddr, HTTPSAddr: httpsAddr,
				Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				select {
				case <-h.Ready():
				case <-ctx.Done():
					return
				}
				fmt.Fprintf(stdout, `Drover demo is running. Ctrl-C stops it.

localhub (Azure IoT Hub compatible):
  MQTT (devices):     %s
  HTTPS (operators):  %s
  CA certificate:     %s

In another terminal:
  export DROVER_HUB_CONNECTION_STRING="$(cat %s)"
  export DROVER_CA_FILE=%s
  export DROVER_HUB_ADDRESS=%s
  bin/droverctl device create pump-1
  bin/droverctl device keys pump-1 --connection-string
  bin/droverctl twin update pump-1 --desired '{"config":{"setpoint":21.5}}'
  bin/droverctl twin show pump-1
  bin/droverctl query "SELECT * FROM devices"
  bin/droverctl monitor
`, h.MQTTAddr(), h.HTTPSAddr(), h.CAFile(), h.OwnerConnectionStringFile(), h.CAFile(), h.HTTPSAddr())
			}()
			return h.Run(ctx)
		},
	}
	c.Flags().StringVar(&dataDir, "data", "demo-data", "directory for the demo's state")
	c.Flags().StringVar(&mqttAddr, "mqtt-addr", "127.0.0.1:8883", "hub MQTT listen address")
	c.Flags().StringVar(&httpsAddr, "https-addr", "127.0.0.1:8443", "hub HTTPS listen address")
	return c
}
