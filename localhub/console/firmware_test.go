package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/store"
)

type onePolicy struct{}

func (onePolicy) Policy(_ context.Context, name string) (store.Policy, error) {
	return store.Policy{Name: name, Rights: []store.Right{store.RegistryRead, store.ServiceConnect}}, nil
}

// TestFirmwarePage renders the firmware page over an API that has the
// firmware routes (images in the shape GET /firmware/images answers) and
// over one that has not (404: "not available yet").
func TestFirmwarePage(t *testing.T) {
	images := `[{"id":"acme/pump-fw/2.1.0","updateId":{"provider":"acme","name":"pump-fw","version":"2.1.0"},
		"compatibility":[{"manufacturer":"Acme","model":"P-100"}],"file":{"name":"pump-2.1.0.bin","size":65536,"sha256":"` + strings.Repeat("ab", 32) + `"},
		"uploadedTime":"2026-12-06T01:00:00Z"}]`
	jobs := `[{"jobId":"fw-21","type":"scheduleUpdateTwin","status":"running","queryCondition":"tags.site = 'plant1'",
		"updateTwin":{"properties":{"desired":{"firmware":{"version":"2.1.0"}}}},"deviceJobStatistics":{"deviceCount":10,"succeededCount":4}},
		{"jobId":"setpoints","type":"scheduleUpdateTwin","status":"completed","queryCondition":"*",
		"updateTwin":{"properties":{"desired":{"config":{"setpoint":20}}}},"deviceJobStatistics":{"deviceCount":3}}]`
	for _, tc := range []struct {
		name      string
		firmware  bool
		want, not []string
	}{
		{"with firmware routes", true, []string{"pump-fw", "2.1.0", "Acme P-100", "65536", `href="/ui/jobs/fw-21"`}, []string{"firmware-unavailable", "setpoints"}},
		{"without", false, []string{`id="firmware-unavailable"`}, []string{"firmware-images"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := http.NewServeMux()
			signed := func(h http.HandlerFunc) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if tok, err := sas.Parse(r.Header.Get("Authorization")); err != nil || tok.KeyName != "iothubowner" {
						http.Error(w, `{"Message":"unsigned"}`, http.StatusUnauthorized)
						return
					}
					h(w, r)
				}
			}
			if tc.firmware {
				api.HandleFunc("GET /firmware/images", signed(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, images) }))
			}
			api.HandleFunc("GET /jobs/v2/query", signed(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, jobs) }))
			api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, `{"Message":"ErrorCode:NotFound;no route"}`, http.StatusNotFound)
			})
			c, err := New(Options{API: api, Hostname: "localhost", Policies: onePolicy{}})
			if err != nil {
				t.Fatal(err)
			}
			cs := sas.ConnectionString{HostName: "localhost", KeyName: "iothubowner", Key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
			cl, err := serviceclient.New(cs, serviceclient.Options{Address: "console.invalid:443", HTTPClient: &http.Client{Transport: handlerTransport{h: api}}})
			if err != nil {
				t.Fatal(err)
			}
			s := &session{id: "sid", csrf: "tok", policy: "iothubowner", rights: map[store.Right]bool{store.RegistryRead: true, store.ServiceConnect: true},
				client: cl, cs: cs, expires: c.now().Add(DefaultSessionTTL)}
			c.sessions[s.id] = s
			req := httptest.NewRequest("GET", "https://localhost/ui/firmware", nil)
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: s.id})
			rec := httptest.NewRecorder()
			c.Handler().ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("page shows %q", n)
				}
			}
		})
	}
}
