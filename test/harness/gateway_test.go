package harness

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/config"
)

// TestGatewayConfigLoads renders configurations as the rigs do and loads
// them through the gateway's own loader: every key the builder writes must
// be one the gateway reads, with the value meant.
func TestGatewayConfigLoads(t *testing.T) {
	profiles := filepath.Join(RepoRoot(), "configs", "devsim")
	tests := []struct {
		name  string
		cfg   GatewayConfig
		check func(t *testing.T, c *config.Config)
	}{
		{
			name: "offline, one rtu bus",
			cfg: GatewayConfig{ID: "gw-1", LocalAPI: "127.0.0.1:7080", PluginsDir: "/plugins",
				RestartBackoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second}, ProfilesDir: profiles,
				Buses:   []Bus{{Name: "rs485-1", Mode: "rtu", Port: "/dev/ttyX", Baud: 115200, Timeout: 300 * time.Millisecond, Retries: Retries(0)}},
				Devices: []Device{{ID: "pump-1", Bus: "rs485-1", Address: 1, Profile: "demo-pump", Poll: 500 * time.Millisecond}}},
			check: func(t *testing.T, c *config.Config) {
				if c.Upstream.ConnectionStringFile != "" {
					t.Errorf("upstream = %+v, want none", c.Upstream)
				}
				if b := c.Plugins.RestartBackoff; b.Min != 200*time.Millisecond || b.Max != 2*time.Second {
					t.Errorf("restart_backoff = %v..%v", b.Min, b.Max)
				}
				bus := c.Buses[0]
				if bus.Plugin != "modbus" || bus.Mode != "rtu" || bus.Port != "/dev/ttyX" || bus.Baud != 115200 || bus.Retries == nil || *bus.Retries != 0 {
					t.Errorf("bus = %+v", bus)
				}
				if d := c.Devices[0]; d.UnitAddress() != 1 || d.Poll != 500*time.Millisecond || d.Profile != "demo-pump" {
					t.Errorf("device = %+v", d)
				}
			},
		},
		{
			name: "uplink, outbox, tcp bus",
			cfg: GatewayConfig{ID: "gw-2", PluginsDir: "/plugins", ProfilesDir: profiles,
				Upstream: &Upstream{ConnectionStringFile: "/x/gw.connstr", Address: "127.0.0.1:8883", CAFile: "/x/ca.crt",
					ChildrenKeyFile: "/x/children.key", TokenTTL: time.Hour, Keepalive: 5 * time.Second},
				OutboxMaxBytes: "1GiB", OutboxOnFull: "drop_oldest",
				Buses:   []Bus{{Name: "lan-1", Mode: "tcp", Address: "127.0.0.1:5020", Timeout: time.Second}},
				Devices: []Device{{ID: "pump-001", Bus: "lan-1", Address: 1, Profile: "demo-pump"}}},
			check: func(t *testing.T, c *config.Config) {
				u := c.Upstream
				if u.ConnectionStringFile != "/x/gw.connstr" || u.Address != "127.0.0.1:8883" || u.CAFile != "/x/ca.crt" ||
					u.ChildrenKeyFile != "/x/children.key" || u.TokenTTL != time.Hour || u.Keepalive != 5*time.Second {
					t.Errorf("upstream = %+v", u)
				}
				if c.Outbox.MaxBytes != 1<<30 || c.Outbox.OnFull != "drop_oldest" {
					t.Errorf("outbox = %+v", c.Outbox)
				}
				if bus := c.Buses[0]; bus.Address != "127.0.0.1:5020" || bus.Timeout != time.Second {
					t.Errorf("bus = %+v", bus)
				}
			},
		},
		{
			name: "serial bus, device without address",
			cfg: GatewayConfig{ID: "gw-3", PluginsDir: "/plugins", ProfilesDir: profiles,
				Buses:   []Bus{{Name: "mcu-uart", Plugin: "serial", Port: "/dev/ttyY", Baud: 115200, Timeout: time.Second}},
				Devices: []Device{{ID: "mcu-1", Bus: "mcu-uart", Profile: "demo-mcu", Poll: 500 * time.Millisecond}}},
			check: func(t *testing.T, c *config.Config) {
				if bus := c.Buses[0]; bus.Plugin != "serial" || bus.Port != "/dev/ttyY" || bus.Baud != 115200 || bus.Timeout != time.Second {
					t.Errorf("bus = %+v", bus)
				}
				if d := c.Devices[0]; d.Address != nil || d.Bus != "mcu-uart" || d.Poll != 500*time.Millisecond {
					t.Errorf("device = %+v", d)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gateway.yaml")
			tc.cfg.DataDir = filepath.Join(t.TempDir(), "data")
			tc.cfg.Write(t, path)
			c, err := config.Load(path)
			if err != nil {
				t.Fatalf("load:\n%s\n%v", tc.cfg.YAML(), err)
			}
			if c.Gateway.ID != tc.cfg.ID || c.Gateway.DataDir != tc.cfg.DataDir {
				t.Errorf("gateway = %+v", c.Gateway)
			}
			tc.check(t, c)
		})
	}
}
