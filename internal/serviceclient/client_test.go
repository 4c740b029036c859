package serviceclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/sas"
)

// testKey is base64 of "0123456789abcdef0123456789abcdef".
const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func testCS(host string) sas.ConnectionString {
	return sas.ConnectionString{HostName: host, KeyName: "iothubowner", Key: testKey}
}

// fakeHub serves handler over TLS on 127.0.0.1 and returns a client for it.
// It is a fake for client-side behaviour only (headers, errors, paging,
// streaming); hub behaviour is tested against localhub in cmd/droverctl.
func fakeHub(t *testing.T, handler http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewTLSServer(handler)
	t.Cleanup(srv.Close)
	c, err := New(testCS("hub.test"), Options{Address: srv.Listener.Addr().String(), HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// checkAuth verifies what every request must carry, as localhub will.
func checkAuth(t *testing.T, r *http.Request) {
	t.Helper()
	if got := r.URL.Query().Get("api-version"); got != APIVersion {
		t.Errorf("%s %s: api-version = %q", r.Method, r.URL.Path, got)
	}
	tok, err := sas.Parse(r.Header.Get("Authorization"))
	if err != nil {
		t.Errorf("%s %s: Authorization: %v", r.Method, r.URL.Path, err)
		return
	}
	if err := tok.Verify(testKey, time.Now()); err != nil {
		t.Errorf("token does not verify: %v", err)
	}
	if tok.Resource != "hub.test" || tok.KeyName != "iothubowner" {
		t.Errorf("token sr=%q skn=%q, want hub.test / iothubowner", tok.Resource, tok.KeyName)
	}
	if d := time.Until(tok.Expiry); d < 50*time.Minute || d > 61*time.Minute {
		t.Errorf("token expires in %s, want about an hour", d)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(r.Header.Get("Request-Id")) {
		t.Errorf("Request-Id %q is not a UUID v4", r.Header.Get("Request-Id"))
	}
	if r.Host != "hub.test" {
		t.Errorf("Host = %q, want the connection string's HostName", r.Host)
	}
	if r.ContentLength > 0 && r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
	}
}

func TestRequests(t *testing.T) {
	type seen struct {
		method, path, ifMatch, body string
		header                      http.Header
	}
	var (
		mu    sync.Mutex
		got   seen
		reply string
	)
	c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		checkAuth(t, r)
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = seen{r.Method, r.URL.EscapedPath(), r.Header.Get("If-Match"), string(b), r.Header}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, reply)
	})
	ctx := context.Background()
	cases := []struct {
		name  string
		reply string
		call  func() error
		want  seen
	}{
		{
			name:  "get device escapes the id",
			reply: `{"deviceId":"a b/c#d"}`,
			call:  func() error { _, err := c.GetDevice(ctx, "a b/c#d"); return err },
			want:  seen{method: "GET", path: "/devices/a%20b%2Fc%23d"},
		},
		{
			name:  "create device without keys asks the hub to generate them",
			reply: `{"deviceId":"d1"}`,
			call: func() error {
				_, err := c.CreateDevice(ctx, Device{DeviceID: "d1", Status: "enabled", ETag: "x"})
				return err
			},
			want: seen{method: "PUT", path: "/devices/d1",
				body: `{"deviceId":"d1","status":"enabled","cloudToDeviceMessageCount":0,"authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}}`},
		},
		{
			name:  "update device quotes the etag",
			reply: `{"deviceId":"d1"}`,
			call:  func() error { _, err := c.UpdateDevice(ctx, Device{DeviceID: "d1"}, "NzIy"); return err },
			want:  seen{method: "PUT", path: "/devices/d1", ifMatch: `"NzIy"`, body: `{"deviceId":"d1","cloudToDeviceMessageCount":0}`},
		},
		{
			name:  "update device without etag is unconditional",
			reply: `{"deviceId":"d1"}`,
			call:  func() error { _, err := c.UpdateDevice(ctx, Device{DeviceID: "d1"}, ""); return err },
			want:  seen{method: "PUT", path: "/devices/d1", ifMatch: `"*"`, body: `{"deviceId":"d1","cloudToDeviceMessageCount":0}`},
		},
		{
			name: "delete device",
			call: func() error { return c.DeleteDevice(ctx, "d1", `"already-quoted"`) },
			want: seen{method: "DELETE", path: "/devices/d1", ifMatch: `"already-quoted"`},
		},
		{
			name:  "list devices with top",
			reply: `[{"deviceId":"a"}]`,
			call:  func() error { _, err := c.ListDevices(ctx, 5); return err },
			want:  seen{method: "GET", path: "/devices"},
		},
		{
			name:  "patch twin sends only tags and desired",
			reply: `{"deviceId":"d1"}`,
			call: func() error {
				_, err := c.UpdateTwin(ctx, "d1", Twin{DeviceID: "ignored", Version: 9, Tags: map[string]any{"site": "p1", "old": nil},
					Properties: TwinProperties{Desired: map[string]any{"x": 1}, Reported: map[string]any{"no": 1}}}, "AAAAAAAAAAc=")
				return err
			},
			want: seen{method: "PATCH", path: "/twins/d1", ifMatch: `"AAAAAAAAAAc="`,
				body: `{"tags":{"old":null,"site":"p1"},"properties":{"desired":{"x":1}}}`},
		},
		{
			name:  "patch twin with tags only",
			reply: `{"deviceId":"d1"}`,
			call:  func() error { _, err := c.UpdateTwin(ctx, "d1", Twin{Tags: map[string]any{"a": "b"}}, ""); return err },
			want:  seen{method: "PATCH", path: "/twins/d1", ifMatch: `"*"`, body: `{"tags":{"a":"b"}}`},
		},
		{
			name:  "replace twin sends both sections",
			reply: `{"deviceId":"d1"}`,
			call:  func() error { _, err := c.ReplaceTwin(ctx, "d1", Twin{}, ""); return err },
			want:  seen{method: "PUT", path: "/twins/d1", ifMatch: `"*"`, body: `{"tags":{},"properties":{"desired":{}}}`},
		},
		{
			name:  "invoke method",
			reply: `{"status":200,"payload":{"ok":true}}`,
			call: func() error {
				r, err := c.InvokeMethod(ctx, "d1", MethodRequest{MethodName: "reboot", ResponseTimeoutInSeconds: 10})
				if err == nil && (r.Status != 200 || string(r.Payload) != `{"ok":true}`) {
					return fmt.Errorf("response %+v", r)
				}
				return err
			},
			want: seen{method: "POST", path: "/twins/d1/methods", body: `{"methodName":"reboot","payload":null,"responseTimeoutInSeconds":10}`},
		},
		{
			name:  "create enrollment group fills in a symmetric key attestation",
			reply: `{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"k1","secondaryKey":"k2"}}}`,
			call: func() error {
				g, err := c.CreateEnrollmentGroup(ctx, EnrollmentGroup{EnrollmentGroupID: "g1", ParentDeviceID: "gw"})
				if err == nil && g.Attestation.SymmetricKey.PrimaryKey != "k1" {
					return fmt.Errorf("group %+v", g)
				}
				return err
			},
			want: seen{method: "PUT", path: "/enrollmentGroups/g1",
				body: `{"enrollmentGroupId":"g1","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"","secondaryKey":""}},"parentDeviceId":"gw","provisioningStatus":"enabled"}`},
		},
		{
			name:  "list enrollment groups",
			reply: `[]`,
			call:  func() error { _, err := c.ListEnrollmentGroups(ctx); return err },
			want:  seen{method: "GET", path: "/enrollmentGroups"},
		},
		{
			name: "delete enrollment group",
			call: func() error { return c.DeleteEnrollmentGroup(ctx, "g1") },
			want: seen{method: "DELETE", path: "/enrollmentGroups/g1", ifMatch: `"*"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			reply = tc.reply
			if reply == "" {
				reply = "{}"
			}
			mu.Unlock()
			if err := tc.call(); err != nil {
				t.Fatalf("call: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got.method != tc.want.method || got.path != tc.want.path || got.ifMatch != tc.want.ifMatch {
				t.Errorf("request %s %s If-Match %q, want %s %s If-Match %q", got.method, got.path, got.ifMatch, tc.want.method, tc.want.path, tc.want.ifMatch)
			}
			if tc.want.body != "" && got.body != tc.want.body {
				t.Errorf("body\n got %s\nwant %s", got.body, tc.want.body)
			}
		})
	}
}

func TestListDevicesTopParameter(t *testing.T) {
	var (
		mu   sync.Mutex
		tops []string
	)
	c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		tops = append(tops, r.URL.Query().Get("top"))
		fmt.Fprint(w, `[]`)
	})
	for _, top := range []int{0, 7} {
		if _, err := c.ListDevices(context.Background(), top); err != nil {
			t.Fatalf("ListDevices(%d): %v", top, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(tops, ",") != ",7" {
		t.Errorf("top parameters sent: %q, want none then 7", tops)
	}
}

func TestHubErrors(t *testing.T) {
	c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/devices/pump-9":
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"Message":"ErrorCode:DeviceNotFound;device pump-9 not found","ExceptionMessage":"Tracking ID:1"}`)
		case "/twins/off/methods":
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"Message":"{\"errorCode\":404103,\"message\":\"device off is not online\"}"}`)
		case "/devices/bad":
			fmt.Fprint(w, `{"deviceId":`) // 200 with a broken body
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	ctx := context.Background()
	_, err := c.GetDevice(ctx, "pump-9")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "DeviceNotFound" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetDevice(pump-9) err = %v, want APIError DeviceNotFound", err)
	}
	if err.Error() != "hub: 404 DeviceNotFound: device pump-9 not found" {
		t.Errorf("error text %q", err.Error())
	}
	_, err = c.InvokeMethod(ctx, "off", MethodRequest{MethodName: "m"})
	if !errors.As(err, &ae) || ae.Code != "DeviceNotOnline" {
		t.Errorf("InvokeMethod(off) err = %v, want DeviceNotOnline", err)
	}
	if _, err = c.GetDevice(ctx, "bad"); err == nil || errors.As(err, &ae) {
		t.Errorf("GetDevice with a broken body: err = %v, want a decode error", err)
	}
	if _, err = c.GetTwin(ctx, "x"); !errors.As(err, &ae) || ae.Status != 500 {
		t.Errorf("GetTwin on a 500: err = %v", err)
	}
	if _, err := c.InvokeMethod(ctx, "d", MethodRequest{MethodName: "m", Payload: json.RawMessage("{bad")}); err == nil {
		t.Error("InvokeMethod with invalid payload JSON: no error")
	}
}

func TestErrorsDoNotLeakSecrets(t *testing.T) {
	c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}`)
	})
	_, err := c.GetDevice(context.Background(), "d")
	if err == nil || strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "sig=") {
		t.Fatalf("err = %v", err)
	}
	dead, err := New(testCS("hub.test"), Options{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dead.GetDevice(context.Background(), "d")
	if err == nil || strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "sig=") {
		t.Fatalf("connection error = %v", err)
	}
}

