package bench

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // seeding reported properties, index variants

	"github.com/drover-iot/drover/localhub/query"
	"github.com/drover-iot/drover/test/harness"
)

// fleetSize is the fleet of issue 5's targets (DROVER_BENCH_FLEET overrides).
func fleetSize() int {
	if s := os.Getenv("DROVER_BENCH_FLEET"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 100_000
}

// importJSONL is n create lines with tags, keys left to the hub.
func importJSONL(n int) []byte {
	var b bytes.Buffer
	envs := []string{"prod", "dev", "staging"}
	for i := range n {
		fmt.Fprintf(&b, `{"id":"fleet-%06d","importMode":"create","status":"enabled","tags":{"location":{"region":"region-%d","building":"%d"},"env":%q,"floor":%d}}`+"\n",
			i, i%100, i%37, envs[i%3], i%20)
	}
	return b.Bytes()
}

func (c *hubClient) doHeader(method, path string, body []byte, hdr ...string) (int, http.Header, []byte, error) {
	req, _ := http.NewRequest(method, "https://"+c.h.HTTPSAddr+path, bytes.NewReader(body))
	req.Header.Set("Authorization", c.token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

type benchJob struct {
	JobID          string `json:"jobId"`
	Status         string `json:"status"`
	DeviceCount    int    `json:"deviceCount"`
	ProcessedCount int    `json:"processedCount"`
	FailedCount    int    `json:"failedCount"`
	FailureReason  string `json:"failureReason"`
}

// awaitJob polls an import/export job (no change feed exists) every 50 ms.
func (c *hubClient) awaitJob(b *testing.B, id string) benchJob {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, body, err := c.do("GET", "/jobs/"+id+"?api-version=2021-04-12", nil)
		if err != nil || st != 200 {
			b.Fatalf("get job: %d %v %s", st, err, body)
		}
		var j benchJob
		json.Unmarshal(body, &j)
		switch j.Status {
		case "completed", "failed", "cancelled":
			return j
		}
		if time.Now().After(deadline) {
			b.Fatalf("job %s: %+v after 10 minutes", id, j)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a job without events
	}
}

// BenchmarkFleet measures issue 5 through a real hub process over HTTPS:
// import of 100,000 identities, their export, and queries over the
// 100,000 twins (a tag filter, a GROUP BY on a reported status) without
// indexes, with the indexes the schema ships, and with a tag index added.
func BenchmarkFleet(b *testing.B) {
	n := fleetSize()
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	input := importJSONL(n)

	// Import.
	start := time.Now()
	st, body, err := func() (int, []byte, error) {
		st, _, body, err := c.doHeader("POST", "/jobs/create?api-version=2021-04-12", input, "Content-Type", "application/x-ndjson")
		return st, body, err
	}()
	if err != nil || st != 200 {
		b.Fatalf("start import: %d %v %s", st, err, body)
	}
	uploaded := time.Since(start)
	var j benchJob
	json.Unmarshal(body, &j)
	j = c.awaitJob(b, j.JobID)
	el := time.Since(start)
	if j.Status != "completed" || j.FailedCount != 0 || j.ProcessedCount != n {
		b.Fatalf("import job %+v", j)
	}
	b.ReportMetric(el.Seconds(), "import_s")
	fmt.Printf("RESULT %-40s n=%-7d %.1f s (upload of %.1f MB %.2f s), %.0f identities/s\n", "import identities (HTTPS, job)", n, el.Seconds(),
		float64(len(input))/1e6, uploaded.Seconds(), float64(n)/el.Seconds())

	// Export.
	start = time.Now()
	st, body, err = c.do("POST", "/jobs/create?api-version=2021-04-12", []byte(`{"type":"export"}`))
	if err != nil || st != 200 {
		b.Fatalf("start export: %d %v %s", st, err, body)
	}
	json.Unmarshal(body, &j)
	j = c.awaitJob(b, j.JobID)
	st, out, err := c.do("GET", "/jobs/importExport/"+j.JobID+"/output?api-version=2021-04-12", nil)
	el = time.Since(start)
	if err != nil || st != 200 || bytes.Count(out, []byte("\n")) != n {
		b.Fatalf("export output: %d %v, %d lines", st, err, bytes.Count(out, []byte("\n")))
	}
	fmt.Printf("RESULT %-40s n=%-7d %.1f s (%.1f MB downloaded), %.0f identities/s\n", "export identities (HTTPS, job)", n, el.Seconds(),
		float64(len(out))/1e6, float64(n)/el.Seconds())

	// Reported statuses come from devices over MQTT; 100,000 sessions are
	// not the point here, so the fixture writes them into the hub's
	// database directly (the hub reads them as it would any twin).
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.DataDir, "hub.db")+"?_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE devices SET reported = json_object('status',
		CASE CAST(substr(device_id, 7) AS INTEGER) % 5 WHEN 0 THEN 'Success' WHEN 1 THEN 'Pending' WHEN 2 THEN 'Error' WHEN 3 THEN 'Unknown' ELSE NULL END,
		'battery', CAST(substr(device_id, 7) AS INTEGER) % 101)`); err != nil {
		b.Fatal(err)
	}

	queries := []struct{ name, q, page string }{
		{"tag filter, first page of 100", `SELECT * FROM devices WHERE tags.location.region = 'region-42'`, "100"},
		{"tag filter, all 1,000 twins", `SELECT * FROM devices WHERE tags.location.region = 'region-42'`, "1000"},
		{"tag filter COUNT()", `SELECT COUNT() AS n FROM devices WHERE tags.location.region = 'region-42'`, "100"},
		{"GROUP BY reported status", `SELECT properties.reported.status AS status, COUNT() AS n FROM devices GROUP BY properties.reported.status`, "100"},
		{"reported status filter COUNT()", `SELECT COUNT() AS n FROM devices WHERE properties.reported.status = 'Error'`, "100"},
	}
	region, err := query.IndexFor("tags.location.region")
	if err != nil {
		b.Fatal(err)
	}
	status, err := query.IndexFor("properties.reported.status")
	if err != nil {
		b.Fatal(err)
	}
	variants := []struct{ name, ddl string }{
		{"schema indexes", ""},
		{"no index", "DROP INDEX IF EXISTS devices_reported_status; DROP INDEX IF EXISTS devices_reported_status_group"},
		{"schema + tag index", "CREATE INDEX IF NOT EXISTS devices_reported_status ON devices(" + status.Filter + ");" +
			"CREATE INDEX IF NOT EXISTS devices_reported_status_group ON devices(" + strings.Join(status.GroupBy, ", ") + ");" +
			"CREATE INDEX IF NOT EXISTS bench_region ON devices(" + region.Filter + ")"},
	}
	for _, v := range variants {
		if v.ddl != "" {
			if _, err := db.Exec(v.ddl); err != nil {
				b.Fatalf("%s: %v", v.ddl, err)
			}
		}
		for _, q := range queries {
			body, _ := json.Marshal(map[string]string{"query": q.q})
			var l latencies
			const runs = 15
			var items int
			for i := range runs + 2 {
				t0 := time.Now()
				st, _, resp, err := c.doHeader("POST", "/devices/query?api-version=2021-04-12", body, "x-ms-max-item-count", q.page)
				d := time.Since(t0)
				if err != nil || st != 200 {
					b.Fatalf("%s: %d %v %s", q.name, st, err, resp)
				}
				var arr []json.RawMessage
				json.Unmarshal(resp, &arr)
				items = len(arr)
				if i >= 2 { // two warm-up runs
					l.add(d)
				}
			}
			fmt.Printf("RESULT %-30s %-32s items=%-5d p50=%8.2fms p99=%8.2fms\n", v.name, q.name, items, ms(l.pct(0.5)), ms(l.pct(0.99)))
		}
	}
}

// twinJob is the part of a Jobs v2 response the twin-job benchmark reads.
type twinJob struct {
	JobID         string `json:"jobId"`
	Status        string `json:"status"`
	FailureReason string `json:"failureReason"`
	StatusMessage string `json:"statusMessage"`
	StartTime     string `json:"startTime"`
	EndTime       string `json:"endTime"`
	Stats         struct {
		DeviceCount    int `json:"deviceCount"`
		FailedCount    int `json:"failedCount"`
		SucceededCount int `json:"succeededCount"`
		RunningCount   int `json:"runningCount"`
		PendingCount   int `json:"pendingCount"`
	} `json:"deviceJobStatistics"`
}

// awaitTwinJob polls GET /jobs/v2/{id} (a job has no change feed) every
// 10 ms until the job is terminal.
func (c *hubClient) awaitTwinJob(b *testing.B, id string) twinJob {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st, body, err := c.do("GET", "/jobs/v2/"+id+"?api-version=2021-04-12", nil)
		if err != nil || st != 200 {
			b.Fatalf("get job %s: %d %v %s", id, st, err, body)
		}
		var j twinJob
		if err := json.Unmarshal(body, &j); err != nil {
			b.Fatalf("job %s: %v in %s", id, err, body)
		}
		switch j.Status {
		case "completed", "failed", "cancelled":
			return j
		}
		if time.Now().After(deadline) {
			b.Fatalf("job %s: %+v after 5 minutes", id, j)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a job without events
	}
}

// BenchmarkTwinJob10k measures issue 5's twin-update job target (< 5 s)
// through a real hub process over HTTPS: 10,000 identities are imported
// (tags included, none connected, so every twin is written and none is
// notified), then each iteration runs a scheduleUpdateTwin job over all of
// them (tags and desired patch) and times PUT /jobs/v2/{id} to status
// completed with succeededCount 10,000 (DROVER_BENCH_TWINJOB_DEVICES
// overrides the fleet).
func BenchmarkTwinJob10k(b *testing.B) {
	n := 10_000
	if s := os.Getenv("DROVER_BENCH_TWINJOB_DEVICES"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)

	st, _, body, err := c.doHeader("POST", "/jobs/create?api-version=2021-04-12", importJSONL(n), "Content-Type", "application/x-ndjson")
	if err != nil || st != 200 {
		b.Fatalf("start import: %d %v %s", st, err, body)
	}
	var imp benchJob
	json.Unmarshal(body, &imp)
	if imp = c.awaitJob(b, imp.JobID); imp.Status != "completed" || imp.ProcessedCount != n || imp.FailedCount != 0 {
		b.Fatalf("import job %+v", imp)
	}

	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("twinjob-%d", i)
		req, _ := json.Marshal(map[string]any{
			"jobId":          id,
			"type":           "scheduleUpdateTwin",
			"queryCondition": "*",
			"updateTwin": map[string]any{
				"etag": "*",
				"tags": map[string]any{"rollout": map[string]any{"wave": i + 1}},
				"properties": map[string]any{"desired": map[string]any{
					"firmware":                 map[string]any{"version": fmt.Sprintf("2.%d.0", i)},
					"telemetryIntervalSeconds": 30 + i,
				}},
			},
			"maxExecutionTimeInSeconds": 600,
		})
		start := time.Now()
		st, resp, err := c.do("PUT", "/jobs/v2/"+id+"?api-version=2021-04-12", req)
		if err != nil || st != 200 {
			b.Fatalf("create job: %d %v %s", st, err, resp)
		}
		accepted := time.Since(start)
		j := c.awaitTwinJob(b, id)
		el := time.Since(start)
		total += el
		if j.Status != "completed" || j.Stats.SucceededCount != n || j.Stats.FailedCount != 0 || j.Stats.DeviceCount != n {
			b.Fatalf("job %s ended %s (%s %s): %+v", id, j.Status, j.FailureReason, j.StatusMessage, j.Stats)
		}
		// The patch is in the twins (first and last device).
		b.StopTimer()
		for _, dev := range []string{fmt.Sprintf("fleet-%06d", 0), fmt.Sprintf("fleet-%06d", n-1)} {
			st, tw, err := c.do("GET", "/twins/"+dev+"?api-version=2021-04-12", nil)
			if err != nil || st != 200 {
				b.Fatalf("get twin %s: %d %v %s", dev, st, err, tw)
			}
			var got struct {
				Tags struct {
					Rollout struct {
						Wave int `json:"wave"`
					} `json:"rollout"`
				} `json:"tags"`
				Properties struct {
					Desired struct {
						Interval int `json:"telemetryIntervalSeconds"`
					} `json:"desired"`
				} `json:"properties"`
			}
			json.Unmarshal(tw, &got)
			if got.Tags.Rollout.Wave != i+1 || got.Properties.Desired.Interval != 30+i {
				b.Fatalf("twin %s after job %s: %s", dev, id, tw)
			}
		}
		b.StartTimer()
		var hub time.Duration
		if t0, err := time.Parse(time.RFC3339Nano, j.StartTime); err == nil {
			if t1, err := time.Parse(time.RFC3339Nano, j.EndTime); err == nil {
				hub = t1.Sub(t0)
			}
		}
		fmt.Printf("RESULT %-40s n=%-7d %.2f s PUT→completed (PUT answered in %.1f ms; hub startTime→endTime %.2f s), %.0f devices/s\n",
			"twin-update job (HTTPS, jobs v2)", n, el.Seconds(), ms(accepted), hub.Seconds(), float64(n)/el.Seconds())
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "job_s")
}
