package bench

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/test/harness"
)

// consoleClient is a browser stand-in: cookies, keep-alive, no redirects followed.
type consoleClient struct {
	base string
	http *http.Client
}

var benchCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInConsole signs in to the hub's console as iothubowner.
func signInConsole(b *testing.B, h *harness.Hub, c *hubClient) *consoleClient {
	jar, _ := cookiejar.New(nil)
	cc := &consoleClient{base: "https://" + h.HTTPSAddr, http: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: h.TLSConfig(b)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	st, body := cc.get(b, "/ui/signin")
	m := benchCSRF.FindStringSubmatch(body)
	if st != 200 || m == nil {
		b.Fatalf("sign-in page: %d", st)
	}
	key := strings.TrimPrefix(h.OwnerConnectionString[strings.Index(h.OwnerConnectionString, "SharedAccessKey="):], "SharedAccessKey=")
	resp, err := cc.http.PostForm(cc.base+"/ui/signin", url.Values{"csrf": {m[1]}, "policy": {"iothubowner"}, "key": {key}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign in: %d", resp.StatusCode)
	}
	return cc
}

func (cc *consoleClient) get(b *testing.B, path string) (int, string) {
	resp, err := cc.http.Get(cc.base + path)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// BenchmarkConsoleFleet100k times the console's fleet page (a COUNT() and
// four GROUP BY queries, rendered) on a hub process with 100,000 twins:
// identities imported over HTTPS, then reported connection and firmware
// states and gateway scopes written into the database directly, as in
// BenchmarkFleet. The time is the client's over a kept-alive loopback
// connection, an upper bound of the server time.
func BenchmarkConsoleFleet100k(b *testing.B) {
	n := fleetSize()
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	st, _, body, err := c.doHeader("POST", "/jobs/create?api-version=2021-04-12", importJSONL(n), "Content-Type", "application/x-ndjson")
	if err != nil || st != 200 {
		b.Fatalf("start import: %d %v %s", st, err, body)
	}
	var j benchJob
	if err := json.Unmarshal(body, &j); err != nil {
		b.Fatal(err)
	}
	if j = c.awaitJob(b, j.JobID); j.Status != "completed" || j.ProcessedCount != n {
		b.Fatalf("import job %+v", j)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.DataDir, "hub.db")+"?_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	// 100 gateways of 1,000 devices each; field connection and firmware states spread over five values.
	if _, err := db.Exec(`UPDATE devices SET
		device_scope = 'ms-azure-iot-edge://gw-' || (CAST(substr(device_id, 7) AS INTEGER) / 1000) || '-638000000000000000',
		reported = json_object(
			'connection', json_object('state', CASE CAST(substr(device_id, 7) AS INTEGER) % 5 WHEN 0 THEN 'offline' WHEN 1 THEN 'backoff' ELSE 'online' END),
			'firmware', json_object('status', CASE CAST(substr(device_id, 7) AS INTEGER) % 7 WHEN 0 THEN 'downloading' WHEN 1 THEN 'failed' ELSE 'current' END))`); err != nil {
		b.Fatal(err)
	}
	cc := signInConsole(b, h, c)
	var l latencies
	var size int
	const runs = 20
	for i := range runs + 2 {
		t0 := time.Now()
		st, page := cc.get(b, "/ui/fleet")
		d := time.Since(t0)
		if st != 200 || !strings.Contains(page, fmt.Sprintf(`data-count="%d"`, n)) {
			b.Fatalf("fleet page: %d, total not %d", st, n)
		}
		size = len(page)
		if i >= 2 { // two warm-up runs
			l.add(d)
		}
	}
	b.ReportMetric(ms(l.pct(0.5)), "fleet_p50_ms")
	fmt.Printf("RESULT %-40s twins=%d p50=%.1fms p99=%.1fms page=%d bytes (target < 300 ms)\n", "console fleet page", n, ms(l.pct(0.5)), ms(l.pct(0.99)), size)
}

// BenchmarkMetricsScrape10k measures GET /metrics on a hub process holding
// 10,000 device sessions (DROVER_BENCH_CONNECTIONS overrides): the time of a
// scrape and its size, against a scrape of the idle hub.
func BenchmarkMetricsScrape10k(b *testing.B) {
	n := envInt("DROVER_BENCH_CONNECTIONS", 10000)
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	scrape := func(what string) {
		var l latencies
		size := 0
		const runs = 50
		for i := range runs + 2 {
			t0 := time.Now()
			st, body, err := c.do("GET", "/metrics", nil)
			d := time.Since(t0)
			if err != nil || st != 200 {
				b.Fatalf("scrape: %d %v", st, err)
			}
			size = len(body)
			if i >= 2 {
				l.add(d)
			}
		}
		fmt.Printf("RESULT %-40s p50=%.2fms p99=%.2fms size=%d bytes hub RSS=%.0f MB\n", "metrics scrape, "+what, ms(l.pct(0.5)), ms(l.pct(0.99)), size, rssMB(h.Cmd.Process.Pid))
		b.ReportMetric(ms(l.pct(0.5)), "scrape_p50_ms_"+strings.ReplaceAll(what, " ", "_"))
	}
	scrape("idle hub")
	ids := c.createDevices(b, "m", n)
	clients, connected := connectAll(b, h, ids)
	_, body, _ := c.do("GET", "/metrics", nil)
	if !strings.Contains(string(body), fmt.Sprintf("localhub_connected_devices %d\n", connected)) {
		b.Fatalf("connected gauge is not %d", connected)
	}
	scrape(fmt.Sprintf("%d connected", connected))
	disconnectAll(clients)
}
