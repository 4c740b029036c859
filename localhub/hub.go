// Package localhub is Drover's self-hosted hub: an identity registry with
// device twins, direct methods and telemetry, reachable by devices over MQTT
// (the Azure IoT Hub device protocol) and by operators over HTTPS (the Azure
// IoT Hub service API), with all state in SQLite.
//
// Hub wires the parts: store (SQLite), broker (MQTT device endpoint), service
// (REST), and the device-side logic in this package (auth, twin requests,
// method calls, telemetry fan-out to event streams).
package localhub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub/broker"
	"github.com/drover-iot/drover/localhub/certs"
	"github.com/drover-iot/drover/localhub/images"
	"github.com/drover-iot/drover/localhub/jobs"
	"github.com/drover-iot/drover/localhub/metrics"
	"github.com/drover-iot/drover/localhub/service"
	"github.com/drover-iot/drover/localhub/store"
)

// Options configure a Hub.
type Options struct {
	DataDir   string // state: hub.db, tls/, iothubowner.txt, firmware/
	Hostname  string // default "localhost"
	MQTTAddr  string // default ":8883"
	HTTPSAddr string // default ":8443"
	Logger    *slog.Logger
	Now       func() time.Time
	// MaxTelemetry bounds the stored telemetry (rows, default 100000).
	MaxTelemetry int64
	// JobClock drives Jobs v2 start times, rollouts and deadlines
	// (default: real time read through Now).
	JobClock clock.Clock
	// UI, when set, builds the operator's console served under /ui/ from the
	// REST API's handler (droverhub sets console.ForHub). It is a hook rather
	// than an import so that binaries embedding a hub without a console (the
	// gateway's demo) do not carry the console (measured: 3 MB of code,
	// 4 MB of the gateway's RSS; docs/benchmarks.md).
	UI UIFactory
}

// UIFactory builds a web UI over the hub's REST API handler; st gives the
// shared access policies.
type UIFactory func(api http.Handler, hostname string, st *store.Store, log *slog.Logger, now func() time.Time) (http.Handler, error)

// Hub is a running localhub.
type Hub struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	st     *store.Store
	tlsCfg *tls.Config
	files  certs.Files

	broker  *broker.Broker
	svc     *service.Server
	devices *devices
	feed    *feed
	jobs    *jobs.Engine

	metrics *metrics.Hub
	ui      http.Handler // nil: no console

	httpsAddr string
	ready     chan struct{}
	readyOnce sync.Once
}

