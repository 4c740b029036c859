// Package metrics exposes the gateway's state to Prometheus: buses, devices,
// the outbox, the job queue, the uplink and the plugins, plus the Go runtime
// and process collectors (memory).
//
// Nothing is kept between scrapes: each scrape takes one Snapshot from the
// daemon and turns it into constant metrics, so the metrics cost no memory
// while nobody scrapes and their size follows the configuration, not
// history. Per-device series are plain gauges (one "online" value each);
// there are no per-device histograms.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is the gateway's state at one scrape.
type Snapshot struct {
	Buses   []Bus
	Devices []Device
	// Outbox is nil when the gateway keeps no outbox (no uplink).
	Outbox *Outbox
	// Jobs counts the device job queue's jobs by state.
	Jobs             map[string]int
	UplinkConfigured bool
	UplinkConnected  bool
	Plugins          []Plugin
}

// Bus is one bus's scheduler counters and its devices' poll timing.
type Bus struct {
	Name                                      string
	Transactions, Timeouts, Errors, FastFails uint64
	Queue                                     int
	// Breakers counts the bus's device circuit breakers by state (closed, open, half-open).
	Breakers map[string]int
	// PollCycle is the longest last poll cycle among the bus's devices.
	PollCycle time.Duration
	// PollInterval is the shortest configured poll interval among them.
	PollInterval time.Duration
}

// Device is one field device.
type Device struct {
	ID, Bus string
	Online  bool
}

// Outbox is what waits for the uplink.
type Outbox struct {
	Depth, Bytes, MaxBytes int64
	// Dropped counts rows dropped, by reason (full, ttl, corrupt, rejected).
	Dropped map[string]int64
}

// Plugin is one plugin process.
type Plugin struct {
	Name     string
	Up       bool
	Restarts int
}

// Source takes snapshots; the daemon implements it.
type Source interface {
	MetricsSnapshot(ctx context.Context) (Snapshot, error)
}

// scrapeTimeout bounds one snapshot.
const scrapeTimeout = 5 * time.Second

var (
	busTx        = desc("drover_bus_transactions_total", "Transactions run on the bus.", "bus")
	busTimeouts  = desc("drover_bus_timeouts_total", "Transactions on the bus the device did not answer.", "bus")
	busErrors    = desc("drover_bus_errors_total", "Transactions on the bus that failed otherwise.", "bus")
	busFastFails = desc("drover_bus_fast_fails_total", "Polls and writes refused at once because the device's breaker was open.", "bus")
	busQueue     = desc("drover_bus_queue_depth", "Transactions waiting for the bus.", "bus")
	busBreakers  = desc("drover_bus_breakers", "Device circuit breakers on the bus, by state.", "bus", "state")
	busCycle     = desc("drover_bus_poll_cycle_seconds", "Longest last poll cycle among the bus's devices (queueing included).", "bus")
	busInterval  = desc("drover_bus_poll_interval_seconds", "Shortest configured poll interval among the bus's devices.", "bus")
	devOnline    = desc("drover_device_online", "1 when the field device answered its last poll.", "device", "bus")
	boxDepth     = desc("drover_outbox_depth", "Messages and reported patches waiting for the uplink.")
	boxBytes     = desc("drover_outbox_bytes", "Bytes waiting for the uplink.")
	boxMax       = desc("drover_outbox_max_bytes", "The outbox's configured bound.")
	boxDropped   = desc("drover_outbox_dropped_total", "Outbox rows dropped, by reason.", "reason")
	jobsByState  = desc("drover_jobs", "Device jobs in the gateway's queue, by state.", "state")
	upConfigured = desc("drover_uplink_configured", "1 when the gateway has an uplink configured.")
	upConnected  = desc("drover_uplink_connected", "1 while the gateway's own uplink connection is up.")
	plugUp       = desc("drover_plugin_up", "1 while the plugin process serves calls.", "plugin")
	plugRestarts = desc("drover_plugin_restarts_total", "Times the plugin process was restarted.", "plugin")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// JobStates are the job states always exported (0 when none).
var JobStates = []string{"queued", "waiting", "running", "succeeded", "failed", "cancelled"}

// BreakerStates are the breaker states always exported per bus.
var BreakerStates = []string{"closed", "open", "half-open"}

// collector turns one snapshot into metrics.
type collector struct {
	src Source
	log *slog.Logger
}

// NewCollector is the gateway's collector over src: one snapshot per scrape.
func NewCollector(src Source, log *slog.Logger) prometheus.Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &collector{src: src, log: log}
}

// NewHandler serves the gateway's metrics (and the Go runtime's and the
// process's) in the Prometheus text format.
func NewHandler(src Source, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src, log), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{busTx, busTimeouts, busErrors, busFastFails, busQueue, busBreakers, busCycle, busInterval, devOnline,
		boxDepth, boxBytes, boxMax, boxDropped, jobsByState, upConfigured, upConnected, plugUp, plugRestarts} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	s, err := c.src.MetricsSnapshot(ctx)
	if err != nil {
		c.log.Warn("metrics snapshot", "error", err)
		ch <- prometheus.NewInvalidMetric(upConfigured, err)
		return
	}
	emit(ch, s)
}

func emit(ch chan<- prometheus.Metric, s Snapshot) {
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for _, b := range s.Buses {
		counter(busTx, float64(b.Transactions), b.Name)
		counter(busTimeouts, float64(b.Timeouts), b.Name)
		counter(busErrors, float64(b.Errors), b.Name)
		counter(busFastFails, float64(b.FastFails), b.Name)
		gauge(busQueue, float64(b.Queue), b.Name)
		for _, st := range BreakerStates {
			gauge(busBreakers, float64(b.Breakers[st]), b.Name, st)
		}
		gauge(busCycle, b.PollCycle.Seconds(), b.Name)
		gauge(busInterval, b.PollInterval.Seconds(), b.Name)
	}
	for _, d := range s.Devices {
		gauge(devOnline, b2f(d.Online), d.ID, d.Bus)
	}
	if o := s.Outbox; o != nil {
		gauge(boxDepth, float64(o.Depth))
		gauge(boxBytes, float64(o.Bytes))
		gauge(boxMax, float64(o.MaxBytes))
		for _, r := range []string{"full", "ttl", "corrupt", "rejected"} {
			counter(boxDropped, float64(o.Dropped[r]), r)
		}
	}
	seen := map[string]bool{}
	for _, st := range JobStates {
		seen[st] = true
		gauge(jobsByState, float64(s.Jobs[st]), st)
	}
	for st, n := range s.Jobs {
		if !seen[st] {
			gauge(jobsByState, float64(n), st)
		}
	}
	gauge(upConfigured, b2f(s.UplinkConfigured))
	gauge(upConnected, b2f(s.UplinkConnected))
	for _, p := range s.Plugins {
		gauge(plugUp, b2f(p.Up), p.Name)
		counter(plugRestarts, float64(p.Restarts), p.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
