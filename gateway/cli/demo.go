package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/daemon"
	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub"
	"github.com/drover-iot/drover/localhub/store"
)

// The demo's fixed names; configs/demo/gateway.yaml refers to them.
const (
	demoGateway    = "demo-gateway"
	demoEnrollment = "demo-line"
	demoConfig     = "configs/demo/gateway.yaml"
)

func demoCmd(stdout, stderr io.Writer) *cobra.Command {
	var cfgPath, level string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the demo: localhub, simulated Modbus pumps (TCP and RTU) and an SMP microcontroller, the plugins and the gateway",
		Long: `demo runs everything on this machine from configs/demo/gateway.yaml (run it from
the repository root, as make demo does): an embedded localhub on 127.0.0.1:8883
(MQTT) and :8443 (HTTPS), devsim serving three pumps (unit 1 on Modbus TCP
127.0.0.1:5020, units 2 and 3 on Modbus RTU over a pseudo-terminal), devsim
serial's SMP microcontroller (mcu-1) on another pseudo-terminal, and the
gateway, whose children are provisioned through an enrollment group. State
lives in demo-data/. Ctrl-C stops everything.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: %w", level, err)
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cfgPath, stdout, log)
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", demoConfig, "the demo gateway's configuration")
	c.Flags().StringVar(&level, "log-level", "warn", "debug, info, warn or error")
	return c
}

func runDemo(ctx context.Context, cfgPath string, stdout io.Writer, log *slog.Logger) error {
	if _, err := os.Stat(cfgPath); err != nil {
		return fmt.Errorf("demo configuration %s: %w (run from the repository root, e.g. with make demo)", cfgPath, err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	u := cfg.Upstream
	dataDir := filepath.Dir(u.ChildrenKeyFile) // demo-data/
	hubDir := filepath.Dir(filepath.Dir(u.CAFile))
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// 1. The hub.
	hub, err := localhub.New(localhub.Options{DataDir: hubDir, MQTTAddr: u.Address, HTTPSAddr: "127.0.0.1:8443", Logger: log.With("component", "hub")})
	if err != nil {
		return err
	}
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(ctx) }()
	select {
	case <-hub.Ready():
	case err := <-hubDone:
		return fmt.Errorf("hub: %w", err)
	}

	// 2. The gateway's identity and the enrollment group its children use.
	if err := provisionDemo(ctx, hub.Store(), u.ConnectionStringFile, u.ChildrenKeyFile, hub.Hostname()); err != nil {
		return err
	}

	// 3. The simulated pumps.
	rtuLink := cfg.Bus("rs485-1").Port
	sim, err := startDevsim(ctx, cfg, rtuLink)
	if err != nil {
		return err
	}
	defer func() { _ = sim.Process.Signal(os.Interrupt); _ = sim.Wait() }()
	mcuLink := cfg.Bus("mcu-uart").Port
	mcu, err := startDevsimSerial(ctx, mcuLink)
	if err != nil {
		return err
	}
	defer func() { _ = mcu.Process.Signal(os.Interrupt); _ = mcu.Wait() }()

	// 4. The gateway (it starts the Modbus plugin).
	d, err := daemon.New(daemon.Options{ConfigPath: cfgPath, Version: Version, Logger: log.With("component", "gateway"), ReportInterval: 10 * time.Second})
	if err != nil {
		return err
	}
	gwDone := make(chan error, 1)
	go func() { gwDone <- d.Run(ctx) }()
	select {
	case <-d.APIReady():
	case err := <-gwDone:
		return fmt.Errorf("gateway: %w", err)
	case <-time.After(60 * time.Second):
		return errors.New("gateway: local API not up after 60s")
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	fmt.Fprintf(stdout, `
Drover demo is running. Ctrl-C stops everything.

  localhub      MQTT %s, HTTPS %s, data in %s
  devsim        pump-1 on Modbus TCP 127.0.0.1:5020 (unit 1); pump-2, pump-3 on Modbus RTU %s (units 2, 3)
                mcu-1, an SMP microcontroller (Zephyr/MCUboot) on %s at 115200 baud
  gateway       %s, local API http://%s

Operator side (another terminal, from this directory):
  export DROVER_HUB_CONNECTION_STRING="$(cat %s)"
  export DROVER_CA_FILE=%s
  export DROVER_HUB_ADDRESS=%s
  bin/droverctl query "SELECT deviceId, properties.reported.points.temperature AS t FROM devices WHERE capabilities.iotEdge = false"
  bin/droverctl twin show pump-1
  bin/droverctl twin update pump-1 --desired '{"config":{"setpoint":23.5}}'
  bin/droverctl invoke pump-1 reboot '{"force":true}'
  bin/droverctl monitor pump-1

Technician side (works without the hub too):
  bin/drover status -c %s
  bin/drover devices -c %s
  bin/drover read pump-2 temperature setpoint -c %s
  bin/drover write pump-2 setpoint=22 -c %s

Live values reach the hub within a few seconds.
`, hub.MQTTAddr(), hub.HTTPSAddr(), abs(hubDir), abs(rtuLink), abs(mcuLink), demoGateway, cfg.Gateway.LocalAPI,
		abs(hub.OwnerConnectionStringFile()), abs(hub.CAFile()), hub.HTTPSAddr(), cfgPath, cfgPath, cfgPath, cfgPath)

	select {
	case err = <-gwDone:
		cancel()
	case <-ctx.Done():
		err = <-gwDone
	}
	herr := <-hubDone
	return errors.Join(err, herr)
}

// provisionDemo makes sure the gateway identity (an edge device) and the
// enrollment group exist, and writes the two secrets the gateway reads.
func provisionDemo(ctx context.Context, st *store.Store, connFile, keyFile, hostname string) error {
	gw, err := st.GetDevice(ctx, demoGateway)
	if errors.Is(err, store.ErrNotFound) {
		gw, err = st.CreateDevice(ctx, store.Device{ID: demoGateway, IoTEdge: true})
	}
	if err != nil {
		return fmt.Errorf("demo gateway identity: %w", err)
	}
	grp, err := st.GetEnrollment(ctx, demoEnrollment)
	if errors.Is(err, store.ErrNotFound) {
		grp, err = st.PutEnrollment(ctx, store.Enrollment{ID: demoEnrollment, Parent: demoGateway})
	}
	if err != nil {
		return fmt.Errorf("demo enrollment group: %w", err)
	}
	cs := sas.ConnectionString{HostName: hostname, DeviceID: demoGateway, Key: gw.PrimaryKey}
	if err := os.WriteFile(connFile, []byte(cs.String()+"\n"), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, []byte(grp.PrimaryKey+"\n"), 0o600)
}

// startDevsim runs devsim (next to this binary) with the demo profile and
// links its pseudo-terminal to link.
func startDevsim(ctx context.Context, cfg *config.Config, link string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(filepath.Dir(self), "devsim")
	profile := filepath.Join(cfg.ProfilesDir, "demo-pump.yaml")
	cmd := exec.Command(bin, "modbus", "--profile", profile, "--tcp", cfg.Bus("plant-lan").Address, "--rtu", "--units", "1-3", "--baud", "115200", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (run make build first)", bin, err)
	}
	sc := bufio.NewScanner(out)
	pts := ""
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "rtu: "); ok {
			pts = strings.TrimSpace(p)
		}
		if line == "ready" {
			break
		}
	}
	if pts == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, errors.New("devsim did not start (no rtu: line); is port 5020 free?")
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	_ = os.Remove(link)
	if err := os.Symlink(pts, link); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("link %s to %s: %w", link, pts, err)
	}
	go func() {
		<-ctx.Done()
		_ = cmd.Process.Signal(os.Interrupt)
	}()
	return cmd, nil
}

// startDevsimSerial runs `devsim serial` (next to this binary): one SMP
// microcontroller, its pseudo-terminal linked to link.
func startDevsimSerial(ctx context.Context, link string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(filepath.Dir(self), "devsim")
	cmd := exec.Command(bin, "serial", "--name", "mcu-1", "--baud", "115200", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serial: %w (run make build first)", bin, err)
	}
	stop := func(err error) (*exec.Cmd, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	sc := bufio.NewScanner(out)
	pts := ""
	for sc.Scan() && sc.Text() != "ready" {
		if p, ok := strings.CutPrefix(sc.Text(), "serial: "); ok {
			pts = strings.TrimSpace(p)
		}
	}
	if pts == "" {
		return stop(errors.New("devsim serial did not start (no serial: line)"))
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	_ = os.Remove(link)
	if err := os.Symlink(pts, link); err != nil {
		return stop(fmt.Errorf("link %s to %s: %w", link, pts, err))
	}
	go func() {
		<-ctx.Done()
		_ = cmd.Process.Signal(os.Interrupt)
	}()
	return cmd, nil
}
