// Package bench measures localhub and the gateway with real processes.
// Run with `make bench`; figures go to docs/benchmarks.md.
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/testenv"
	"github.com/drover-iot/drover/test/harness"
)

const sharedKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

type hubClient struct {
	h     *harness.Hub
	http  *http.Client
	token string
}

func newHubClient(b *testing.B, h *harness.Hub) *hubClient {
	cs, err := sas.ParseConnectionString(h.OwnerConnectionString)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := sas.Sign(cs.HostName, cs.Key, cs.KeyName, time.Now().Add(4*time.Hour))
	tr := &http.Transport{TLSClientConfig: h.TLSConfig(b), MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	return &hubClient{h: h, http: &http.Client{Transport: tr, Timeout: 60 * time.Second}, token: tok}
}

func (c *hubClient) do(method, path string, body []byte) (int, []byte, error) {
	req, _ := http.NewRequest(method, "https://"+c.h.HTTPSAddr+path, bytes.NewReader(body))
	req.Header.Set("Authorization", c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// createDevices registers ids prefix-0..n-1 with one shared key, 100 per bulk call.
func (c *hubClient) createDevices(b *testing.B, prefix string, n int) []string {
	ids := make([]string, n)
	for i := 0; i < n; i += 100 {
		var batch []map[string]any
		for j := i; j < i+100 && j < n; j++ {
			ids[j] = fmt.Sprintf("%s-%05d", prefix, j)
			batch = append(batch, map[string]any{"id": ids[j], "importMode": "create",
				"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": sharedKey, "secondaryKey": sharedKey}}})
		}
		body, _ := json.Marshal(batch)
		st, resp, err := c.do("POST", "/devices?api-version=2021-04-12", body)
		if err != nil || st != 200 {
			b.Fatalf("bulk create: %d %v %s", st, err, resp)
		}
	}
	return ids
}

func connectDevice(b testing.TB, h *harness.Hub, tlsCfg interface{}, id string) mqtt.Client {
	tok, _ := sas.Sign(sas.DeviceResource(h.Hostname, id), sharedKey, "", time.Now().Add(4*time.Hour))
	o := mqtt.NewClientOptions().AddBroker("ssl://" + h.MQTTAddr).SetClientID(id).
		SetUsername(h.Hostname + "/" + id + "/?api-version=2021-04-12").SetPassword(tok).
		SetTLSConfig(h.TLSConfig(b)).SetProtocolVersion(4).SetAutoReconnect(false).
		SetKeepAlive(10 * time.Minute).SetConnectTimeout(30 * time.Second).SetOrderMatters(false)
	c := mqtt.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(60*time.Second) || t.Error() != nil {
		b.Fatalf("connect %s: %v", id, t.Error())
	}
	return c
}

// connectAll connects ids to h, 64 at a time so that the bench measures
// the hub rather than a queue of TLS handshakes in this process. clients[i]
// is nil where a connect failed; connected counts the others.
func connectAll(b testing.TB, h *harness.Hub, ids []string) (clients []mqtt.Client, connected int64) {
	clients = make([]mqtt.Client, len(ids))
	var ok atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, id string) {
			defer wg.Done()
			defer func() { <-sem }()
			clients[i] = connectDevice(b, h, nil, id)
			ok.Add(1)
		}(i, id)
	}
	wg.Wait()
	return clients, ok.Load()
}

