package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/internal/smpsim"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/host"
	"github.com/drover-iot/drover/test/harness"
)

// mcuProfileYAML is the microcontroller's profile for the gateway: stat
// and setting points of devsim serial's default device.
const mcuProfileYAML = `name: e2e-mcu
plugin: serial
points:
  - { name: uptime, stat: app, field: uptime_s, type: uint32, unit: s }
  - { name: resets, stat: app, field: resets, type: uint32 }
  - { name: interval, setting: app/interval, type: int32, writable: true }
  - { name: label, setting: app/name, type: string, writable: true }
methods:
  reboot: {}
  factoryReset: {}
identify: { manufacturer: Acme, model: MCU-1 }
settings: { save: true, commit: true }
`

// startSerialSim runs `devsim serial` with args and returns it and its
// pseudo-terminal.
func startSerialSim(t *testing.T, args ...string) (*harness.Proc, string) {
	t.Helper()
	sim := harness.Start(t, harness.Bin(t, "devsim"), append([]string{"serial", "--log-level", "info"}, args...)...)
	port := sim.Await(t, "serial:", 30*time.Second)
	sim.Await(t, "ready", 10*time.Second)
	return sim, port
}

// awaitLog waits until the simulator has logged a line matching re (its
// device log on stderr is the event stream of these tests) and returns
// every match so far.
func awaitLog(t *testing.T, sim *harness.Proc, re string, n int, timeout time.Duration) [][]string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		m := rx.FindAllStringSubmatch(sim.Stderr(), -1)
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("devsim did not log %d× %q within %s; stderr:\n%s", n, re, timeout, harness.Tail(sim.Stderr(), 40))
		}
		select {
		case <-sim.Exited():
			t.Fatalf("devsim exited; stderr:\n%s", harness.Tail(sim.Stderr(), 40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestSerialEndToEnd runs hub, gateway, drover-plugin-serial and devsim
// serial on a pty at 115200 baud: the MCU's twin shows its points and
// identity, a desired setting lands in the device, reboot and factory
// reset go through direct methods.
func TestSerialEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	ctx := context.Background()
	s := &system{t: t, dir: t.TempDir(), gwID: "gw-serial"}
	s.hub = harness.StartHub(t, "")
	s.svc = s.hub.Service(t)
	connStr, childrenKey := harness.ProvisionGateway(t, s.svc, s.hub.Hostname, s.gwID, "serial-line", s.dir)

	sim, port := startSerialSim(t, "--baud", "115200", "--reset-silence", "300ms")
	s.sim = sim
	profiles := filepath.Join(s.dir, "profiles")
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(profiles, "e2e-mcu.yaml"), mcuProfileYAML)
	s.binDir = filepath.Dir(harness.Bin(t, "drover-plugin-serial"))
	s.api = freeAddr(t)
	harness.GatewayConfig{
		ID: s.gwID, DataDir: filepath.Join(s.dir, "data"), LocalAPI: s.api,
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: s.hub.MQTTAddr, CAFile: s.hub.CAFile,
			ChildrenKeyFile: childrenKey, TokenTTL: time.Hour},
		PluginsDir: s.binDir, RestartBackoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second},
		ProfilesDir: profiles,
		Buses:       []harness.Bus{{Name: "mcu-uart", Plugin: "serial", Port: port, Baud: 115200, Timeout: time.Second}},
		Devices:     []harness.Device{{ID: "mcu-1", Bus: "mcu-uart", Profile: "e2e-mcu", Poll: 500 * time.Millisecond}},
	}.Write(t, filepath.Join(s.dir, "gateway.yaml"))
	s.runGateway()

	t.Run("twin shows points and identity", func(t *testing.T) {
		s.eventually(t, 60*time.Second, "mcu-1 reports its points", func() (bool, string) {
			rep := s.reported("mcu-1")
			return path(rep, "points", "uptime") != nil && path(rep, "points", "label") == "mcu" &&
				num(path(rep, "points", "interval")) == 10 && path(rep, "connection", "state") == "online", fmt.Sprint(path(rep, "points"), path(rep, "connection"))
		})
		s.eventually(t, 30*time.Second, "identify fills reported.device", func() (bool, string) {
			d := path(s.reported("mcu-1"), "device")
			m, _ := d.(map[string]any)
			return m["firmwareVersion"] == "1.0.0" && m["manufacturer"] == "Acme" && m["model"] == "MCU-1", fmt.Sprint(d)
		})
	})

	t.Run("desired setting lands in the device", func(t *testing.T) {
		tw, err := s.svc.UpdateTwin(ctx, "mcu-1", serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"config": map[string]any{"interval": 30}}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		version := num(tw.Properties.Desired["$version"])
		// int32 30, little-endian, written and saved on the device.
		awaitLog(t, sim, `smpsim setting written.* name=app/interval value=1e000000`, 1, 30*time.Second)
		awaitLog(t, sim, `smpsim settings saved`, 1, 10*time.Second)
		s.eventually(t, 30*time.Second, "reported.config applied", func() (bool, string) {
			c := path(s.reported("mcu-1"), "config")
			m, _ := c.(map[string]any)
			return m["status"] == "applied" && num(m["version"]) == version && num(path(s.reported("mcu-1"), "points", "interval")) == 30, fmt.Sprint(c)
		})
	})

	t.Run("reboot through a direct method", func(t *testing.T) {
		r, err := s.svc.InvokeMethod(ctx, "mcu-1", serviceclient.MethodRequest{MethodName: "reboot", Payload: json.RawMessage(`{"force":true}`), ResponseTimeoutInSeconds: 30})
		if err != nil || r.Status != 202 {
			t.Fatalf("reboot: %+v %v", r, err)
		}
		awaitLog(t, sim, `smpsim reset requested`, 1, 30*time.Second)
		awaitLog(t, sim, `smpsim booted`, 2, 30*time.Second)
		s.eventually(t, 30*time.Second, "reboot done", func() (bool, string) {
			m, _ := path(s.reported("mcu-1"), "reboot").(map[string]any)
			return m["status"] == "done" && m["lastReboot"] != nil, fmt.Sprint(m)
		})
		s.eventually(t, 30*time.Second, "the device counts the reset", func() (bool, string) {
			v := num(path(s.reported("mcu-1"), "points", "resets"))
			return v >= 1, fmt.Sprint(v)
		})
	})

	t.Run("factory reset through a direct method", func(t *testing.T) {
		r, err := s.svc.InvokeMethod(ctx, "mcu-1", serviceclient.MethodRequest{MethodName: "factoryReset", Payload: json.RawMessage(`{"force":true}`), ResponseTimeoutInSeconds: 30})
		if err != nil || r.Status != 202 {
			t.Fatalf("factory reset: %+v %v", r, err)
		}
		awaitLog(t, sim, `smpsim storage erased`, 1, 30*time.Second)
		awaitLog(t, sim, `smpsim booted`, 3, 30*time.Second)
		s.eventually(t, 30*time.Second, "factoryReset done", func() (bool, string) {
			m, _ := path(s.reported("mcu-1"), "factoryReset").(map[string]any)
			return m["status"] == "done", fmt.Sprint(m)
		})
	})
}

