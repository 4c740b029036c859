package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Body size limits. Reads and writes name a few points; a method payload
// may be as big as an IoT Hub direct method payload (128 KB).
const (
	maxBody       = 64 << 10
	maxMethodBody = 128 << 10
	maxPoints     = 1024
	maxScanAddr   = 65535
)

// routes builds the mux. Each path also has a method-less fallback so a
// wrong method gets a JSON 405 instead of the mux's plain-text one.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	type route struct {
		method, path string
		h            http.HandlerFunc
		mutating     bool
	}
	rs := []route{
		{"GET", "/v1/status", s.status, false},
		{"GET", "/v1/devices", s.devices, false},
		{"GET", "/v1/devices/{id}/twin", s.twin, false},
		{"POST", "/v1/devices/{id}/read", s.read, false},
		{"POST", "/v1/devices/{id}/write", s.write, true},
		{"POST", "/v1/devices/{id}/methods/{method}", s.invoke, true},
		{"POST", "/v1/buses/{bus}/scan", s.scan, true},
		{"GET", "/v1/jobs", s.jobs, false},
		{"GET", "/v1/jobs/{id}", s.job, false},
	}
	if s.opts.Metrics != nil {
		rs = append(rs, route{"GET", "/metrics", s.opts.Metrics.ServeHTTP, false})
	}
	for _, r := range rs {
		mux.Handle(r.method+" "+r.path, s.logged(s.auth(r.h, r.mutating), r.mutating))
		allow := r.method
		if allow == "GET" {
			allow = "GET, HEAD"
		}
		mux.HandleFunc(r.path, func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Allow", allow)
			writeErr(w, http.StatusMethodNotAllowed, CodeMethod, fmt.Sprintf("%s %s: use %s", req.Method, req.URL.Path, r.method))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		writeErr(w, http.StatusNotFound, CodeNoRoute, fmt.Sprintf("no route %s %s", req.Method, req.URL.Path))
	})
	return mux
}

// auth checks the bearer token on mutating routes, and on every route when
// the server listens off loopback.
func (s *Server) auth(h http.HandlerFunc, mutating bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		protect := s.protectReads
		s.mu.Unlock()
		if !mutating && !protect {
			h(w, r)
			return
		}
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="drover"`)
			writeErr(w, http.StatusUnauthorized, CodeUnauthorized,
				"this request needs the API token: send Authorization: Bearer <token> (the gateway keeps it in <data_dir>/api.token)")
			return
		}
		if !tokenEqual(tok, s.opts.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="drover", error="invalid_token"`)
			writeErr(w, http.StatusUnauthorized, CodeUnauthorized, "wrong API token")
			return
		}
		h(w, r)
	}
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// logged logs each request after it is served: mutating ones (the
// technician acting on the plant) at info, reads at debug.
func (s *Server) logged(h http.HandlerFunc, mutating bool) http.Handler {
	level := slog.LevelDebug
	if mutating {
		level = slog.LevelInfo
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		h(rec, r)
		s.log.Log(r.Context(), level, "local api request",
			"method", r.Method, "path", r.URL.Path, "status", rec.statusCode(), "took", time.Since(start))
	})
}

