package daemon

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/outbox"
	"github.com/drover-iot/drover/gateway/twincache"
	"github.com/drover-iot/drover/internal/modbussim"
)

// modbusPluginDir returns a plugins.dir holding drover-plugin-modbus:
// $DROVER_BIN when it has one (make test), else one built for the test.
func modbusPluginDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("DROVER_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "drover-plugin-modbus")); err == nil {
			return d
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", filepath.Join(dir, "drover-plugin-modbus"),
		"github.com/drover-iot/drover/cmd/drover-plugin-modbus")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the modbus plugin: %v\n%s", err, out)
	}
	return dir
}

// refusedAddr returns a loopback address nothing listens on: the uplink
// of a gateway that stays offline, so its outbox keeps what it queued.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// startSim serves configs/devsim/demo-pump.yaml as unit 1 on Modbus TCP
// until the test ends.
func startSim(t *testing.T) string {
	t.Helper()
	return modbussim.ServeTCP(t, filepath.Join("..", "..", "configs", "devsim", "demo-pump.yaml"), modbussim.Options{})
}

// TestGracefulStopReportsNoPluginDown runs the real daemon (modbus plugin
// process, simulator, an uplink that never connects) until a device is
// online, stops it gracefully, and checks that stopping the plugins left
// no "plugin-down" behind: not in the bridges' reports, not in the twin
// cache, not in the outbox that the next start would deliver.
func TestGracefulStopReportsNoPluginDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the modbus plugin process")
	}
	dir := t.TempDir()
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	if err := os.WriteFile(filepath.Join(dir, "gw.connstr"), []byte("HostName=127.0.0.1;DeviceId=gw-stop;SharedAccessKey="+key), 0o600); err != nil {
		t.Fatal(err)
	}
	profiles, err := filepath.Abs(filepath.Join("..", "..", "configs", "devsim"))
	if err != nil {
		t.Fatal(err)
	}
	gw := fmt.Sprintf(`gateway: { id: gw-stop, data_dir: data, local_api: 127.0.0.1:0 }
upstream: { connection_string_file: gw.connstr, address: %s }
plugins: { dir: %s }
profiles_dir: %s
buses:
  - { name: lan, plugin: modbus, mode: tcp, address: %s, timeout: 500ms }
devices:
  - { id: pump-1, bus: lan, address: 1, profile: demo-pump, poll: 200ms }
`, refusedAddr(t), modbusPluginDir(t), profiles, startSim(t))
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(gw), 0o644); err != nil {
		t.Fatal(err)
	}

	d, err := New(Options{ConfigPath: path, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	reports := &recorder[report]{}
	d.reportHook = func(id string, patch map[string]any) { reports.Add(report{id, patch}) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	reports.Await(t, waitLimit, "pump-1 online", func(rs []report) bool {
		return section(rs, "pump-1", "connection")["state"] == bridges.StateOnline
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after a graceful stop")
	}

	for _, r := range reports.All() {
		if c, ok := r.Patch["connection"].(map[string]any); ok && c["state"] == bridges.StatePluginDown {
			t.Fatalf("a graceful stop reported %s %v", r.Device, c)
		}
	}
	db := filepath.Join(dir, "data", "gateway.db")
	// A graceful stop spills what is unacknowledged to the spill log;
	// opening with its directory reads it back (into SQLite, this mode).
	box, err := outbox.Open(db, outbox.Options{SpillDir: filepath.Join(dir, "data", "outbox-spill")})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	queued, err := box.Next(context.Background(), "pump-1", 1000)
	if err != nil {
		t.Fatal(err)
	}
	sawState := false
	for _, e := range queued {
		var patch map[string]any
		if json.Unmarshal(e.Body, &patch) != nil {
			continue
		}
		if c, ok := patch["connection"].(map[string]any); ok {
			sawState = true
			if c["state"] != bridges.StateOnline {
				t.Fatalf("the outbox holds connection %v for the next start", c)
			}
		}
	}
	if !sawState {
		t.Fatalf("no connection state queued in the outbox (%d entries): the test saw nothing", len(queued))
	}
	cache, err := twincache.Open(db, twincache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	tw, err := cache.Get(context.Background(), "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := tw.Reported["connection"].(map[string]any); c["state"] != bridges.StateOnline {
		t.Fatalf("twin cache reported.connection = %v, want online", c)
	}
}
