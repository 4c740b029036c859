package localapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-iot/drover/plugins"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoutes(t *testing.T) {
	fb := &jobsBackend{}
	s := startServer(t, fb, "")
	c, base := client(t, s)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		want                            []string // substrings of the body
	}{
		{"status", "GET", "/v1/status", "", "", 200, []string{`"gatewayId":"gw-test"`, `"uptime":"1h30m0s"`, `"time":"2026-03-01T12:00:00Z"`, `"transactions":100`}},
		{"devices", "GET", "/v1/devices", "", "", 200, []string{`"id":"pump-1"`, `"lastSeen":"2026-03-01T11:59:58Z"`, `"lastError":"no answer"`}},
		{"twin", "GET", "/v1/devices/pump-1/twin", "", "", 200, []string{`"temperature":21.5`}},
		{"twin of the gateway", "GET", "/v1/devices/gw-test/twin", "", "", 200, []string{`"deviceId":"gw-test"`}},
		{"twin unknown", "GET", "/v1/devices/nope/twin", "", "", 404, []string{`"code":"not-found"`}},
		{"read", "POST", "/v1/devices/pump-1/read", "", `{"points":["temperature","running","pressure"]}`, 200,
			[]string{`"value":21.5`, `"value":true`, `"quality":"timeout"`, `"error":"no answer"`}},
		{"read all points", "POST", "/v1/devices/pump-1/read", "", ``, 200, []string{`"device":"pump-1"`}},
		{"write", "POST", "/v1/devices/pump-1/write", testToken, `{"setpoint":21.5}`, 200, []string{`"ok":true`, `"readBack":21.5`}},
		{"write unknown device", "POST", "/v1/devices/nope/write", testToken, `{"setpoint":1}`, 404, []string{`"code":"not-found"`}},
		{"method", "POST", "/v1/devices/pump-1/methods/identify", testToken, `{"x":1}`, 200, []string{`"status":200`, `"echo":{"x":1}`}},
		{"method with device status", "POST", "/v1/devices/pump-1/methods/reboot", testToken, ``, 200, []string{`"status":409`, `in use`}},
		{"jobs", "GET", "/v1/jobs", "", "", 200, []string{`"id":"j1"`, `"id":"j2"`}},
		{"jobs of a device", "GET", "/v1/jobs?device=pump-2", "", "", 200, []string{`"id":"j2"`}},
		{"one job", "GET", "/v1/jobs/j1", "", "", 200, []string{`"id":"j1"`, `"source":"hub-method"`, `"payload":{"force":false}`, `"disruptive":true`}},
		{"unknown job", "GET", "/v1/jobs/j9", "", "", 404, []string{`"code":"not-found"`, `no job j9`}},
		{"no route", "GET", "/v2/nothing", "", "", 404, []string{`"code":"no-route"`}},
		{"wrong method", "DELETE", "/v1/status", "", "", 405, []string{`"code":"method-not-allowed"`}},
		{"GET on a POST route", "GET", "/v1/devices/pump-1/write", "", "", 405, []string{`use POST`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := do(t, c, tc.method, base+tc.path, tc.token, tc.body)
			if status != tc.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", tc.method, tc.path, status, tc.status, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s %s: body %s lacks %s", tc.method, tc.path, body, w)
				}
			}
		})
	}
	t.Run("write passes numbers as json.Number", func(t *testing.T) {
		do(t, c, "POST", base+"/v1/devices/pump-1/write", testToken, `{"setpoint":21.50,"mode":"auto","on":true}`)
		fb.mu.Lock()
		defer fb.mu.Unlock()
		if n, ok := fb.writes["setpoint"].(json.Number); !ok || n.String() != "21.50" {
			t.Errorf("setpoint arrived as %#v", fb.writes["setpoint"])
		}
		if fb.writes["mode"] != "auto" || fb.writes["on"] != true {
			t.Errorf("writes %#v", fb.writes)
		}
	})
	t.Run("method without body passes null", func(t *testing.T) {
		do(t, c, "POST", base+"/v1/devices/pump-1/methods/identify", testToken, "")
		fb.mu.Lock()
		defer fb.mu.Unlock()
		if string(fb.payload) != "null" {
			t.Errorf("payload %q, want null", fb.payload)
		}
	})
	t.Run("jobs without a job queue", func(t *testing.T) {
		s := startServer(t, &fakeBackend{}, "")
		c, base := client(t, s)
		status, _, body := do(t, c, "GET", base+"/v1/jobs", "", "")
		if status != http.StatusNotImplemented || errCode(t, body) != "unsupported" {
			t.Errorf("status %d body %s", status, body)
		}
	})
}