// recorder remembers the response status for the log line. Unwrap lets
// http.ResponseController reach the real writer to flush streams.
type recorder struct {
	http.ResponseWriter
	status int
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *recorder) statusCode() int {
	if rec.status == 0 {
		return http.StatusOK
	}
	return rec.status
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.opts.Backend.Status(r.Context())
	if err != nil {
		s.fail(w, "status", err)
		return
	}
	st.Time = s.opts.Now()
	if st.Plugins == nil {
		st.Plugins = []PluginStatus{}
	}
	if st.Buses == nil {
		st.Buses = []BusStatus{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	list, err := s.opts.Backend.Devices(r.Context())
	if err != nil {
		s.fail(w, "list devices", err)
		return
	}
	if list == nil {
		list = []DeviceInfo{}
	}
	writeJSON(w, http.StatusOK, DeviceList{Time: s.opts.Now(), Devices: list})
}

func (s *Server) twin(w http.ResponseWriter, r *http.Request) {
	id, ok := pathName(w, r, "id", "device id")
	if !ok {
		return
	}
	tw, err := s.opts.Backend.Twin(r.Context(), id)
	if err != nil {
		s.fail(w, "twin of "+id, err)
		return
	}
	if tw == nil {
		tw = map[string]any{}
	}
	writeJSON(w, http.StatusOK, tw)
}

func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	id, ok := pathName(w, r, "id", "device id")
	if !ok {
		return
	}
	body, ok := readBody(w, r, maxBody)
	if !ok {
		return
	}
	var req ReadRequest
	if len(body) > 0 {
		if err := decodeStrict(body, &req); err != nil {
			writeErr(w, http.StatusBadRequest, CodeBadRequest, `read body: want {"points": ["name", ...]}: `+err.Error())
			return
		}
	}
	if len(req.Points) > maxPoints {
		writeErr(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("read body: %d points; at most %d", len(req.Points), maxPoints))
		return
	}
	for i, p := range req.Points {
		if !validName(p) {
			writeErr(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("read body: points[%d]: bad point name %q", i, p))
			return
		}
	}
	vals, err := s.opts.Backend.Read(r.Context(), id, req.Points)
	if err != nil {
		s.fail(w, "read "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, ReadResponse{Device: id, Values: readingsJSON(vals)})
}

func (s *Server) write(w http.ResponseWriter, r *http.Request) {
	id, ok := pathName(w, r, "id", "device id")
	if !ok {
		return
	}
	body, ok := readBody(w, r, maxBody)
	if !ok {
		return
	}
	values, err := decodeWrite(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, CodeBadRequest, "write body: "+err.Error())
		return
	}
	res, err := s.opts.Backend.Write(r.Context(), id, values)
	if err != nil {
		s.fail(w, "write "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, WriteResponse{Device: id, Results: writesJSON(res)})
}

// decodeWrite decodes {"point": value, ...}: at least one point, and every
// value a number (json.Number), bool or string.
func decodeWrite(body []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New(`empty; want {"point": value, ...}`)
	}
	var values map[string]any
	if err := decodeStrict(body, &values); err != nil {
		return nil, fmt.Errorf(`want {"point": value, ...}: %w`, err)
	}
	if len(values) == 0 {
		return nil, errors.New("no points to write")
	}
	if len(values) > maxPoints {
		return nil, fmt.Errorf("%d points; at most %d", len(values), maxPoints)
	}
	for k, v := range values {
		if !validName(k) {
			return nil, fmt.Errorf("bad point name %q", k)
		}
		switch v.(type) {
		case json.Number, bool, string:
		case nil:
			return nil, fmt.Errorf("%s: null is not a value to write", k)
		default:
			return nil, fmt.Errorf("%s: want a number, true/false or a string, not %s", k, jsonKind(v))
		}
	}
	return values, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	id, ok := pathName(w, r, "id", "device id")
	if !ok {
		return
	}
	method, ok := pathName(w, r, "method", "method name")
	if !ok {
		return
	}
	body, ok := readBody(w, r, maxMethodBody)
	if !ok {
		return
	}
	payload := bytes.TrimSpace(body)
	if len(payload) == 0 {
		payload = []byte("null")
	}
	if !json.Valid(payload) {
		writeErr(w, http.StatusBadRequest, CodeBadRequest, "method payload is not JSON")
		return
	}
	status, resp, err := s.opts.Backend.Invoke(r.Context(), id, method, json.RawMessage(payload))
	if err != nil {
		s.fail(w, "invoke "+method+" on "+id, err)
		return
	}
	// The response is checked before anything is written, so a payload
	// that cannot be encoded is an error instead of half a body.
	writeJSON(w, http.StatusOK, MethodResponse{Status: status, Payload: resp})
}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request) {
	jl, ok := s.opts.Backend.(JobLister)
	if !ok {
		writeErr(w, http.StatusNotImplemented, plugins.CodeUnsupported.String(), "this gateway has no job queue")
		return
	}
	device := r.URL.Query().Get("device")
	if device != "" && !validName(device) {
		writeErr(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("bad device id %q", device))
		return
	}
	list, err := jl.Jobs(r.Context(), device)
	if err != nil {
		s.fail(w, "list jobs", err)
		return
	}
	if list == nil {
		list = []JobInfo{}
	}
	writeJSON(w, http.StatusOK, JobList{Time: s.opts.Now(), Jobs: list})
}