// disconnectAll disconnects the clients connectAll connected.
func disconnectAll(clients []mqtt.Client) {
	for _, cl := range clients {
		if cl != nil {
			cl.Disconnect(0)
		}
	}
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	return l.d[min(len(l.d)-1, int(float64(len(l.d))*p))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(b *testing.B, name string, l *latencies, n int, el time.Duration) {
	p50, p99 := l.pct(0.50), l.pct(0.99)
	rate := float64(n) / el.Seconds()
	b.ReportMetric(ms(p50), "p50_ms")
	b.ReportMetric(ms(p99), "p99_ms")
	b.ReportMetric(rate, "ops/s")
	fmt.Printf("RESULT %-40s n=%-7d p50=%7.3fms p99=%7.3fms rate=%9.0f/s\n", name, n, ms(p50), ms(p99), rate)
}

// BenchmarkMethodRoundTrip: HTTPS invoke → hub → device over MQTT → reply → HTTPS response.
func BenchmarkMethodRoundTrip(b *testing.B) {
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	ids := c.createDevices(b, "m", 100)
	for _, id := range ids {
		cl := connectDevice(b, h, nil, id)
		defer cl.Disconnect(0)
		cl.Subscribe("$iothub/methods/POST/#", 0, func(cl mqtt.Client, m mqtt.Message) {
			_, q, _ := strings.Cut(m.Topic(), "?$rid=")
			cl.Publish("$iothub/methods/res/200/?$rid="+q, 0, false, m.Payload())
		}).Wait()
	}
	for _, conc := range []int{1, 100} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			perWorker := 3000
			if conc > 1 {
				perWorker = 300
			}
			body := []byte(`{"methodName":"ping","payload":{"n":1},"responseTimeoutInSeconds":30}`)
			// Warm up connections.
			for i := 0; i < conc; i++ {
				c.do("POST", "/twins/"+ids[i]+"/methods?api-version=2021-04-12", body)
			}
			var l latencies
			var fails atomic.Int64
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					path := "/twins/" + ids[w] + "/methods?api-version=2021-04-12"
					for i := 0; i < perWorker; i++ {
						t0 := time.Now()
						st, _, err := c.do("POST", path, body)
						if err != nil || st != 200 {
							fails.Add(1)
							continue
						}
						l.add(time.Since(t0))
					}
				}(w)
			}
			wg.Wait()
			el := time.Since(start)
			if f := fails.Load(); f > 0 {
				b.Fatalf("%d calls failed", f)
			}
			report(b, fmt.Sprintf("hub method round trip c=%d", conc), &l, conc*perWorker, el)
		})
	}
}

// BenchmarkMosquittoYardstick: request/reply through Debian's mosquitto broker (TLS), two clients per pair.
func BenchmarkMosquittoYardstick(b *testing.B) {
	bin := testenv.RequireTool(b, "mosquitto", "Debian mosquitto")
	h := harness.StartHub(b, "") // only for its CA and server certificate
	port := freePort(b)
	dir := b.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	tlsDir := filepath.Join(h.DataDir, "tls")
	os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nallow_anonymous true\nmax_queued_messages 100000\nuser root\n",
		port, filepath.Join(tlsDir, "ca.crt"), filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key"))), 0o600)
	mq := exec.Command(bin, "-c", conf)
	var stderr bytes.Buffer
	mq.Stderr = &stderr
	if err := mq.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { mq.Process.Kill(); mq.Wait() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitTCP(b, addr)
	conn := func(id string) mqtt.Client {
		o := mqtt.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(id).SetTLSConfig(h.TLSConfig(b)).
			SetProtocolVersion(4).SetAutoReconnect(false).SetOrderMatters(false)
		c := mqtt.NewClient(o)
		if t := c.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			b.Fatalf("connect to mosquitto: %v %s", t.Error(), stderr.String())
		}
		return c
	}
	for _, conc := range []int{1, 100} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			perWorker := 3000
			if conc > 1 {
				perWorker = 300
			}
			var l latencies
			var wg sync.WaitGroup
			begin := make(chan struct{})
			for w := 0; w < conc; w++ {
				resp := conn(fmt.Sprintf("resp-%d-%d", conc, w))
				reqC := conn(fmt.Sprintf("req-%d-%d", conc, w))
				reqTopic, resTopic := fmt.Sprintf("req/%d", w), fmt.Sprintf("res/%d", w)
				resp.Subscribe(reqTopic, 0, func(cl mqtt.Client, m mqtt.Message) { cl.Publish(resTopic, 0, false, m.Payload()) }).Wait()
				got := make(chan struct{}, 1)
				reqC.Subscribe(resTopic, 0, func(mqtt.Client, mqtt.Message) { got <- struct{}{} }).Wait()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer resp.Disconnect(0)
					defer reqC.Disconnect(0)
					<-begin
					for i := 0; i < perWorker; i++ {
						t0 := time.Now()
						reqC.Publish(reqTopic, 0, false, []byte(`{"n":1}`))
						select {
						case <-got:
							l.add(time.Since(t0))
						case <-time.After(10 * time.Second):
							return
						}
					}
				}()
			}
			start := time.Now()
			close(begin)
			wg.Wait()
			report(b, fmt.Sprintf("mosquitto request/reply c=%d", conc), &l, conc*perWorker, time.Since(start))
		})
	}
}