func TestQueryAll(t *testing.T) {
	t.Run("follows continuations and sends page size", func(t *testing.T) {
		pages := map[string]struct {
			body, next string
		}{
			"":   {`[{"deviceId":"a"},{"deviceId":"b"}]`, "c1"},
			"c1": {`[]`, "c2"}, // an empty page in the middle is allowed
			"c2": {`[{"deviceId":"c"}]`, ""},
		}
		var (
			mu    sync.Mutex
			conts []string
		)
		c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			checkAuth(t, r)
			var q struct{ Query string }
			if err := json.NewDecoder(r.Body).Decode(&q); err != nil || q.Query != "SELECT * FROM devices" {
				t.Errorf("query body %+v, %v", q, err)
			}
			if r.Header.Get(headerMaxItemCount) != "2" {
				t.Errorf("page size header %q", r.Header.Get(headerMaxItemCount))
			}
			cont := r.Header.Get(headerContinuation)
			conts = append(conts, cont)
			p := pages[cont]
			if p.next != "" {
				w.Header().Set(headerContinuation, p.next)
			}
			w.Header().Set("x-ms-item-type", "twin")
			fmt.Fprint(w, p.body)
		})
		items, err := c.QueryAll(context.Background(), "SELECT * FROM devices", 2)
		if err != nil {
			t.Fatalf("QueryAll: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		var ids []string
		for _, it := range items {
			var v struct{ DeviceID string }
			_ = json.Unmarshal(it, &v)
			ids = append(ids, v.DeviceID)
		}
		if strings.Join(ids, ",") != "a,b,c" || strings.Join(conts, ",") != ",c1,c2" {
			t.Errorf("items %v via continuations %q", ids, conts)
		}
	})
	t.Run("repeated continuation is an error, not a loop", func(t *testing.T) {
		c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(headerContinuation, "same")
			fmt.Fprint(w, `[{"n":1}]`)
		})
		if _, err := c.QueryAll(context.Background(), "SELECT * FROM devices", 0); !errors.Is(err, ErrContinuationLoop) {
			t.Fatalf("err = %v, want ErrContinuationLoop", err)
		}
	})
	t.Run("error on a later page names the page", func(t *testing.T) {
		c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(headerContinuation) == "" {
				w.Header().Set(headerContinuation, "c1")
				fmt.Fprint(w, `[]`)
				return
			}
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"Message":"ErrorCode:ArgumentInvalid;bad continuation token"}`)
		})
		_, err := c.QueryAll(context.Background(), "SELECT * FROM devices", 0)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "page 2") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("body that is not an array", func(t *testing.T) {
		c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"items":[]}`) })
		if _, _, err := c.Query(context.Background(), "SELECT * FROM devices", 0, ""); err == nil {
			t.Fatal("no error for an object body")
		}
	})
	t.Run("null body is an empty page", func(t *testing.T) {
		c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `null`) })
		items, next, err := c.Query(context.Background(), "SELECT * FROM devices", 0, "")
		if err != nil || len(items) != 0 || next != "" || items == nil {
			t.Fatalf("Query = %v, %q, %v", items, next, err)
		}
	})
}

