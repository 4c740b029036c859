// Package metrics holds localhub's Prometheus instruments and serves them at
// /metrics in the text exposition format.
//
// Every series is hub-wide: no label carries a device id, so the cost of a
// scrape does not grow with the fleet (per-device state is what queries are
// for). Gauges that mirror state — connected devices, jobs by status — are
// read when scraped rather than kept up to date.
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

// Message kinds counted by MessagesIn.
const (
	KindTelemetry     = "telemetry"
	KindTwinGet       = "twin_get"
	KindReportedPatch = "reported_patch"
	KindMethodResult  = "method_response"
)

// JobStatuses are the Jobs v2 statuses the job gauge always exports (0 when none).
var JobStatuses = []string{"scheduled", "queued", "running", "completed", "failed", "cancelled"}

// Hub is localhub's set of instruments. A nil *Hub is valid and records nothing.
type Hub struct {
	reg *prometheus.Registry

	// Connects counts accepted device connections.
	Connects prometheus.Counter
	// AuthFailures counts refused device connections (bad token, unknown or disabled device).
	AuthFailures prometheus.Counter
	// MessagesIn counts device-to-hub MQTT messages by kind.
	MessagesIn *prometheus.CounterVec
	// MethodCalls counts direct method calls by result (ok, error_status, not_online, timeout, error).
	MethodCalls *prometheus.CounterVec
	// MethodLatency is the time from a call to its answer.
	MethodLatency prometheus.Histogram
	// TwinUpdates counts accepted twin writes by section (desired, tags, reported).
	TwinUpdates *prometheus.CounterVec
	// QueryLatency is the server time of a device query page.
	QueryLatency prometheus.Histogram
	// CommitLatency is the time SQLite takes to commit a write transaction.
	CommitLatency prometheus.Histogram
}

// Sources are the hub state read at scrape time.
type Sources struct {
	// Connected is the number of live device sessions.
	Connected func() int
	// JobCounts counts Jobs v2 jobs by status.
	JobCounts func(ctx context.Context) (map[string]int, error)
	Logger    *slog.Logger
}

// NewHub builds the instruments on a fresh registry, with the Go runtime and
// process collectors.
func NewHub(src Sources) *Hub {
	if src.Logger == nil {
		src.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	h := &Hub{
		reg:          reg,
		Connects:     prometheus.NewCounter(prometheus.CounterOpts{Name: "localhub_device_connects_total", Help: "Device MQTT connections accepted."}),
		AuthFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "localhub_device_auth_failures_total", Help: "Device MQTT connections refused by authentication."}),
		MessagesIn:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "localhub_messages_in_total", Help: "Device-to-hub messages received, by kind."}, []string{"kind"}),
		MethodCalls:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "localhub_method_calls_total", Help: "Direct method calls, by result."}, []string{"result"}),
		MethodLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "localhub_method_duration_seconds", Help: "Direct method call time, from the call to the device's answer.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		TwinUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "localhub_twin_updates_total", Help: "Accepted twin writes, by section."}, []string{"section"}),
		QueryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "localhub_query_duration_seconds", Help: "Server time of one page of a device query.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		CommitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "localhub_sqlite_commit_duration_seconds", Help: "Time SQLite takes to commit one write transaction (a group of operations).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
	}
	for _, k := range []string{KindTelemetry, KindTwinGet, KindReportedPatch, KindMethodResult} {
		h.MessagesIn.WithLabelValues(k)
	}
	for _, s := range []string{"desired", "tags", "reported"} {
		h.TwinUpdates.WithLabelValues(s)
	}
	reg.MustRegister(h.Connects, h.AuthFailures, h.MessagesIn, h.MethodCalls, h.MethodLatency, h.TwinUpdates, h.QueryLatency, h.CommitLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src.Connected != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "localhub_connected_devices", Help: "Devices with a live MQTT session."},
			func() float64 { return float64(src.Connected()) }))
	}
	if src.JobCounts != nil {
		reg.MustRegister(&jobCollector{counts: src.JobCounts, log: src.Logger})
	}
	return h
}

// Handler serves the registry in the Prometheus text format.
func (h *Hub) Handler() http.Handler {
	return promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{Registry: h.reg})
}

// Registry is the hub's registry (for tests and extra collectors).
func (h *Hub) Registry() *prometheus.Registry { return h.reg }

// ObserveCommit records one SQLite commit.
func (h *Hub) ObserveCommit(d time.Duration) {
	if h != nil {
		h.CommitLatency.Observe(d.Seconds())
	}
}

// Message counts one device message of kind.
func (h *Hub) Message(kind string) {
	if h != nil {
		h.MessagesIn.WithLabelValues(kind).Inc()
	}
}

// Connect counts an accepted connection.
func (h *Hub) Connect() {
	if h != nil {
		h.Connects.Inc()
	}
}

// AuthFailure counts a refused connection.
func (h *Hub) AuthFailure() {
	if h != nil {
		h.AuthFailures.Inc()
	}
}

// Method records a direct method call's result and time.
func (h *Hub) Method(result string, d time.Duration) {
	if h != nil {
		h.MethodCalls.WithLabelValues(result).Inc()
		h.MethodLatency.Observe(d.Seconds())
	}
}

// TwinUpdate counts an accepted twin write to section.
func (h *Hub) TwinUpdate(section string) {
	if h != nil {
		h.TwinUpdates.WithLabelValues(section).Inc()
	}
}

// Query records one query page's server time.
func (h *Hub) Query(d time.Duration) {
	if h != nil {
		h.QueryLatency.Observe(d.Seconds())
	}
}

var jobsDesc = prometheus.NewDesc("localhub_jobs", "Jobs v2 jobs, by status.", []string{"status"}, nil)

// jobCollector reads the job counts from the database at scrape time.
type jobCollector struct {
	counts func(ctx context.Context) (map[string]int, error)
	log    *slog.Logger
}

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.counts(ctx)
	if err != nil {
		c.log.Warn("metrics: count jobs", "error", err)
		ch <- prometheus.NewInvalidMetric(jobsDesc, err)
		return
	}
	seen := map[string]bool{}
	for _, st := range JobStatuses {
		seen[st] = true
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(counts[st]), st)
	}
	for st, n := range counts {
		if !seen[st] {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n), st)
		}
	}
}
