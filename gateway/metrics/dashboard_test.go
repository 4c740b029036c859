package metrics_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/gateway/metrics"
	hubmetrics "github.com/drover-iot/drover/localhub/metrics"
)

// fixed is a Source with one of everything.
type fixed struct{}

func (fixed) MetricsSnapshot(context.Context) (metrics.Snapshot, error) {
	return metrics.Snapshot{
		Buses:   []metrics.Bus{{Name: "b"}},
		Devices: []metrics.Device{{ID: "d", Bus: "b"}},
		Outbox:  &metrics.Outbox{},
		Plugins: []metrics.Plugin{{Name: "modbus"}},
	}, nil
}

// exported lists every metric name the hub and the gateway export, with a
// histogram's _bucket, _sum and _count series.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	gw := prometheus.NewRegistry()
	gw.MustRegister(metrics.NewCollector(fixed{}, nil))
	hub := hubmetrics.NewHub(hubmetrics.Sources{Connected: func() int { return 0 }, JobCounts: func(context.Context) (map[string]int, error) { return nil, nil }})
	hub.Method("ok", 0)
	hub.Query(0)
	hub.ObserveCommit(0)
	for _, g := range []prometheus.Gatherer{gw, hub.Registry(), prometheus.DefaultGatherer} {
		fams, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			names[f.GetName()] = true
			if f.GetType().String() == "HISTOGRAM" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f.GetName()+s] = true
				}
			}
		}
	}
	return names
}

// TestDashboardNamesExist checks that every metric the Grafana dashboard
// queries is exported by the hub or the gateway.
func TestDashboardNamesExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "grafana", "drover.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	names := exported(t)
	ident := regexp.MustCompile(`\b(localhub_|drover_|process_|go_)[a-z_]+\b`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range ident.FindAllString(tg.Expr, -1) {
				queried++
				if !names[n] {
					t.Errorf("panel %q queries %s, which neither process exports", p.Title, n)
				}
			}
		}
	}
	if queried < 20 {
		t.Errorf("the dashboard queries only %d metrics", queried)
	}
	for _, must := range []string{"localhub_connected_devices", "drover_device_online", "drover_outbox_depth"} {
		if !strings.Contains(string(b), must) {
			t.Errorf("dashboard does not show %s", must)
		}
	}
}