func TestBulkDevices(t *testing.T) {
	c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		var in []ExportImportDevice
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			t.Errorf("bulk body: %v", err)
		}
		switch in[0].ID {
		case "partial":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"isSuccessful":false,"errors":[{"deviceId":"partial","errorCode":"DeviceAlreadyExists","errorStatus":"exists"}],"warnings":[]}`)
		case "bad":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"Message":"ErrorCode:ArgumentInvalid;importMode"}`)
		default:
			fmt.Fprint(w, `{"isSuccessful":true,"errors":[],"warnings":[]}`)
		}
	})
	ctx := context.Background()
	r, err := c.BulkDevices(ctx, []ExportImportDevice{{ID: "ok", ImportMode: ImportCreate}})
	if err != nil || !r.IsSuccessful {
		t.Errorf("ok: %+v, %v", r, err)
	}
	r, err = c.BulkDevices(ctx, []ExportImportDevice{{ID: "partial", ImportMode: ImportCreate}})
	if err != nil || r.IsSuccessful || len(r.Errors) != 1 || r.Errors[0].ErrorCode != "DeviceAlreadyExists" {
		t.Errorf("partial: %+v, %v", r, err)
	}
	if _, err = c.BulkDevices(ctx, []ExportImportDevice{{ID: "bad", ImportMode: "x"}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("bad: err = %v", err)
	}
	if _, err = c.BulkDevices(ctx, nil); err == nil {
		t.Error("empty bulk: no error")
	}
	if _, err = c.BulkDevices(ctx, make([]ExportImportDevice, MaxBulkDevices+1)); err == nil {
		t.Error("oversized bulk: no error")
	}
}