// flashRig is the serial plugin binary, started through the plugin host,
// with one bus and device on a devsim serial pty.
type flashRig struct {
	t    *testing.T
	sim  *harness.Proc
	port string
	dir  string
	bus  map[string]any // extra bus keys
	inst *host.Instance
}

var mcuProfileJSON = json.RawMessage(`{"name": "e2e-mcu", "plugin": "serial",
 "points": [{"name": "uptime", "stat": "app", "field": "uptime_s", "type": "uint32"}],
 "methods": {"reboot": {}, "factoryReset": {}}}`)

func newFlashRig(t *testing.T, simArgs ...string) *flashRig {
	t.Helper()
	return newFlashRigBus(t, nil, simArgs...)
}

func newFlashRigBus(t *testing.T, bus map[string]any, simArgs ...string) *flashRig {
	t.Helper()
	r := &flashRig{t: t, dir: filepath.Dir(harness.Bin(t, "drover-plugin-serial")), bus: bus}
	r.sim, r.port = startSerialSim(t, append([]string{"--baud", "115200", "--buf-size", "2048", "--reset-silence", "300ms"}, simArgs...)...)
	r.start()
	return r
}

// start starts the plugin process and opens the bus and device.
func (r *flashRig) start() {
	t := r.t
	t.Helper()
	ctx := harness.Context(t)
	inst, err := host.Start(ctx, host.Options{Dir: r.dir}, "serial")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Close)
	r.inst = inst
	m := map[string]any{"name": "mcu", "plugin": "serial", "port": r.port, "baud": 115200,
		"timeout": "1s", "retries": 2, "reboot_timeout": "20s", "erase_timeout": "10s", "scan_ports": []string{}}
	for k, v := range r.bus {
		m[k] = v
	}
	bus, _ := json.Marshal(m)
	p := inst.Plugin()
	if err := p.OpenBus(ctx, plugins.BusConfig{Name: "mcu", Config: bus}); err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(ctx, plugins.DeviceConfig{ID: "mcu-1", Bus: "mcu", Profile: mcuProfileJSON}); err != nil {
		t.Fatal(err)
	}
}

