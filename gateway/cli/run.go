package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/daemon"
	"github.com/drover-iot/drover/internal/sdnotify"
)

func runCmd(stderr io.Writer) *cobra.Command {
	var path, level string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the gateway daemon",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return fmt.Errorf("-c gateway.yaml is required")
			}
			if level == "" {
				if cfg, err := config.Load(path); err == nil {
					level = cfg.Gateway.LogLevel
				}
			}
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				lv = slog.LevelInfo
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
			d, err := daemon.New(daemon.Options{ConfigPath: path, Version: Version, Logger: log})
			if err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" {
				// Gateways are short of memory, not CPU: a smaller heap goal
				// saves about 8 MB at 250 devices for a few tenths of a percent
				// of CPU. Set in the environment too, so the plugins it starts
				// (which inherit it) run the same way.
				debug.SetGCPercent(50)
				_ = os.Setenv("GOGC", "50")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runNotifying(ctx, d, log)
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "gateway.yaml")
	c.Flags().StringVar(&level, "log-level", "", "debug, info, warn or error (default: gateway.log_level)")
	return c
}

// runNotifying runs the daemon and tells systemd (Type=notify units, see
// configs/package/drover.service) that it is ready once the local API
// listens, and that it is stopping when ctx ends. Outside systemd the
// notifications are no-ops.
func runNotifying(ctx context.Context, d *daemon.Daemon, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.APIReady():
		if _, err := sdnotify.Notify(sdnotify.Ready); err != nil {
			log.Warn("notify systemd", "error", err)
		}
	case err := <-done:
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_, _ = sdnotify.Notify(sdnotify.Stopping)
		return <-done
	}
}