// New prepares the data directory (database, CA and server certificate,
// default policies, owner connection string) and builds the hub. It starts
// no listener; Run does.
func New(opts Options) (*Hub, error) {
	if opts.DataDir == "" {
		return nil, errors.New("localhub: data directory is required")
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.MQTTAddr == "" {
		opts.MQTTAddr = ":8883"
	}
	if opts.HTTPSAddr == "" {
		opts.HTTPSAddr = ":8443"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", opts.DataDir, err)
	}
	tlsCfg, files, err := certs.Ensure(filepath.Join(opts.DataDir, "tls"), opts.Hostname, opts.Now())
	if err != nil {
		return nil, fmt.Errorf("prepare TLS in %s: %w", opts.DataDir, err)
	}
	h := &Hub{opts: opts, log: opts.Logger, now: opts.Now, tlsCfg: tlsCfg, files: files, ready: make(chan struct{})}
	h.metrics = metrics.NewHub(metrics.Sources{
		Connected: func() int { return h.devices.ConnectedCount() },
		JobCounts: func(ctx context.Context) (map[string]int, error) { return h.st.JobCountsByStatus(ctx) },
		Logger:    opts.Logger.With("component", "metrics"),
	})
	st, err := store.Open(filepath.Join(opts.DataDir, "hub.db"), store.Options{Logger: opts.Logger, Now: opts.Now, MaxTelemetry: opts.MaxTelemetry, CommitObserved: h.metrics.ObserveCommit})
	if err != nil {
		return nil, err
	}
	h.st = st
	ctx := context.Background()
	if err := st.EnsurePolicies(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if err := h.writeOwnerConnectionString(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if err := st.ResetConnectionStates(ctx, opts.Now()); err != nil {
		st.Close()
		return nil, err
	}
	h.feed = newFeed()
	h.devices = newDevices(h)
	h.broker, err = broker.New(broker.Options{
		Addr: opts.MQTTAddr, TLS: tlsCfg, Hostname: opts.Hostname,
		Auth: h.devices, Handler: h.devices, Logger: opts.Logger.With("component", "mqtt"),
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("build MQTT endpoint: %w", err)
	}
	h.devices.broker = h.broker
	if opts.JobClock == nil {
		opts.JobClock = clock.Real{NowFunc: opts.Now}
	}
	h.jobs = jobs.New(jobs.Options{Store: st, Devices: h.devices, Clock: opts.JobClock, Logger: opts.Logger.With("component", "jobs")})
	imgs, err := images.New(filepath.Join(opts.DataDir, "firmware"), st, images.Options{Logger: opts.Logger.With("component", "firmware"), Now: opts.Now})
	if err != nil {
		st.Close()
		return nil, err
	}
	h.svc = service.New(service.Options{Hostname: opts.Hostname, Store: st, Sessions: h.devices, Feed: h.feed, Logger: opts.Logger.With("component", "rest"), Now: opts.Now, Jobs: h.jobs, Metrics: h.metrics, Images: imgs})
	if opts.UI != nil {
		if h.ui, err = opts.UI(h.svc.Handler(), opts.Hostname, st, opts.Logger.With("component", "console"), opts.Now); err != nil {
			st.Close()
			return nil, fmt.Errorf("build console: %w", err)
		}
	}
	return h, nil
}

// OwnerConnectionStringFile is where the iothubowner connection string is kept (mode 0600).
func (h *Hub) OwnerConnectionStringFile() string {
	return filepath.Join(h.opts.DataDir, "iothubowner.txt")
}

func (h *Hub) writeOwnerConnectionString(ctx context.Context) error {
	p, err := h.st.Policy(ctx, "iothubowner")
	if err != nil {
		return err
	}
	cs := sas.ConnectionString{HostName: h.opts.Hostname, KeyName: p.Name, Key: p.PrimaryKey}
	if err := os.WriteFile(h.OwnerConnectionStringFile(), []byte(cs.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write owner connection string: %w", err)
	}
	return os.Chmod(h.OwnerConnectionStringFile(), 0o600)
}

// OwnerConnectionString returns the iothubowner connection string.
func (h *Hub) OwnerConnectionString(ctx context.Context) (string, error) {
	p, err := h.st.Policy(ctx, "iothubowner")
	if err != nil {
		return "", err
	}
	return sas.ConnectionString{HostName: h.opts.Hostname, KeyName: p.Name, Key: p.PrimaryKey}.String(), nil
}

// CAFile is the PEM file devices and operators trust.
func (h *Hub) CAFile() string { return h.files.CACert }

// Hostname is the hub's name (SAS resource URIs, MQTT usernames).
func (h *Hub) Hostname() string { return h.opts.Hostname }

// Metrics is the hub's Prometheus instruments (served at /metrics).
func (h *Hub) Metrics() *metrics.Hub { return h.metrics }

// Store exposes the database to tests and tools in this module.
func (h *Hub) Store() *store.Store { return h.st }

// Ready is closed once both listeners accept connections.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// MQTTAddr is the MQTT listener's address (valid after Ready).
func (h *Hub) MQTTAddr() string { return h.broker.Addr() }

// HTTPSAddr is the HTTPS listener's address (valid after Ready).
func (h *Hub) HTTPSAddr() string { return h.httpsAddr }

// Run serves until ctx ends, then shuts down: listeners close, live sessions
// end, pending method calls fail, the database is closed.
func (h *Hub) Run(ctx context.Context) error {
	defer h.st.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ln, err := net.Listen("tcp", h.opts.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("listen HTTPS on %s: %w", h.opts.HTTPSAddr, err)
	}
	h.httpsAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-h.ready:
			w.Write([]byte("ok\n"))
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", h.metrics.Handler())
	if h.ui != nil {
		mux.Handle("/ui/", h.ui)
		mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusMovedPermanently) })
	}
	mux.Handle("/", h.svc.Handler())
	srv := &http.Server{Handler: mux, TLSConfig: h.tlsCfg.Clone(), // ServeTLS edits its config (HTTP/2); the MQTT listener reads the original
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug), BaseContext: func(net.Listener) context.Context { return ctx }}

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(4)
	go func() {
		defer wg.Done()
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("serve HTTPS: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := h.broker.Run(ctx); err != nil {
			errs <- fmt.Errorf("serve MQTT: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		h.devices.run(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := h.jobs.Run(ctx); err != nil {
			errs <- fmt.Errorf("run jobs: %w", err)
		}
	}()
	select {
	case <-h.broker.Ready():
		h.readyOnce.Do(func() { close(h.ready) })
		h.log.Info("hub ready", "hostname", h.opts.Hostname, "mqtt", h.broker.Addr(), "https", h.httpsAddr, "ca", h.files.CACert)
	case <-ctx.Done():
	}
	<-ctx.Done()
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shutCancel()
	_ = srv.Shutdown(shutCtx)
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	h.log.Info("hub stopped")
	return errors.Join(all...)
}
