package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/host"
	"github.com/drover-iot/drover/plugins/modbus"
	"github.com/drover-iot/drover/plugins/plugintest"
	"github.com/drover-iot/drover/test/harness"
)

// TestModbusPluginContract runs the plugin contract suite against the Modbus
// plugin twice: in-process over real gRPC, and as the real
// drover-plugin-modbus binary started by the plugin host. The device is the
// simulator serving the demo profile over Modbus TCP.
func TestModbusPluginContract(t *testing.T) {
	profilePath := filepath.Join(repoRoot(), "configs", "devsim", "demo-pump.yaml")
	addr := modbussim.ServeTCP(t, profilePath, modbussim.Options{Units: []byte{1}})

	// The profile goes to the plugin as the gateway sends it: through the config loader.
	prof, err := config.LoadProfile(profilePath)
	if err != nil {
		t.Fatal(err)
	}
	profJSON, err := prof.JSON()
	if err != nil {
		t.Fatal(err)
	}
	busJSON, _ := json.Marshal(map[string]any{"mode": "tcp", "address": addr, "timeout": "500ms"})
	// A firmware image the simulated pump boots (it runs 2.3): the first
	// run flashes it, the second finds it running and is done at once.
	img := modbussim.FirmwareImage("2.4", 4096)
	imgPath := filepath.Join(t.TempDir(), "pump-2.4.bin")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	manifest, _ := json.Marshal(map[string]string{"version": "2.4", "sha256": hex.EncodeToString(sum[:])})
	fx := plugintest.Fixture{
		Bus:        plugins.BusConfig{Name: "lan", Config: busJSON},
		Device:     plugins.DeviceConfig{ID: "pump-1", Bus: "lan", Address: 1, Profile: profJSON},
		Points:     []string{"temperature", "pressure", "setpoint", "running", "serial"},
		Writes:     []plugins.PointWrite{{Point: "setpoint", Value: plugins.Value{Kind: plugins.KindFloat, Float: 22.5}}},
		BadBus:     json.RawMessage(`{"mode":"rtu","baud":"fast"}`),
		BadProfile: json.RawMessage(`{"name":"x","plugin":"modbus","points":[{"name":"a","table":"coils","address":0,"type":"bool"}]}`),
		Flash:      &plugins.FlashRequest{ImagePath: imgPath, Manifest: manifest},
	}

	t.Run("in-process", func(t *testing.T) {
		plugintest.RunContract(t, func(t *testing.T) plugins.Plugin {
			return plugintest.Connect(t, modbus.New(modbus.Options{}))
		}, fx)
	})
	t.Run("real binary", func(t *testing.T) {
		dir := filepath.Dir(harness.Bin(t, "drover-plugin-modbus"))
		plugintest.RunContract(t, func(t *testing.T) plugins.Plugin {
			inst, err := host.Start(context.Background(), host.Options{Dir: dir}, "modbus")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { inst.Close() })
			return inst.Plugin()
		}, fx)
	})
}
