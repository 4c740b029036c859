package localapi

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// fakeBackend is the consumer-side fake: canned answers, optional error
// injection per call, and a record of what was asked.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string
	err   error // returned by every call when set

	writes  map[string]any
	payload json.RawMessage
	points  []string

	// scan controls the Scan call; nil means: report every address
	// from..to, found when even.
	scan func(ctx context.Context, bus string, from, to int, force bool, progress func(plugins.ScanEvent)) error
}

var fixedTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func (f *fakeBackend) record(c string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return f.err
}

func (f *fakeBackend) Status(context.Context) (Status, error) {
	if err := f.record("status"); err != nil {
		return Status{}, err
	}
	return Status{
		GatewayID: "gw-test", Version: "1.2.3", Uptime: Duration(90 * time.Minute),
		Upstream: UpstreamStatus{Configured: true, Connected: true, Hub: "hub.local", Since: fixedTime.Add(-time.Hour)},
		Plugins:  []PluginStatus{{Name: "modbus", Version: "0.1", State: "up"}},
		Buses:    []BusStatus{{Name: "rs485-1", Plugin: "modbus", State: "open", Transactions: 100, Timeouts: 2, Queue: 1}},
		Devices:  2, ConfigHash: "abc123",
	}, nil
}

func (f *fakeBackend) Devices(context.Context) ([]DeviceInfo, error) {
	if err := f.record("devices"); err != nil {
		return nil, err
	}
	return []DeviceInfo{
		{ID: "pump-1", Bus: "rs485-1", Address: 3, Profile: "acme-pump", State: "connected", LastSeen: fixedTime.Add(-2 * time.Second)},
		{ID: "pump-2", Bus: "rs485-1", Address: 4, Profile: "acme-pump", State: "timeout", LastError: "no answer"},
	}, nil
}

func (f *fakeBackend) known(id string) error {
	if id != "pump-1" && id != "gw-test" {
		return plugins.Errorf(plugins.CodeNotFound, "unknown device %q", id)
	}
	return nil
}

func (f *fakeBackend) Twin(_ context.Context, id string) (map[string]any, error) {
	if err := f.record("twin " + id); err != nil {
		return nil, err
	}
	if err := f.known(id); err != nil {
		return nil, err
	}
	return map[string]any{"deviceId": id, "properties": map[string]any{"reported": map[string]any{"points": map[string]any{"temperature": 21.5}}}}, nil
}

func (f *fakeBackend) Read(_ context.Context, id string, points []string) ([]plugins.PointValue, error) {
	if err := f.record("read " + id); err != nil {
		return nil, err
	}
	if err := f.known(id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.points = points
	f.mu.Unlock()
	return []plugins.PointValue{
		{Point: "temperature", Value: plugins.Value{Kind: plugins.KindFloat, Float: 21.5}, Time: fixedTime},
		{Point: "running", Value: plugins.Value{Kind: plugins.KindBool, Bool: true}, Time: fixedTime},
		{Point: "pressure", Quality: plugins.QualityTimeout, Error: "no answer", Time: fixedTime},
	}, nil
}

func (f *fakeBackend) Write(_ context.Context, id string, values map[string]any) ([]plugins.WriteResult, error) {
	if err := f.record("write " + id); err != nil {
		return nil, err
	}
	if err := f.known(id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.writes = values
	f.mu.Unlock()
	rb := plugins.Value{Kind: plugins.KindFloat, Float: 21.5}
	return []plugins.WriteResult{{Point: "setpoint", OK: true, ReadBack: &rb}}, nil
}

func (f *fakeBackend) Invoke(_ context.Context, id, method string, payload json.RawMessage) (int, any, error) {
	if err := f.record("invoke " + id + " " + method); err != nil {
		return 0, nil, err
	}
	if err := f.known(id); err != nil {
		return 0, nil, err
	}
	f.mu.Lock()
	f.payload = payload
	f.mu.Unlock()
	if method == "reboot" {
		return http.StatusConflict, map[string]any{"error": "in use: running is true"}, nil
	}
	return http.StatusOK, map[string]any{"echo": payload}, nil
}

func (f *fakeBackend) Scan(ctx context.Context, bus string, from, to int, force bool, progress func(plugins.ScanEvent)) error {
	if err := f.record("scan " + bus); err != nil {
		return err
	}
	if bus != "rs485-1" {
		return plugins.Errorf(plugins.CodeNotFound, "unknown bus %q", bus)
	}
	if f.scan != nil {
		return f.scan(ctx, bus, from, to, force, progress)
	}
	if from == 0 && to == 0 {
		from, to = 1, 4
	}
	for a := from; a <= to; a++ {
		ev := plugins.ScanEvent{Address: a, Found: a%2 == 0}
		if ev.Found {
			ev.Identity = &plugins.Identity{Manufacturer: "Acme", Model: "P100"}
		}
		progress(ev)
	}
	return nil
}

// jobsBackend adds the optional JobLister.
type jobsBackend struct{ fakeBackend }

func (j *jobsBackend) Jobs(_ context.Context, device string) ([]JobInfo, error) {
	all := []JobInfo{
		{ID: "j1", Device: "pump-1", Kind: "reboot", State: "waiting", Reason: "outside maintenance window", Created: fixedTime},
		{ID: "j2", Device: "pump-2", Kind: "config", State: "succeeded", Attempts: 1, Created: fixedTime},
	}
	var out []JobInfo
	for _, j := range all {
		if device == "" || j.Device == device {
			out = append(out, j)
		}
	}
	return out, nil
}

func (j *jobsBackend) Job(_ context.Context, id string) (JobDetail, error) {
	if id != "j1" {
		return JobDetail{}, plugins.Errorf(plugins.CodeNotFound, "no job %s", id)
	}
	return JobDetail{JobInfo: JobInfo{ID: "j1", Device: "pump-1", Kind: "reboot", Source: "hub-method", State: "waiting",
		Reason: "outside maintenance window", Created: fixedTime}, Payload: json.RawMessage(`{"force":false}`), Disruptive: true, MaxAttempts: 3}, nil
}

const testToken = "s3cret-token"

// startServer runs a Server on 127.0.0.1:0 (or addr) until the test ends.
func startServer(t *testing.T, b Backend, addr string) *Server {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s, err := New(Options{Addr: addr, Backend: b, Token: testToken, Now: func() time.Time { return fixedTime }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel", err)
		}
	})
	return s
}

// client returns an HTTP client for the server's address (TCP or unix).
func client(t *testing.T, s *Server) (*http.Client, string) {
	t.Helper()
	addr := s.Addr()
	tr := &http.Transport{}
	base := "http://" + addr
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		base = "http://drover"
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, base
}

// do sends a request and returns status and body.
func do(t *testing.T, c *http.Client, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("request %s %s: %v", method, url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func errCode(t *testing.T, body string) string {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Error == "" {
		t.Errorf("error body %q has no message", body)
	}
	return e.Code
}