func TestAuth(t *testing.T) {
	s := startServer(t, &fakeBackend{}, "")
	c, base := client(t, s)
	mutating := []struct{ path, body string }{
		{"/v1/devices/pump-1/write", `{"setpoint":1}`},
		{"/v1/devices/pump-1/methods/reboot", ``},
		{"/v1/buses/rs485-1/scan", ``},
	}
	for _, m := range mutating {
		for _, tc := range []struct {
			name, header string
			status       int
		}{
			{"missing", "", 401},
			{"wrong", "Bearer nope", 401},
			{"wrong scheme", "Basic " + testToken, 401},
			{"prefix of the token", "Bearer " + testToken[:4], 401},
			{"right", "Bearer " + testToken, 200},
			{"right, lower-case scheme", "bearer " + testToken, 200},
		} {
			t.Run(m.path+"/"+tc.name, func(t *testing.T) {
				req, _ := http.NewRequest("POST", base+m.path, strings.NewReader(m.body))
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
				}
				if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			})
		}
	}
	t.Run("reads are open on loopback", func(t *testing.T) {
		for _, p := range []string{"/v1/status", "/v1/devices", "/v1/devices/pump-1/twin"} {
			if status, _, body := do(t, c, "GET", base+p, "", ""); status != 200 {
				t.Errorf("GET %s: %d %s", p, status, body)
			}
		}
		if status, _, body := do(t, c, "POST", base+"/v1/devices/pump-1/read", "", `{}`); status != 200 {
			t.Errorf("read: %d %s", status, body)
		}
	})
	t.Run("reads need the token off loopback", func(t *testing.T) {
		s2, err := New(Options{Backend: &fakeBackend{}, Token: testToken})
		if err != nil {
			t.Fatal(err)
		}
		s2.protectReads = true // as Run sets it when listening on a non-loopback address
		for _, tc := range []struct {
			token  string
			status int
		}{{"", 401}, {"x", 401}, {testToken, 200}} {
			rec := httptest.NewRecorder()
			req, _ := http.NewRequest("GET", "/v1/status", nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			s2.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Errorf("token %q: status %d, want %d", tc.token, rec.Code, tc.status)
			}
		}
	})
	t.Run("New refuses an empty token", func(t *testing.T) {
		if _, err := New(Options{Backend: &fakeBackend{}, Token: " "}); err == nil {
			t.Error("no error")
		}
		if _, err := New(Options{Token: "x"}); err == nil {
			t.Error("no error without backend")
		}
	})
}

func TestErrorMapping(t *testing.T) {
	fb := &fakeBackend{}
	s := startServer(t, fb, "")
	c, base := client(t, s)
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{plugins.Errorf(plugins.CodeNotFound, "unknown device"), 404, "not-found"},
		{plugins.Errorf(plugins.CodeInvalid, "bad value"), 400, "invalid"},
		{plugins.Errorf(plugins.CodeBusy, "bus busy"), 409, "busy"},
		{fmt.Errorf("reboot pump-1: %w", plugins.Errorf(plugins.CodeInUse, "running")), 409, "in-use"},
		{plugins.Errorf(plugins.CodeUnavailable, "plugin down"), 503, "unavailable"},
		{plugins.Errorf(plugins.CodeTimeout, "no answer"), 504, "timeout"},
		{plugins.Errorf(plugins.CodeGatewayTarget, "no answer behind gateway"), 504, "gateway-target"},
		{plugins.Errorf(plugins.CodeDeviceError, "exception 2"), 502, "device-error"},
		{plugins.Errorf(plugins.CodeGatewayPath, "no path"), 502, "gateway-path"},
		{plugins.Errorf(plugins.CodeUnsupported, "no flash"), 501, "unsupported"},
		{fmt.Errorf("poll: %w", context.DeadlineExceeded), 504, "timeout"},
		{errors.New("disk on fire"), 500, "internal"},
	}
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/status", ""},
		{"GET", "/v1/devices", ""},
		{"GET", "/v1/devices/pump-1/twin", ""},
		{"POST", "/v1/devices/pump-1/read", `{"points":["a"]}`},
		{"POST", "/v1/devices/pump-1/write", `{"a":1}`},
		{"POST", "/v1/devices/pump-1/methods/m", `{}`},
		{"POST", "/v1/buses/rs485-1/scan", ``},
	}
	for _, tc := range cases {
		for _, r := range routes {
			t.Run(tc.code+" "+r.path, func(t *testing.T) {
				fb.mu.Lock()
				fb.err = tc.err
				fb.mu.Unlock()
				status, _, body := do(t, c, r.method, base+r.path, testToken, r.body)
				if status != tc.status {
					t.Errorf("status %d, want %d (%s)", status, tc.status, body)
				}
				if code := errCode(t, body); code != tc.code {
					t.Errorf("code %q, want %q", code, tc.code)
				}
			})
		}
	}
}

