package localhub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub/hubtest"
)

// api is a small REST client for tests: real HTTPS, real SAS tokens.
type api struct {
	t     *testing.T
	env   *hubtest.Env
	http  *http.Client
	token string
}

func newAPI(t *testing.T, env *hubtest.Env) *api {
	cs, err := sas.ParseConnectionString(env.OwnerConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	return &api{t: t, env: env, http: &http.Client{Transport: &http.Transport{TLSClientConfig: env.TLSConfig()}, Timeout: 60 * time.Second},
		token: env.ServiceToken(t, cs.KeyName, cs.Key, time.Hour)}
}

// as returns a copy of a that signs with another policy.
func (a *api) as(policy string) *api {
	p, err := a.env.Hub.Store().Policy(context.Background(), policy)
	if err != nil {
		a.t.Fatal(err)
	}
	b := *a
	b.token = a.env.ServiceToken(a.t, p.Name, p.PrimaryKey, time.Hour)
	return &b
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// errorCode extracts Azure's "ErrorCode:<Name>;" from an error body.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	msg, _ := m["Message"].(string)
	if !strings.HasPrefix(msg, "ErrorCode:") {
		t.Fatalf("error body is not in Azure's shape: %s", r.Body)
	}
	code, _, _ := strings.Cut(strings.TrimPrefix(msg, "ErrorCode:"), ";")
	return code
}

func (a *api) do(method, path string, body any, hdr ...string) response {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, "https://"+a.env.HTTPSAddr+path+sep+"api-version=2021-04-12", rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", a.token)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (a *api) must(status int, method, path string, body any, hdr ...string) response {
	a.t.Helper()
	r := a.do(method, path, body, hdr...)
	if r.Status != status {
		a.t.Fatalf("%s %s: got %d, want %d: %s", method, path, r.Status, status, r.Body)
	}
	return r
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// queryIDs runs a query and returns the deviceIds of all pages, following continuations.
func (a *api) queryIDs(q string) []string {
	a.t.Helper()
	var ids []string
	cont := ""
	for {
		hdr := []string{"x-ms-max-item-count", "7"}
		if cont != "" {
			hdr = append(hdr, "x-ms-continuation", cont)
		}
		r := a.must(200, "POST", "/devices/query", map[string]string{"query": q}, hdr...)
		var items []map[string]any
		decode(a.t, r.Body, &items)
		for _, it := range items {
			ids = append(ids, it["deviceId"].(string))
		}
		cont = r.Header.Get("x-ms-continuation")
		if cont == "" {
			return ids
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