// BenchmarkReportedPatches: 1,000 connected devices patching reported properties, each with 4 patches in flight.
func BenchmarkReportedPatches(b *testing.B) {
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	const devices, window = 1000, 4
	dur := 10 * time.Second
	ids := c.createDevices(b, "r", devices)
	var total atomic.Int64
	var l latencies
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients := make([]mqtt.Client, devices)
	var cwg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, id := range ids {
		cwg.Add(1)
		sem <- struct{}{}
		go func(i int, id string) {
			defer cwg.Done()
			defer func() { <-sem }()
			clients[i] = connectDevice(b, h, nil, id)
		}(i, id)
	}
	cwg.Wait()
	start := time.Now()
	for i, cl := range clients {
		replies := make(chan time.Time, window)
		var sent sync.Map
		cl.Subscribe("$iothub/twin/res/#", 0, func(_ mqtt.Client, m mqtt.Message) {
			_, q, _ := strings.Cut(m.Topic(), "$rid=")
			rid, _, _ := strings.Cut(q, "&")
			if t0, ok := sent.LoadAndDelete(rid); ok {
				l.add(time.Since(t0.(time.Time)))
			}
			replies <- time.Now()
		}).Wait()
		wg.Add(1)
		go func(i int, cl mqtt.Client) {
			defer wg.Done()
			n := 0
			for k := 0; k < window; k++ {
				replies <- time.Now()
			}
			for {
				select {
				case <-stop:
					return
				case <-replies:
				}
				n++
				rid := strconv.Itoa(n)
				sent.Store(rid, time.Now())
				cl.Publish("$iothub/twin/PATCH/properties/reported/?$rid="+rid, 0, false, []byte(fmt.Sprintf(`{"temperature":%d,"pressure":%d.5,"status":"ok"}`, n, i)))
				total.Add(1)
			}
		}(i, cl)
	}
	time.Sleep(dur) // the measurement window itself, not synchronisation
	close(stop)
	wg.Wait()
	el := time.Since(start)
	for _, cl := range clients {
		cl.Disconnect(0)
	}
	report(b, "reported patches, 1000 devices", &l, int(total.Load()), el)
}

// BenchmarkDesiredNotification: service PATCH of desired → notification at the device.
func BenchmarkDesiredNotification(b *testing.B) {
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	ids := c.createDevices(b, "d", 50)
	got := make([]chan time.Time, len(ids))
	for i, id := range ids {
		got[i] = make(chan time.Time, 16)
		cl := connectDevice(b, h, nil, id)
		defer cl.Disconnect(0)
		ch := got[i]
		cl.Subscribe("$iothub/twin/PATCH/properties/desired/#", 0, func(mqtt.Client, mqtt.Message) { ch <- time.Now() }).Wait()
	}
	var l latencies
	n := 2000
	start := time.Now()
	for i := 0; i < n; i++ {
		k := i % len(ids)
		t0 := time.Now()
		st, resp, err := c.do("PATCH", "/twins/"+ids[k]+"?api-version=2021-04-12", []byte(fmt.Sprintf(`{"properties":{"desired":{"setpoint":%d}}}`, i)))
		if err != nil || st != 200 {
			b.Fatalf("patch: %d %v %s", st, err, resp)
		}
		select {
		case t1 := <-got[k]:
			l.add(t1.Sub(t0))
		case <-time.After(10 * time.Second):
			b.Fatal("no desired notification")
		}
	}
	report(b, "desired PATCH -> device notification", &l, n, time.Since(start))
}

// BenchmarkConnectionsHeld: how many device sessions one hub holds (target 10,000).
func BenchmarkConnectionsHeld(b *testing.B) {
	n := 10000
	if s := os.Getenv("DROVER_BENCH_CONNECTIONS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	ids := c.createDevices(b, "c", n)
	start := time.Now()
	clients, connected := connectAll(b, h, ids)
	el := time.Since(start)
	_, stats, _ := c.do("GET", "/statistics/service?api-version=2021-04-12", nil)
	rss := rssMB(h.Cmd.Process.Pid)
	fmt.Printf("RESULT %-40s connected=%d in %.1fs (%.0f/s) hub RSS=%.0f MB statistics=%s\n", "connections held", connected, el.Seconds(), float64(connected)/el.Seconds(), rss, bytes.TrimSpace(stats))
	b.ReportMetric(float64(connected), "connections")
	b.ReportMetric(rss, "hub_rss_MB")
	disconnectAll(clients)
}

func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			kb, _ := strconv.ParseFloat(f[0], 64)
			return kb / 1024
		}
	}
	return 0
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitTCP(b *testing.B, addr string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond) // no readiness event from mosquitto: poll the port with a deadline
	}
	b.Fatalf("%s not listening", addr)
}