func TestGarbageBodies(t *testing.T) {
	s := startServer(t, &fakeBackend{}, "")
	c, base := client(t, s)
	big := strings.Repeat(" ", maxMethodBody+1)
	cases := []struct {
		name, path, body string
		status           int
	}{
		{"read: not JSON", "/v1/devices/pump-1/read", `points=a`, 400},
		{"read: array", "/v1/devices/pump-1/read", `["a"]`, 400},
		{"read: points not strings", "/v1/devices/pump-1/read", `{"points":[1,2]}`, 400},
		{"read: unknown field", "/v1/devices/pump-1/read", `{"point":["a"]}`, 400},
		{"read: trailing data", "/v1/devices/pump-1/read", `{"points":["a"]} {}`, 400},
		{"read: empty point name", "/v1/devices/pump-1/read", `{"points":[""]}`, 400},
		{"read: control char", "/v1/devices/pump-1/read", `{"points":["a\u0001"]}`, 400},
		{"read: truncated", "/v1/devices/pump-1/read", `{"points":["a"`, 400},
		{"read: too large", "/v1/devices/pump-1/read", `{"points":["` + strings.Repeat("a", maxBody) + `"]}`, 413},
		{"write: empty", "/v1/devices/pump-1/write", ``, 400},
		{"write: empty object", "/v1/devices/pump-1/write", `{}`, 400},
		{"write: not an object", "/v1/devices/pump-1/write", `[1,2]`, 400},
		{"write: bare number", "/v1/devices/pump-1/write", `21.5`, 400},
		{"write: null value", "/v1/devices/pump-1/write", `{"a":null}`, 400},
		{"write: object value", "/v1/devices/pump-1/write", `{"a":{"b":1}}`, 400},
		{"write: array value", "/v1/devices/pump-1/write", `{"a":[1]}`, 400},
		{"write: binary", "/v1/devices/pump-1/write", "\x00\xff\xfe", 400},
		{"write: two objects", "/v1/devices/pump-1/write", `{"a":1}{"b":2}`, 400},
		{"method: not JSON", "/v1/devices/pump-1/methods/reboot", `{force}`, 400},
		{"method: too large", "/v1/devices/pump-1/methods/reboot", big, 413},
		{"scan: from without to", "/v1/buses/rs485-1/scan?from=1", ``, 400},
		{"scan: from not a number", "/v1/buses/rs485-1/scan?from=x&to=3", ``, 400},
		{"scan: negative", "/v1/buses/rs485-1/scan?from=-1&to=3", ``, 400},
		{"scan: from after to", "/v1/buses/rs485-1/scan?from=9&to=3", ``, 400},
		{"scan: to too big", "/v1/buses/rs485-1/scan?from=1&to=70000", ``, 400},
		{"scan: force garbage", "/v1/buses/rs485-1/scan?force=maybe", ``, 400},
		{"scan: unknown bus", "/v1/buses/nope/scan", ``, 404},
		{"bad device id", "/v1/devices/a%01b/read", `{}`, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := do(t, c, "POST", base+tc.path, testToken, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d; body %s", status, tc.status, body)
			}
			errCode(t, body)
		})
	}
}

