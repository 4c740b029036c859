// Package service is localhub's HTTPS service endpoint: the Azure IoT Hub
// service REST API (identity registry, twins, direct methods, queries) plus
// localhub's own telemetry stream (server-sent events), with shared access
// signature authorization on every call.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub/images"
	"github.com/drover-iot/drover/localhub/store"
)

// Sessions is what the REST side needs from the device side of the hub.
type Sessions interface {
	// InvokeMethod calls a direct method on a connected device.
	InvokeMethod(ctx context.Context, deviceID, method string, payload json.RawMessage, responseTimeout, connectTimeout time.Duration) (status int, body json.RawMessage, err error)
	// DesiredChanged tells a connected device about a desired-properties change.
	DesiredChanged(deviceID string, patch map[string]any, version int64)
	// IdentityChanged drops a live session whose credentials or status no longer allow it.
	IdentityChanged(before, after store.Device)
	// IdentityDeleted drops a deleted device's live session.
	IdentityDeleted(deviceID string)
	// ConnectedCount is the number of live device sessions.
	ConnectedCount() int
	// Connected reports whether a device has a live session.
	Connected(deviceID string) bool
}

// TelemetryFeed wakes up event-stream readers when new telemetry is stored.
type TelemetryFeed interface {
	// Last is the newest stored sequence number.
	Last() int64
	// Wait returns a channel closed when a message with seq > after is stored.
	Wait(after int64) <-chan struct{}
}

// Errors that Sessions.InvokeMethod returns; the server maps them to Azure's answers.
var (
	ErrDeviceNotOnline = errors.New("device is not online")
	ErrMethodTimeout   = errors.New("timed out waiting for the device to answer")
	ErrBadResponse     = errors.New("device answered with an invalid response")
)

// Options configure a Server.
type Options struct {
	Hostname string
	Store    *store.Store
	Sessions Sessions
	Feed     TelemetryFeed
	Logger   *slog.Logger
	Now      func() time.Time
	// Jobs runs Jobs v2 (/jobs/v2); nil answers those routes with 501.
	Jobs Jobs
	// Metrics records query latency and tag writes (nil: none).
	Metrics Observer
	// Images stores firmware images (/firmware/...); nil leaves those routes out.
	Images *images.Store
}

// Observer is told about what the metrics count on the REST side.
type Observer interface {
	// Query records one query page's server time.
	Query(d time.Duration)
	// TwinUpdate counts an accepted twin write to a section ("tags").
	TwinUpdate(section string)
}

type noObserver struct{}

func (noObserver) Query(time.Duration) {}
func (noObserver) TwinUpdate(string)   {}

// Server serves the REST API.
type Server struct {
	host     string
	st       *store.Store
	sessions Sessions
	feed     TelemetryFeed
	log      *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	metrics  Observer

	// Policies never change while the hub runs, so they are read once.
	polMu    sync.Mutex
	policies map[string]store.Policy
}

// maxBody bounds request bodies; twins and methods are far smaller.
const maxBody = 1 << 20

