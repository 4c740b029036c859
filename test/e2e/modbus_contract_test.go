package e2e

import (
	"context"
	"encoding/json"
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
	fx := plugintest.Fixture{
		Bus:        plugins.BusConfig{Name: "lan", Config: busJSON},
		Device:     plugins.DeviceConfig{ID: "pump-1", Bus: "lan", Address: 1, Profile: profJSON},
		Points:     []string{"temperature", "pressure", "setpoint", "running", "serial"},
		Writes:     []plugins.PointWrite{{Point: "setpoint", Value: plugins.Value{Kind: plugins.KindFloat, Float: 22.5}}},
		BadBus:     json.RawMessage(`{"mode":"rtu","baud":"fast"}`),
		BadProfile: json.RawMessage(`{"name":"x","plugin":"modbus","points":[{"name":"a","table":"coils","address":0,"type":"bool"}]}`),
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
