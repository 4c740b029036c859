package localhub_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/metricstest"
	"github.com/drover-iot/drover/localhub/hubtest"
)

// TestMetricsUnderKnownLoad scrapes the hub's /metrics with Prometheus's text
// parser after a known load: N devices connected, refused connections,
// telemetry, reported patches, method calls, queries, tag and desired writes
// and a job, and checks each instrument against it.
func TestMetricsUnderKnownLoad(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	scrape := func() metricstest.Families {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: env.TLSConfig()}, Timeout: 30 * time.Second}
		return metricstest.Scrape(t, c, "https://"+env.HTTPSAddr+"/metrics")
	}
	m := scrape()
	m.Want(t, 0, "localhub_connected_devices")
	m.Want(t, 0, "localhub_device_connects_total")
	m.Want(t, 0, "localhub_jobs", "status", "completed")

	const n = 4
	var devs []*hubtest.Device
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("m-%d", i)
		d := env.CreateDevice(t, id)
		devs = append(devs, env.Connect(t, id, d.PrimaryKey))
	}
	if _, err := env.TryConnect("m-0", "SharedAccessSignature sr=x&sig=bad&se=1"); err == nil {
		t.Fatal("bad token accepted")
	}
	if _, err := env.TryConnect("nobody", "not a token"); err == nil {
		t.Fatal("bad password accepted")
	}
	for i := 0; i < 3; i++ {
		if err := devs[0].Publish("devices/m-0/messages/events/", 1, []byte(`{"t":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := devs[1].Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", 1, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	devs[1].Await(t, "$iothub/twin/res/#", 10*time.Second)
	answerMethods(t, devs[2], 200, func(string, []byte) string { return `{}` })
	for i := 0; i < 2; i++ {
		a.must(200, "POST", "/twins/m-2/methods", `{"methodName":"ping","responseTimeoutInSeconds":10}`)
	}
	a.must(504, "POST", "/twins/m-3/methods", `{"methodName":"ping","responseTimeoutInSeconds":1}`) // m-3 never answers
	a.must(404, "POST", "/twins/nobody/methods", `{"methodName":"ping"}`)                           // no such device: never reaches a session
	a.must(200, "PATCH", "/twins/m-1", `{"tags":{"site":"a"},"properties":{"desired":{"x":1}}}`)
	a.must(200, "POST", "/devices/query", `{"query":"SELECT * FROM devices"}`)
	a.must(200, "PUT", "/jobs/v2/j1", `{"type":"scheduleUpdateTwin","queryCondition":"deviceId = 'm-0'","updateTwin":{"properties":{"desired":{"y":2}}}}`)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if a.must(200, "GET", "/jobs/v2/j1", "").json(t)["status"] == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("job did not complete")
		}
		time.Sleep(20 * time.Millisecond) // polling the hub's answer
	}

	m = scrape()
	m.Want(t, n, "localhub_connected_devices")
	m.Want(t, n, "localhub_device_connects_total")
	m.Want(t, 2, "localhub_device_auth_failures_total")
	m.Want(t, 3, "localhub_messages_in_total", "kind", "telemetry")
	m.Want(t, 1, "localhub_messages_in_total", "kind", "reported_patch")
	m.Want(t, 2, "localhub_messages_in_total", "kind", "method_response")
	m.Want(t, 2, "localhub_method_calls_total", "result", "ok")
	m.Want(t, 1, "localhub_method_calls_total", "result", "timeout")
	m.Want(t, 3, "localhub_method_duration_seconds")
	m.Want(t, 1, "localhub_twin_updates_total", "section", "tags")
	m.Want(t, 2, "localhub_twin_updates_total", "section", "desired") // the PATCH and the job
	m.Want(t, 1, "localhub_twin_updates_total", "section", "reported")
	m.Want(t, 1, "localhub_jobs", "status", "completed")
	m.Want(t, 0, "localhub_jobs", "status", "running")
	if q, _ := m.Value("localhub_query_duration_seconds"); q < 1 {
		t.Errorf("query histogram count %v, want ≥ 1", q)
	}
	if c, _ := m.Value("localhub_sqlite_commit_duration_seconds"); c < 5 {
		t.Errorf("commit histogram count %v, want ≥ 5 (connects, telemetry, twin writes)", c)
	}
	if _, ok := m.Value("go_goroutines"); !ok {
		t.Error("no Go runtime metrics")
	}

	devs[3].Client.Disconnect(100)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if v, _ := scrape().Value("localhub_connected_devices"); v == n-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connected gauge did not fall to %d after a disconnect", n-1)
		}
		time.Sleep(20 * time.Millisecond) // polling the scrape
	}
}