func TestEventsStream(t *testing.T) {
	release := make(chan struct{})
	c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		checkAuth(t, r)
		if r.URL.Path != "/events" || r.URL.Query().Get("deviceId") != "pump-1" || r.URL.Query().Get("from") != "4" {
			t.Errorf("events request %s", r.URL)
		}
		if r.Header.Get("Accept") != "text/event-stream" {
			t.Errorf("Accept = %q", r.Header.Get("Accept"))
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		// One event split across writes, then a pause to prove Next returns
		// without waiting for the end of the response.
		fmt.Fprint(w, "event: telemetry\nid: 5\ndata: {\"seq\":5,")
		fl.Flush()
		fmt.Fprint(w, "\"deviceId\":\"pump-1\",\"body\":\"hi\"}\n\n")
		fl.Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.Events(ctx, "pump-1", 5)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	defer s.Close()
	ev, err := s.Next()
	if err != nil || ev.Seq != 5 || ev.Body != "hi" {
		t.Fatalf("Next = %+v, %v", ev, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Next()
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Next after cancel: no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after the context was cancelled")
	}
	close(release)
}

func TestEventsRefused(t *testing.T) {
	c := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("from") || r.URL.Query().Has("deviceId") {
			t.Errorf("unexpected parameters %s", r.URL.RawQuery)
		}
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}`)
	})
	if _, err := c.Events(context.Background(), "", 0); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
}

func TestNewAddress(t *testing.T) {
	cases := []struct {
		host, address, want string
	}{
		{"localhost", "", "localhost:8443"},
		{"hub.example.com", "", "hub.example.com:8443"},
		{"myhub.azure-devices.net", "", "myhub.azure-devices.net:443"},
		{"MyHub.Azure-Devices.Net", "", "MyHub.Azure-Devices.Net:443"},
		{"localhost:9443", "", "localhost:9443"},
		{"localhost", "127.0.0.1:1234", "127.0.0.1:1234"},
	}
	for _, tc := range cases {
		t.Run(tc.host+" "+tc.address, func(t *testing.T) {
			c, err := New(testCS(tc.host), Options{Address: tc.address})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.Address() != tc.want {
				t.Errorf("Address() = %q, want %q", c.Address(), tc.want)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	cases := []struct {
		name string
		cs   sas.ConnectionString
		opts Options
	}{
		{"device connection string", sas.ConnectionString{HostName: "h", DeviceID: "d", Key: testKey}, Options{}},
		{"no host", sas.ConnectionString{KeyName: "p", Key: testKey}, Options{}},
		{"address without port", testCS("h"), Options{Address: "127.0.0.1"}},
		{"missing CA file", testCS("h"), Options{CAFile: filepath.Join(t.TempDir(), "nope.pem")}},
		{"CA file without certificates", testCS("h"), Options{CAFile: writeFile(t, "garbage.pem", "not a pem")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cs, tc.opts); err == nil {
				t.Fatal("New: no error")
			}
		})
	}
}

// TestTLSVerifiesHostName checks that a certificate for the connection
// string's HostName verifies through --ca-file even though the client dials
// an IP address, and that a certificate for another name does not.
func TestTLSVerifiesHostName(t *testing.T) {
	caPEM, cert := testPKI(t, "localhost")
	caFile := writeFile(t, "ca.pem", string(caPEM))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"deviceId":"d1"}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	c, err := New(testCS("localhost"), Options{Address: addr, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDevice(context.Background(), "d1"); err != nil {
		t.Fatalf("GetDevice over TLS with the CA file: %v", err)
	}

	wrongName, err := New(testCS("other.example"), Options{Address: addr, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	var he x509.HostnameError
	if _, err := wrongName.GetDevice(context.Background(), "d1"); !errors.As(err, &he) {
		t.Errorf("certificate for another host name: err = %v, want x509.HostnameError", err)
	}

	noCA, err := New(testCS("localhost"), Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	var ua x509.UnknownAuthorityError
	if _, err := noCA.GetDevice(context.Background(), "d1"); !errors.As(err, &ua) {
		t.Errorf("without the CA file: err = %v, want x509.UnknownAuthorityError", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testPKI makes a CA and a server certificate for dnsName signed by it.
func testPKI(t *testing.T, dnsName string) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestIfMatch(t *testing.T) {
	for in, want := range map[string]string{"": `"*"`, "*": `"*"`, "abc=": `"abc="`, `"q"`: `"q"`, `W/"w"`: `W/"w"`} {
		if got := ifMatch(in); got != want {
			t.Errorf("ifMatch(%q) = %q, want %q", in, got, want)
		}
	}
}