func TestScanStream(t *testing.T) {
	t.Run("lines arrive as the scan runs", func(t *testing.T) {
		next := make(chan struct{})
		fb := &fakeBackend{scan: func(ctx context.Context, _ string, from, to int, force bool, progress func(plugins.ScanEvent)) error {
			if from != 1 || to != 3 || !force {
				return plugins.Errorf(plugins.CodeInvalid, "got from=%d to=%d force=%v", from, to, force)
			}
			for a := from; a <= to; a++ {
				progress(plugins.ScanEvent{Address: a, Found: a == 2, Identity: &plugins.Identity{Model: "P100"}})
				select { // the client must have seen this line before the next probe
				case <-next:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}}
		s := startServer(t, fb, "")
		c, base := client(t, s)
		req, _ := http.NewRequest("POST", base+"/v1/buses/rs485-1/scan?from=1&to=3&force=true", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Fatalf("Content-Type %q", ct)
		}
		sc := bufio.NewScanner(resp.Body)
		for a := 1; a <= 3; a++ {
			if !sc.Scan() {
				t.Fatalf("stream ended before address %d: %v", a, sc.Err())
			}
			var p ScanProgress
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil || p.Type != ScanLineProgress || p.Address != a {
				t.Fatalf("line %q: %+v %v", sc.Text(), p, err)
			}
			next <- struct{}{}
		}
		if !sc.Scan() {
			t.Fatal("no summary")
		}
		var sum ScanSummary
		if err := json.Unmarshal(sc.Bytes(), &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Type != ScanLineSummary || sum.Probed != 3 || len(sum.Found) != 1 || sum.Found[0] != 2 || sum.Error != "" {
			t.Errorf("summary %s", sc.Text())
		}
		if sc.Scan() {
			t.Errorf("extra line %q", sc.Text())
		}
	})
	t.Run("failure after progress ends in the summary", func(t *testing.T) {
		fb := &fakeBackend{scan: func(_ context.Context, _ string, _, _ int, _ bool, progress func(plugins.ScanEvent)) error {
			progress(plugins.ScanEvent{Address: 1})
			return plugins.Errorf(plugins.CodeUnavailable, "plugin crashed")
		}}
		s := startServer(t, fb, "")
		c, base := client(t, s)
		status, _, body := do(t, c, "POST", base+"/v1/buses/rs485-1/scan", testToken, "")
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if len(lines) != 2 || !strings.Contains(lines[1], `"code":"unavailable"`) || !strings.Contains(lines[1], "plugin crashed") {
			t.Errorf("body %s", body)
		}
	})
	t.Run("refusal before any probe is a plain error", func(t *testing.T) {
		fb := &fakeBackend{scan: func(context.Context, string, int, int, bool, func(plugins.ScanEvent)) error {
			return plugins.Errorf(plugins.CodeBusy, "bus rs485-1 is being polled; use force")
		}}
		s := startServer(t, fb, "")
		c, base := client(t, s)
		status, _, body := do(t, c, "POST", base+"/v1/buses/rs485-1/scan", testToken, "")
		if status != 409 || errCode(t, body) != "busy" {
			t.Errorf("status %d body %s", status, body)
		}
	})
	t.Run("client leaving stops the scan", func(t *testing.T) {
		stopped := make(chan error, 1)
		first := make(chan struct{})
		fb := &fakeBackend{scan: func(ctx context.Context, _ string, _, _ int, _ bool, progress func(plugins.ScanEvent)) error {
			progress(plugins.ScanEvent{Address: 1})
			close(first)
			<-ctx.Done()
			stopped <- ctx.Err()
			return ctx.Err()
		}}
		s := startServer(t, fb, "")
		c, base := client(t, s)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/buses/rs485-1/scan", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		<-first
		cancel()
		resp.Body.Close()
		select {
		case err := <-stopped:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("scan ctx ended with %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("scan still running after the client left")
		}
	})
	t.Run("shutdown stops a running scan", func(t *testing.T) {
		started := make(chan struct{})
		fb := &fakeBackend{scan: func(ctx context.Context, _ string, _, _ int, _ bool, progress func(plugins.ScanEvent)) error {
			progress(plugins.ScanEvent{Address: 1})
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}}
		s, err := New(Options{Addr: "127.0.0.1:0", Backend: fb, Token: testToken})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		<-s.Ready()
		c, base := client(t, s)
		req, _ := http.NewRequest("POST", base+"/v1/buses/rs485-1/scan", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		<-started
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(DefaultShutdownTimeout):
			t.Fatal("Run did not return: the scan held the shutdown")
		}
	})
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "drover.sock")
	s := startServer(t, &fakeBackend{}, "unix:"+path)
	if s.Addr() != "unix:"+path {
		t.Errorf("Addr %q", s.Addr())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", st.Mode().Perm())
	}
	c, base := client(t, s)
	if status, _, body := do(t, c, "GET", base+"/v1/status", "", ""); status != 200 || !strings.Contains(body, "gw-test") {
		t.Errorf("status %d body %s", status, body)
	}
	if status, _, _ := do(t, c, "POST", base+"/v1/devices/pump-1/write", "", `{"a":1}`); status != 401 {
		t.Errorf("write without token over the socket: %d", status)
	}
	t.Run("a live socket is not stolen", func(t *testing.T) {
		s2, err := New(Options{Addr: "unix:" + path, Backend: &fakeBackend{}, Token: testToken})
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "another process") {
			t.Errorf("Run on a live socket: %v", err)
		}
	})
	t.Run("a regular file is not removed", func(t *testing.T) {
		f := filepath.Join(dir, "plain")
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		s2, _ := New(Options{Addr: "unix:" + f, Backend: &fakeBackend{}, Token: testToken})
		if err := s2.Run(context.Background()); err == nil {
			t.Error("Run over a regular file succeeded")
		}
		if _, err := os.Stat(f); err != nil {
			t.Errorf("file gone: %v", err)
		}
	})
	t.Run("empty path", func(t *testing.T) {
		if _, err := New(Options{Addr: "unix:", Backend: &fakeBackend{}, Token: testToken}); err == nil {
			t.Error("no error")
		}
	})
}

func TestEnsureToken(t *testing.T) {
	t.Run("creates 0600 and reuses", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data") // does not exist yet
		tok, err := EnsureToken(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != 2*tokenBytes {
			t.Errorf("token %q has %d chars", tok, len(tok))
		}
		st, err := os.Stat(TokenPath(dir))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", st.Mode().Perm())
		}
		again, err := EnsureToken(dir)
		if err != nil || again != tok {
			t.Errorf("second call: %q %v, want the same token", again, err)
		}
		got, err := ReadTokenFile(TokenPath(dir))
		if err != nil || got != tok {
			t.Errorf("ReadTokenFile: %q %v", got, err)
		}
		other, _ := EnsureToken(t.TempDir())
		if other == tok {
			t.Error("two data dirs got the same token")
		}
	})
	cases := []struct {
		name    string
		content string
		mode    os.FileMode
		reuse   bool
	}{
		{"existing token kept", "abc\n", 0o600, true},
		{"whitespace trimmed", "  abc  \r\n", 0o600, true},
		{"loose mode tightened", "abc", 0o644, true},
		{"empty file replaced", "", 0o600, false},
		{"blank file replaced", " \n\n", 0o600, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := TokenPath(dir)
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			tok, err := EnsureToken(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tc.reuse && tok != "abc" {
				t.Errorf("token %q, want abc", tok)
			}
			if !tc.reuse && len(tok) != 2*tokenBytes {
				t.Errorf("token %q not regenerated", tok)
			}
			st, _ := os.Stat(p)
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", st.Mode().Perm())
			}
		})
	}
	t.Run("unreadable data dir is an error", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := EnsureToken(f); err == nil { // f is a file, not a directory
			t.Error("no error")
		}
	})
}

