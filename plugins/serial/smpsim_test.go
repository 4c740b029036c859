package serial

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smpsim"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/plugintest"
)

// simProfile uses the simulator's default statistics and settings.
const simProfile = `{
 "name": "sim-mcu", "plugin": "serial",
 "points": [
  {"name": "uptime", "stat": "app", "field": "uptime_s", "type": "uint32"},
  {"name": "resets", "stat": "app", "field": "resets", "type": "uint32"},
  {"name": "interval", "setting": "app/interval", "type": "int32", "writable": true},
  {"name": "label", "setting": "app/name", "type": "string", "writable": true},
  {"name": "clock", "os": "datetime", "type": "string"}
 ],
 "methods": {"reboot": {}, "factoryReset": {}},
 "identify": {"manufacturer": "Acme", "model": "MCU-1"},
 "settings": {"save": true, "commit": true}
}`

// TestContractOnSimulator runs the contract suite against the driver on
// the shared SMP simulator (internal/smpsim): a 2-line receive pool, log
// lines between frames, MCUboot slots, paced at 921600 baud; over the
// base64 and raw transports, and with a device that speaks only SMP v1.
func TestContractOnSimulator(t *testing.T) {
	for _, tc := range []struct {
		transport smpsim.Transport
		version   smpsim.VersionMode
	}{
		{smpsim.Base64, smpsim.V2},
		{smpsim.Raw, smpsim.V2},
		{smpsim.Base64, smpsim.V1},
		{smpsim.Base64, smpsim.V1Strict},
	} {
		t.Run(string(tc.transport)+"/"+string(tc.version), func(t *testing.T) {
			port, dev := smpsim.ServePTY(t, smpsim.Config{Baud: 921600, LogInterval: 50 * time.Millisecond, InterleaveLogs: true,
				Transport: tc.transport, Version: tc.version})
			fx := plugintest.Fixture{
				Bus: plugins.BusConfig{Name: "mcu", Config: busJSON(port, map[string]any{"timeout": "1s", "reset_delay": "200ms",
					"transport": string(tc.transport)})},
				Device: plugins.DeviceConfig{ID: "mcu-1", Bus: "mcu", Profile: json.RawMessage(simProfile)},
				Points: []string{"uptime", "resets", "interval", "label", "clock"},
				Writes: []plugins.PointWrite{
					{Point: "interval", Value: plugins.Value{Kind: plugins.KindInt, Int: 30}},
					{Point: "label", Value: plugins.Value{Kind: plugins.KindString, String: "pump-7"}},
				},
				Scan:    &plugins.ScanRequest{From: 0, To: 0},
				Manage:  true,
				Flash:   &plugins.FlashRequest{ImagePath: writeImage(t, mcuboot.Version{Major: 1, Minor: 1}, 6000)},
				Timeout: 60 * time.Second,
			}
			plugintest.RunContract(t, func(t *testing.T) plugins.Plugin {
				return plugintest.Connect(t, newDriver(t))
			}, fx)
			if c := dev.Counters(); c.LinesDropped != 0 {
				t.Errorf("the device's 2-line pool dropped %d lines: %+v", c.LinesDropped, c)
			}
		})
	}
}
