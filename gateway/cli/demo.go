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
	"github.com/drover-iot/drover/internal/serviceclient"
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
the repository root, as make demo does): an localhub (bin/droverhub, its own process) on
127.0.0.1:8883 (MQTT) and :8443 (HTTPS), devsim serving three pumps (unit 1 on Modbus TCP
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
		return fmt.Errorf("demo data directory: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// 1. The hub: bin/droverhub as its own process. The gateway and the hub
	// meet only on the wire, so the drover binary carries no hub code.
	hub, err := startHub(ctx, hubDir, u.Address, demoHubHTTPS)
	if err != nil {
		return err
	}
	defer hub.stop()

	// 2. The gateway's identity and the enrollment group its children use,
	// through the hub's service API as an operator would.
	svc, err := hub.serviceClient()
	if err != nil {
		return err
	}
	if err := provisionDemo(ctx, svc, u.ConnectionStringFile, u.ChildrenKeyFile); err != nil {
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
	case <-hub.exited:
		return hub.unexpectedExit()
	case <-time.After(60 * time.Second):
		return errors.New("gateway: local API not up after 60s")
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	fmt.Fprintf(stdout, `
Drover demo is running. Ctrl-C stops everything.

  localhub      MQTT %s, HTTPS %s, data in %s (droverhub, pid %d)
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

Firmware update of mcu-1 (images signed with the demo's key; docs/firmware.md):
  bin/devsim image --version 1.1.0 -o demo-data/mcu-1.1.0.bin
  bin/droverctl firmware upload demo-data/mcu-1.1.0.bin --version 1.1.0 --manufacturer Acme --model MCU-1 --key configs/demo/firmware-demo.key
  bin/droverctl firmware deploy --version 1.1.0 --model MCU-1 --query "*" --wait
  bin/droverctl firmware status --version 1.1.0
  (bin/devsim image --version 1.2.0 --fail-boot … makes one that fails to boot and is rolled back)

Firmware update of pump-1 (Modbus register window; the demo pump always runs, so its
in-use rule holds the deployment until a forced call takes it on):
  bin/devsim image --format modbus --version 2.4 -o demo-data/pump-2.4.bin
  bin/droverctl firmware upload demo-data/pump-2.4.bin --version 2.4 --manufacturer Acme --model AP-100-EU --key configs/demo/firmware-demo.key
  bin/droverctl firmware deploy --version 2.4 --model AP-100-EU --query "deviceId = 'pump-1'"
  bin/drover jobs --device pump-1 -c %s
  bin/droverctl invoke pump-1 firmwareUpdate '{"version":"2.4","force":true}'
  bin/droverctl firmware status --version 2.4 --watch

Technician side (works without the hub too):
  bin/drover status -c %s
  bin/drover devices -c %s
  bin/drover read pump-2 temperature setpoint -c %s
  bin/drover write pump-2 setpoint=22 -c %s

Live values reach the hub within a few seconds.
`, hub.mqttAddr, hub.httpsAddr, abs(hubDir), hub.cmd.Process.Pid, abs(rtuLink), abs(mcuLink), demoGateway, cfg.Gateway.LocalAPI,
		abs(hub.ownerFile), abs(hub.caFile), hub.httpsAddr, cfgPath, cfgPath, cfgPath, cfgPath, cfgPath)

	select {
	case err = <-gwDone:
		cancel()
	case <-hub.exited:
		cancel()
		err = errors.Join(hub.unexpectedExit(), <-gwDone)
	case <-ctx.Done():
		err = <-gwDone
	}
	return errors.Join(err, hub.stop())
}

// demoHubHTTPS is the demo hub's service endpoint (droverctl's DROVER_HUB_ADDRESS).
const demoHubHTTPS = "127.0.0.1:8443"

// hubProc is the demo's droverhub process and what it printed when ready.
type hubProc struct {
	cmd                                    *exec.Cmd
	exited                                 chan struct{} // closed once Wait returned
	waitErr                                error         // Wait's result; valid once exited is closed
	mqttAddr, httpsAddr, caFile, ownerFile string
}

// startHub runs `droverhub serve` (next to this binary) and waits for its
// ready block: "droverhub ready", then "mqtt:", "https:", "ca:" and
// "owner connection string:" lines.
func startHub(ctx context.Context, dataDir, mqttAddr, httpsAddr string) (*hubProc, error) {
	bin, err := siblingBinary("droverhub")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--data", dataDir, "--mqtt-addr", mqttAddr, "--https-addr", httpsAddr, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	// Its own process group: Ctrl-C reaches the demo only, which stops the
	// gateway first and the hub last.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("droverhub stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (run make build first)", bin, err)
	}
	h := &hubProc{cmd: cmd, exited: make(chan struct{})}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
		h.waitErr = cmd.Wait()
		close(h.exited)
	}()
	fields := map[string]*string{"mqtt:": &h.mqttAddr, "https:": &h.httpsAddr, "ca:": &h.caFile, "owner connection string:": &h.ownerFile}
	timeout := time.After(60 * time.Second)
	for h.ownerFile == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				<-h.exited
				return nil, fmt.Errorf("droverhub exited before it was ready: %w", h.waitErr)
			}
			for prefix, dst := range fields {
				if v, found := strings.CutPrefix(strings.TrimSpace(l), prefix); found {
					*dst = strings.TrimSpace(v)
				}
			}
		case <-timeout:
			_ = h.stop()
			return nil, errors.New("droverhub not ready after 60s; are ports 8883 and 8443 free?")
		case <-ctx.Done():
			_ = h.stop()
			return nil, ctx.Err()
		}
	}
	go func() {
		for range lines { // keep the pipe drained
		}
	}()
	return h, nil
}