// image writes a firmware file for the simulator and returns its path.
func (r *flashRig) image(version string, size int, bad bool) string {
	r.t.Helper()
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		r.t.Fatal(err)
	}
	p := filepath.Join(r.t.TempDir(), "fw-"+version+".bin")
	write(r.t, p, string(smpsim.BuildImage(v, size, bad)))
	return p
}

// flash runs Flash and returns its events and error; onEvent may act on
// each event (it runs on the stream).
func (r *flashRig) flash(ctx context.Context, img string, onEvent func(plugins.FlashEvent)) ([]plugins.FlashEvent, error) {
	var mu sync.Mutex
	var evs []plugins.FlashEvent
	err := r.inst.Plugin().Flash(ctx, plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: img}, func(e plugins.FlashEvent) {
		mu.Lock()
		evs = append(evs, e)
		mu.Unlock()
		if onEvent != nil {
			onEvent(e)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	return evs, err
}

func (r *flashRig) firmware() string {
	r.t.Helper()
	id, err := r.inst.Plugin().Identify(harness.Context(r.t), "mcu-1")
	if err != nil {
		r.t.Fatal(err)
	}
	return id.FirmwareVersion
}

func lastPhase(evs []plugins.FlashEvent) string {
	if len(evs) == 0 {
		return ""
	}
	return evs[len(evs)-1].Phase
}

// TestSerialFlash drives a flash through the real plugin binary by itself
// (the gateway's firmware pipeline comes later) against devsim serial.
func TestSerialFlash(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	const size = 24 << 10

	t.Run("new version ends active and confirmed", func(t *testing.T) {
		r := newFlashRig(t)
		evs, err := r.flash(harness.Context(t), r.image("1.1.0", size, false), nil)
		if err != nil || lastPhase(evs) != "done" {
			t.Fatalf("flash: %v; events %+v", err, evs)
		}
		if v := r.firmware(); v != "1.1.0" {
			t.Fatalf("running %s after the flash", v)
		}
		// Confirmed: another reboot keeps it (an unconfirmed image would revert).
		if err := r.inst.Plugin().Reboot(harness.Context(t), "mcu-1", plugins.ManageOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		awaitLog(t, r.sim, `smpsim booted.* version=1\.1\.0 swap=none`, 1, 30*time.Second)
		if v := r.firmware(); v != "1.1.0" {
			t.Fatalf("running %s after a reboot: the new image was not confirmed", v)
		}
	})

	t.Run("image that fails to boot is rolled back", func(t *testing.T) {
		r := newFlashRig(t)
		evs, err := r.flash(harness.Context(t), r.image("1.2.0", size, true), nil)
		if err == nil {
			t.Fatalf("flash of a crashing image succeeded; events %+v", evs)
		}
		if lastPhase(evs) != "rolled-back" {
			t.Fatalf("last phase %q, want rolled-back; error %v", lastPhase(evs), err)
		}
		awaitLog(t, r.sim, `smpsim booted.* crashed=true`, 1, 10*time.Second)
		if v := r.firmware(); v != "1.0.0" {
			t.Fatalf("running %s, want the old 1.0.0", v)
		}
	})

	t.Run("upload cut by a plugin kill resumes from the device's offset", func(t *testing.T) {
		r := newFlashRig(t)
		img := r.image("1.3.0", 64<<10, false)
		ctx, cancel := context.WithTimeout(harness.Context(t), 2*time.Minute)
		defer cancel()
		var once sync.Once
		_, err := r.flash(ctx, img, func(e plugins.FlashEvent) {
			if e.Phase == "uploading" && e.Total > 0 && e.Done >= e.Total/3 {
				once.Do(r.inst.Kill) // the plugin process dies mid-upload
			}
		})
		if err == nil {
			t.Fatal("flash survived its plugin's death")
		}
		r.start()
		evs, err := r.flash(ctx, img, nil)
		if err != nil || lastPhase(evs) != "done" {
			t.Fatalf("second flash: %v; events %+v", err, evs)
		}
		starts := awaitLog(t, r.sim, `smpsim upload started`, 1, time.Second)
		resumed := awaitLog(t, r.sim, `smpsim upload resumed.* offset=(\d+)`, 1, time.Second)
		off, _ := strconv.Atoi(resumed[0][1])
		if len(starts) != 1 || off < (64<<10)/3 {
			t.Fatalf("upload started %d times, resumed at %d: want one start and a resume past a third", len(starts), off)
		}
		if v := r.firmware(); v != "1.3.0" {
			t.Fatalf("running %s", v)
		}
	})

	t.Run("device power cut mid-upload starts over at 0", func(t *testing.T) {
		r := newFlashRig(t, "--fault", "reset-at=12000")
		evs, err := r.flash(harness.Context(t), r.image("1.4.0", size, false), nil)
		if err != nil || lastPhase(evs) != "done" {
			t.Fatalf("flash: %v; events %+v", err, evs)
		}
		awaitLog(t, r.sim, `smpsim power cut`, 1, time.Second)
		awaitLog(t, r.sim, `smpsim upload started`, 2, time.Second)
		if v := r.firmware(); v != "1.4.0" {
			t.Fatalf("running %s", v)
		}
	})

	t.Run("v1-only device on the raw transport", func(t *testing.T) {
		// The plugin starts in v2 (smp_version auto), the device refuses it
		// with rc 13, the plugin falls back to v1; no base64, no console.
		r := newFlashRigBus(t, map[string]any{"transport": "raw"}, "--smp-version", "v1-strict", "--transport", "raw")
		evs, err := r.flash(harness.Context(t), r.image("1.6.0", size, false), nil)
		if err != nil || lastPhase(evs) != "done" {
			t.Fatalf("flash: %v; events %+v", err, evs)
		}
		id, err := r.inst.Plugin().Identify(harness.Context(t), "mcu-1")
		if err != nil || id.FirmwareVersion != "1.6.0" || id.Extra["smpVersion"] != "1" {
			t.Fatalf("identify %+v, %v: want 1.6.0 over SMP v1", id, err)
		}
	})

	t.Run("lost and corrupt answers are retried and nothing hangs", func(t *testing.T) {
		r := newFlashRig(t, "--fault", "drop-every=7,corrupt-every=11")
		ctx, cancel := context.WithTimeout(harness.Context(t), 2*time.Minute)
		defer cancel()
		evs, err := r.flash(ctx, r.image("1.5.0", size, false), nil)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("flash hung on a noisy line; events %+v", evs)
		}
		if err != nil || lastPhase(evs) != "done" {
			t.Fatalf("flash: %v; events %+v", err, evs)
		}
		awaitLog(t, r.sim, `smpsim answer dropped \(fault\)`, 1, time.Second)
		awaitLog(t, r.sim, `smpsim answer corrupted \(fault\)`, 1, time.Second)
	})
}