// New builds the server and its routes.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = noObserver{}
	}
	s := &Server{host: o.Hostname, st: o.Store, sessions: o.Sessions, feed: o.Feed, log: o.Logger, now: o.Now, mux: http.NewServeMux(), metrics: o.Metrics}
	read, write, svc := store.RegistryRead, store.RegistryWrite, store.ServiceConnect
	s.route("PUT /devices/{id}", write, s.putDevice)
	s.route("GET /devices/{id}", read, s.getDevice)
	s.route("DELETE /devices/{id}", write, s.deleteDevice)
	s.route("GET /devices", read, s.listDevices)
	s.route("POST /devices", write, s.bulkDevices)
	s.route("POST /devices/query", svc, s.query)
	s.route("GET /statistics/devices", read, s.deviceStats)
	s.route("GET /statistics/service", svc, s.serviceStats)
	s.route("GET /twins/{id}", svc, s.getTwin)
	s.route("PATCH /twins/{id}", svc, s.patchTwin)
	s.route("PUT /twins/{id}", svc, s.putTwin)
	s.route("POST /twins/{id}/methods", svc, s.invoke)
	s.route("GET /events", svc, s.events)
	s.route("PUT /enrollmentGroups/{id}", write, s.putEnrollment)
	s.route("GET /enrollmentGroups/{id}", read, s.getEnrollment)
	s.route("GET /enrollmentGroups", read, s.listEnrollments)
	s.route("DELETE /enrollmentGroups/{id}", write, s.deleteEnrollment)
	jobs := &jobsAPI{jobs: o.Jobs}
	s.route("PUT /jobs/v2/{id}", svc, jobs.put)
	s.route("GET /jobs/v2/{id}", svc, jobs.get)
	s.route("POST /jobs/v2/{id}/cancel", svc, jobs.cancel)
	s.route("GET /jobs/v2/query", svc, jobs.list)
	s.importExportRoutes() // POST /jobs/create, GET /jobs[/{id}], DELETE /jobs/{id}, GET /jobs/importExport/{id}/{output,errors}
	if o.Images != nil {
		s.firmwareRoutes(o.Images) // /firmware/images[/{provider}/{name}/{version}], /firmware/content/{sha256}
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errf(http.StatusNotFound, "NotFound", "no route for %s %s", r.Method, r.URL.Path))
	})
	return s
}

// Handler returns the HTTP handler (healthz is added by the hub).
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) route(pattern string, right store.Right, h func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, right); err != nil {
			s.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authorize checks the SharedAccessSignature header against the policy it names.
func (s *Server) authorize(r *http.Request, need store.Right) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "missing Authorization header")
	}
	tok, err := sas.Parse(h)
	if err != nil {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "%v", err)
	}
	if tok.KeyName == "" {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "service calls need a shared access policy token (skn missing)")
	}
	if !tok.Covers(s.host) {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "token resource %q does not cover hub %q", tok.Resource, s.host)
	}
	p, err := s.policy(r, tok.KeyName)
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "unknown shared access policy %q", tok.KeyName)
	}
	if err != nil {
		return err
	}
	now := s.now()
	if err := tok.Verify(p.PrimaryKey, now); err != nil {
		if errors.Is(err, sas.ErrExpired) {
			return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "%v", err)
		}
		if err2 := tok.Verify(p.SecondaryKey, now); err2 != nil {
			return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "signature does not match policy %q", tok.KeyName)
		}
	}
	if !p.Has(need) {
		return errf(http.StatusForbidden, "IotHubUnauthorizedAccess", "policy %q lacks the %s permission", tok.KeyName, need)
	}
	return nil
}

func (s *Server) policy(r *http.Request, name string) (store.Policy, error) {
	s.polMu.Lock()
	p, ok := s.policies[name]
	s.polMu.Unlock()
	if ok {
		return p, nil
	}
	p, err := s.st.Policy(r.Context(), name)
	if err != nil {
		return p, err
	}
	s.polMu.Lock()
	if s.policies == nil {
		s.policies = map[string]store.Policy{}
	}
	s.policies[name] = p
	s.polMu.Unlock()
	return p, nil
}

// decodeJSON reads a JSON body into v with a clear error.
func decodeJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "request body exceeds %d bytes", mbe.Limit)
		}
		return errf(http.StatusBadRequest, "ArgumentInvalid", "read request body: %v", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "request body is empty")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errf(http.StatusBadRequest, "IotHubFormatError", "request body is not valid JSON: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}

func (s *Server) deviceStats(w http.ResponseWriter, r *http.Request) error {
	total, enabled, err := s.st.CountDevices(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]int{"totalDeviceCount": total, "enabledDeviceCount": enabled, "disabledDeviceCount": total - enabled})
}

func (s *Server) serviceStats(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]int{"connectedDeviceCount": s.sessions.ConnectedCount()})
}