func TestStatusOf(t *testing.T) {
	// Every plugins.Code must map to something other than 500, except
	// CodeUnknown.
	for c := plugins.CodeUnknown; c <= plugins.CodeGatewayTarget; c++ {
		status, code := StatusOf(plugins.Errorf(c, "x"))
		if (status == 500) != (c == plugins.CodeUnknown) {
			t.Errorf("%v → %d %s", c, status, code)
		}
	}
}

func TestScanParams(t *testing.T) {
	cases := []struct {
		query            string
		from, to         int
		force, wantError bool
	}{
		{"", 0, 0, false, false},
		{"from=1&to=247", 1, 247, false, false},
		{"from=0&to=0", 0, 0, false, false},
		{"force", 0, 0, true, false},
		{"force=1", 0, 0, true, false},
		{"force=false", 0, 0, false, false},
		{"from=5&to=4", 0, 0, false, true},
		{"to=4", 0, 0, false, true},
		{"from=1.5&to=4", 0, 0, false, true},
		{"from=&to=", 0, 0, false, true},
		{"from=1&to=99999999999999999999", 0, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "/x?"+tc.query, nil)
			from, to, force, err := scanParams(req.URL.Query())
			if (err != nil) != tc.wantError {
				t.Fatalf("err %v", err)
			}
			if err == nil && (from != tc.from || to != tc.to || force != tc.force) {
				t.Errorf("got %d %d %v", from, to, force)
			}
		})
	}
}

func TestValueJSON(t *testing.T) {
	cases := []struct {
		v    plugins.Value
		want string
	}{
		{plugins.Value{}, "null"},
		{plugins.Value{Kind: plugins.KindBool, Bool: true}, "true"},
		{plugins.Value{Kind: plugins.KindInt, Int: -3}, "-3"},
		{plugins.Value{Kind: plugins.KindUint, Uint: 18446744073709551615}, "18446744073709551615"},
		{plugins.Value{Kind: plugins.KindFloat, Float: 21.5}, "21.5"},
		{plugins.Value{Kind: plugins.KindFloat, Float: math.Inf(1)}, "null"},
		{plugins.Value{Kind: plugins.KindString, String: "on"}, `"on"`},
	}
	for _, tc := range cases {
		b, err := json.Marshal(ValueJSON(tc.v))
		if err != nil || string(b) != tc.want {
			t.Errorf("%+v → %s %v, want %s", tc.v, b, err, tc.want)
		}
	}
}