func (s *Server) job(w http.ResponseWriter, r *http.Request) {
	jg, ok := s.opts.Backend.(JobGetter)
	if !ok {
		writeErr(w, http.StatusNotImplemented, plugins.CodeUnsupported.String(), "this gateway has no job queue")
		return
	}
	id, ok := pathName(w, r, "id", "job id")
	if !ok {
		return
	}
	j, err := jg.Job(r.Context(), id)
	if err != nil {
		s.fail(w, "show job "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// scanParams parses ?from=&to=&force=. Both bounds or neither; force is a
// bool, and a bare "force" means true.
func scanParams(q map[string][]string) (from, to int, force bool, err error) {
	get := func(k string) (string, bool) {
		v, ok := q[k]
		if !ok || len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	fs, hasFrom := get("from")
	ts, hasTo := get("to")
	if hasFrom != hasTo {
		return 0, 0, false, errors.New("give both from and to, or neither for the protocol's default range")
	}
	if hasFrom {
		if from, err = strconv.Atoi(fs); err != nil || from < 0 || from > maxScanAddr {
			return 0, 0, false, fmt.Errorf("from: want an address 0..%d, got %q", maxScanAddr, fs)
		}
		if to, err = strconv.Atoi(ts); err != nil || to < 0 || to > maxScanAddr {
			return 0, 0, false, fmt.Errorf("to: want an address 0..%d, got %q", maxScanAddr, ts)
		}
		if from > to {
			return 0, 0, false, fmt.Errorf("from %d is after to %d", from, to)
		}
	}
	if v, ok := get("force"); ok {
		if v == "" {
			force = true
		} else if force, err = strconv.ParseBool(v); err != nil {
			return 0, 0, false, fmt.Errorf("force: want true or false, got %q", v)
		}
	}
	return from, to, force, nil
}

// scan streams NDJSON: a ScanProgress line per probed address, flushed as
// it comes, then one ScanSummary. When Scan fails before the first probe
// (unknown bus, bus busy) the answer is a plain JSON error with its status.
func (s *Server) scan(w http.ResponseWriter, r *http.Request) {
	bus, ok := pathName(w, r, "bus", "bus name")
	if !ok {
		return
	}
	from, to, force, err := scanParams(r.URL.Query())
	if err != nil {
		writeErr(w, http.StatusBadRequest, CodeBadRequest, "scan: "+err.Error())
		return
	}
	// A scan ends when the client goes away or the server shuts down.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	var (
		mu      sync.Mutex
		started bool
		done    bool
		sum     = ScanSummary{Type: ScanLineSummary, Bus: bus, From: from, To: to, Found: []int{}}
	)
	begin := func() {
		started = true
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
	}
	progress := func(ev plugins.ScanEvent) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		if !started {
			begin()
		}
		sum.Probed++
		if ev.Found {
			sum.Found = append(sum.Found, ev.Address)
		}
		// A failed write means the client left; ctx ends the scan.
		_ = enc.Encode(progressLine(ev))
		_ = rc.Flush()
	}
	err = s.opts.Backend.Scan(ctx, bus, from, to, force, progress)

	mu.Lock()
	defer mu.Unlock()
	done = true
	if err != nil && !started {
		s.fail(w, "scan "+bus, err)
		return
	}
	if !started {
		begin()
	}
	if err != nil {
		_, sum.Code = StatusOf(err)
		sum.Error = err.Error()
		s.log.Warn("scan stopped", "bus", bus, "error", err)
	}
	_ = enc.Encode(sum)
	_ = rc.Flush()
}

// fail answers with the status and code of a Backend error. Internal errors
// are logged, since their text may be all there is to go on.
func (s *Server) fail(w http.ResponseWriter, what string, err error) {
	status, code := StatusOf(err)
	if status == http.StatusInternalServerError {
		s.log.Error("local api request failed", "op", what, "error", err)
	}
	writeErr(w, status, code, what+": "+err.Error())
}

// pathName returns a path value after checking it is a sane name.
func pathName(w http.ResponseWriter, r *http.Request, key, what string) (string, bool) {
	v := r.PathValue(key)
	if !validName(v) {
		writeErr(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("bad %s %q", what, v))
		return "", false
	}
	return v, true
}

// readBody reads at most limit bytes of the request body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeErr(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
			return nil, false
		}
		writeErr(w, http.StatusBadRequest, CodeBadRequest, "read request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// decodeStrict decodes exactly one JSON value into dst: numbers as
// json.Number, unknown fields and trailing data refused.
func decodeStrict(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Code: code})
}

// writeJSON encodes v first, so an encoding failure becomes a clean 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: "encode response: " + err.Error(), Code: CodeInternal})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