// serviceClient connects to the hub's service API as its owner.
func (h *hubProc) serviceClient() (*serviceclient.Client, error) {
	b, err := os.ReadFile(h.ownerFile)
	if err != nil {
		return nil, fmt.Errorf("hub owner connection string: %w", err)
	}
	cs, err := sas.ParseConnectionString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("hub owner connection string in %s: %w", h.ownerFile, err)
	}
	return serviceclient.New(cs, serviceclient.Options{Address: h.httpsAddr, CAFile: h.caFile})
}

// stop interrupts the hub (unless it has exited) and waits for it. A hub
// that ends on our interrupt is no error.
func (h *hubProc) stop() error {
	select {
	case <-h.exited:
		return h.waitErr
	default:
	}
	_ = h.cmd.Process.Signal(os.Interrupt)
	select {
	case <-h.exited:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
	var ee *exec.ExitError
	if errors.As(h.waitErr, &ee) && ee.ExitCode() == -1 {
		return nil // ended by a signal we sent
	}
	return h.waitErr
}

// unexpectedExit describes a hub that ended while the demo still needed it.
func (h *hubProc) unexpectedExit() error {
	if h.waitErr == nil {
		return errors.New("hub exited unexpectedly")
	}
	return fmt.Errorf("hub exited unexpectedly: %w", h.waitErr)
}

// siblingBinary is name in the directory of the running executable.
func siblingBinary(name string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	return filepath.Join(filepath.Dir(self), name), nil
}

// provisionDemo makes sure the gateway identity (an edge device) and the
// enrollment group exist, and writes the two secrets the gateway reads.
func provisionDemo(ctx context.Context, svc *serviceclient.Client, connFile, keyFile string) error {
	gw, err := svc.GetDevice(ctx, demoGateway)
	if errors.Is(err, serviceclient.ErrNotFound) {
		gw, err = svc.CreateDevice(ctx, serviceclient.Device{DeviceID: demoGateway, Capabilities: &serviceclient.Capabilities{IoTEdge: true}})
	}
	if err != nil {
		return fmt.Errorf("demo gateway identity: %w", err)
	}
	grp, err := svc.GetEnrollmentGroup(ctx, demoEnrollment)
	if errors.Is(err, serviceclient.ErrNotFound) {
		grp, err = svc.CreateEnrollmentGroup(ctx, serviceclient.EnrollmentGroup{EnrollmentGroupID: demoEnrollment, ParentDeviceID: demoGateway})
	}
	if err != nil {
		return fmt.Errorf("demo enrollment group: %w", err)
	}
	if gw.Authentication == nil || gw.Authentication.SymmetricKey == nil || grp.Attestation.SymmetricKey == nil {
		return errors.New("demo: hub returned identities without symmetric keys")
	}
	cs := sas.ConnectionString{HostName: svc.HostName(), DeviceID: demoGateway, Key: gw.Authentication.SymmetricKey.PrimaryKey}
	if err := os.WriteFile(connFile, []byte(cs.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", connFile, err)
	}
	if err := os.WriteFile(keyFile, []byte(grp.Attestation.SymmetricKey.PrimaryKey+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", keyFile, err)
	}
	return nil
}

// startDevsim runs devsim (next to this binary) with the demo profile and
// links its pseudo-terminal to link.
func startDevsim(ctx context.Context, cfg *config.Config, link string) (*exec.Cmd, error) {
	bin, err := siblingBinary("devsim")
	if err != nil {
		return nil, err
	}
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
	bin, err := siblingBinary("devsim")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serial", "--name", "mcu-1", "--baud", "115200", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("devsim serial stdout: %w", err)
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
