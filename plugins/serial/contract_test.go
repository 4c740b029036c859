package serial

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/host"
	"github.com/drover-iot/drover/plugins/plugintest"
)

// testProfile is a profile with every kind of point.
const testProfile = `{
 "name": "test-mcu", "plugin": "serial",
 "points": [
  {"name": "uptime", "stat": "app", "field": "uptime_s", "type": "uint32", "unit": "s"},
  {"name": "resets", "stat": "app", "field": "resets"},
  {"name": "interval", "setting": "app/interval", "type": "int32", "writable": true},
  {"name": "label", "setting": "app/name", "type": "string", "writable": true},
  {"name": "clock", "os": "datetime"},
  {"name": "buffer", "os": "buf_size"}
 ],
 "methods": {"reboot": {}, "factoryReset": {}},
 "identify": {"manufacturer": "Acme", "model": "MCU-1", "serial_point": "label"},
 "settings": {"save": true, "commit": true}
}`

// busJSON is a bus entry for port with fast timeouts for tests, at
// 921600 baud: lines are paced at that wire rate, which keeps the flashes
// short.
func busJSON(port string, extra map[string]any) json.RawMessage {
	m := map[string]any{"name": "mcu", "plugin": "serial", "port": port, "baud": 921600, "timeout": "300ms",
		"retries": 1, "reset_delay": "100ms", "reboot_timeout": "10s", "erase_timeout": "5s", "scan_ports": []string{}}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func writeImage(t testing.TB, v mcuboot.Version, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fw-"+v.String()+".bin")
	if err := os.WriteFile(p, mcuboot.Build(v, bytes.Repeat([]byte{byte(v.Minor)}, size)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is the contract fixture for device m; a second device answers
// on scan address 1 (the bus's scan_ports), so scans have a range to
// cancel.
func fixture(t *testing.T, m *testMCU) plugintest.Fixture {
	other := newTestMCU(t, mcuboot.Version{Major: 9})
	return plugintest.Fixture{
		Bus:    plugins.BusConfig{Name: "mcu", Config: busJSON(m.Port, map[string]any{"scan_ports": []string{other.Port}})},
		Device: plugins.DeviceConfig{ID: "mcu-1", Bus: "mcu", Profile: json.RawMessage(testProfile)},
		Points: []string{"uptime", "resets", "interval", "label", "clock", "buffer"},
		Writes: []plugins.PointWrite{
			{Point: "interval", Value: plugins.Value{Kind: plugins.KindInt, Int: 30}},
			{Point: "label", Value: plugins.Value{Kind: plugins.KindString, String: "pump-7"}},
		},
		BadBus:     json.RawMessage(`{"port": "/dev/ttyS1", "smp_version": "3", "line_pacing": "fast"}`),
		BadProfile: json.RawMessage(`{"name": "x", "plugin": "serial", "points": [{"name": "a", "stat": "app"}]}`),
		Scan:       &plugins.ScanRequest{From: 0, To: 1, Timeout: 300 * time.Millisecond},
		Manage:     true,
		Flash:      &plugins.FlashRequest{ImagePath: writeImage(t, mcuboot.Version{Major: 1, Minor: 1}, 6000)},
		Timeout:    30 * time.Second,
	}
}

// newDriver returns a driver whose buses are closed (ports unlocked) when
// the test ends.
func newDriver(t *testing.T) *Driver {
	d := New(Options{})
	t.Cleanup(func() {
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("close driver: %v", err)
		}
	})
	return d
}

// TestContractInProcess runs the plugin contract suite against the driver
// served over real gRPC, on a test device behind a pty.
func TestContractInProcess(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	plugintest.RunContract(t, func(t *testing.T) plugins.Plugin {
		return plugintest.Connect(t, newDriver(t))
	}, fixture(t, m))
}

// buildPlugin returns a plugins dir holding drover-plugin-serial: the one
// `make test` built (DROVER_BIN), else a fresh build.
func buildPlugin(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("DROVER_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "drover-plugin-serial")); err == nil {
			return d
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "drover-plugin-serial"), "github.com/drover-iot/drover/cmd/drover-plugin-serial")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build drover-plugin-serial: %v\n%s", err, out)
	}
	return dir
}

// TestContractRealBinary runs the contract suite against the real
// drover-plugin-serial executable started by the plugin host.
func TestContractRealBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the plugin binary")
	}
	dir := buildPlugin(t)
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	plugintest.RunContract(t, func(t *testing.T) plugins.Plugin {
		inst, err := host.Start(context.Background(), host.Options{Dir: dir}, "serial")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inst.Close() })
		return inst.Plugin()
	}, fixture(t, m))
}
