package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/metricstest"
)

// TestMetricsBothProcesses scrapes /metrics of a real droverhub and a real
// gateway (drover run, the Modbus plugin, devsim) with Prometheus's text
// parser and checks the values against the known load: three pumps that
// answer and one dead unit, two buses, one plugin, the uplink up, and the
// hub's connected-device gauge against its own query.
func TestMetricsBothProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	s := start(t)
	ctx := context.Background()
	gwURL := "http://" + s.api + "/metrics"
	plain := &http.Client{Timeout: 30 * time.Second}

	var g metricstest.Families
	// dead-9 reads offline before its first poll, so wait for its bus to
	// count a timeout too.
	s.eventually(t, 60*time.Second, "gateway metrics show three pumps online, dead-9 offline and timing out", func() (bool, string) {
		g = metricstest.Scrape(t, plain, gwURL)
		online := 0.0
		for _, id := range []string{"pump-1", "pump-2", "pump-3"} {
			v, _ := g.Value("drover_device_online", "device", id)
			online += v
		}
		dead, ok := g.Value("drover_device_online", "device", "dead-9")
		up, _ := g.Value("drover_uplink_connected")
		timeouts, _ := g.Value("drover_bus_timeouts_total", "bus", "rs485-1")
		return online == 3 && ok && dead == 0 && up == 1 && timeouts >= 1, ""
	})
	if n := g.Series("drover_device_online"); n != 4 {
		t.Errorf("drover_device_online has %d series, want one per configured device (4)", n)
	}
	g.Want(t, 1, "drover_device_online", "device", "pump-2", "bus", "rs485-1")
	g.Want(t, 1, "drover_uplink_configured")
	g.Want(t, 1, "drover_plugin_up", "plugin", "modbus")
	g.Want(t, 0, "drover_plugin_restarts_total", "plugin", "modbus")
	for _, bus := range []string{"plant-lan", "rs485-1"} {
		if v, _ := g.Value("drover_bus_transactions_total", "bus", bus); v < 1 {
			t.Errorf("bus %s: %v transactions", bus, v)
		}
		g.Want(t, 0.5, "drover_bus_poll_interval_seconds", "bus", bus)
		if v, ok := g.Value("drover_bus_poll_cycle_seconds", "bus", bus); !ok || v <= 0 {
			t.Errorf("bus %s: poll cycle %v", bus, v)
		}
		for _, st := range []string{"closed", "open", "half-open"} {
			if _, ok := g.Value("drover_bus_breakers", "bus", bus, "state", st); !ok {
				t.Errorf("bus %s: no breaker series for %s", bus, st)
			}
		}
	}
	// dead-9 never answers: its bus counts timeouts, the TCP bus none.
	if v, _ := g.Value("drover_bus_timeouts_total", "bus", "rs485-1"); v < 1 {
		t.Errorf("rs485-1 timeouts %v, want ≥ 1 (dead-9)", v)
	}
	g.Want(t, 0, "drover_bus_timeouts_total", "bus", "plant-lan")
	for _, name := range []string{"drover_outbox_depth", "drover_outbox_bytes", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes"} {
		if _, ok := g.Value(name); !ok {
			t.Errorf("gateway metrics lack %s", name)
		}
	}
	if _, ok := g.Value("drover_jobs", "state", "succeeded"); !ok {
		t.Error("gateway metrics lack drover_jobs{state=succeeded}")
	}

	// The hub: every identity the gateway connects (itself and its four
	// children) is one connected device, as the hub's own query says.
	hubClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: s.hub.TLSConfig(t)}}
	s.eventually(t, 30*time.Second, "hub gauge matches its query", func() (bool, string) {
		items, err := s.svc.QueryAll(ctx, "SELECT deviceId FROM devices WHERE connectionState = 'Connected'", 100)
		if err != nil {
			return false, err.Error()
		}
		h := metricstest.Scrape(t, hubClient, "https://"+s.hub.HTTPSAddr+"/metrics")
		v, _ := h.Value("localhub_connected_devices")
		return len(items) == 5 && v == 5, ""
	})
	h := metricstest.Scrape(t, hubClient, "https://"+s.hub.HTTPSAddr+"/metrics")
	if v, _ := h.Value("localhub_messages_in_total", "kind", "reported_patch"); v < 4 {
		t.Errorf("hub reported patches %v, want ≥ 4", v)
	}
}
