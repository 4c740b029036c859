package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/upstream"
	"github.com/drover-iot/drover/test/harness"
)

// Knobs of BenchmarkGatewayRSS250, all optional (defaults in brackets):
//
//	DROVER_BENCH_GW_DEVICES   devices bridged [250]
//	DROVER_BENCH_GW_PER_BUS   devices per Modbus TCP bus, one devsim process each [50]
//	DROVER_BENCH_GW_CHILDREN  0: no children key, so children get no hub connection [1]
//	DROVER_BENCH_GW_ENV       extra environment for gateway and plugin, e.g. "GOGC=50 GOMEMLIMIT=24MiB"
//	DROVER_BENCH_GW_SETTLE    settle time after all devices are online [30s]
//	DROVER_BENCH_GW_WINDOW    steady window for the CPU figure [30s]
//	DROVER_BENCH_GW_STDERR    file to save the gateway's stderr in at the end
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func benchRepoRoot() string { return harness.RepoRoot() }

// procSample is what /proc says about one process at one instant.
type procSample struct {
	pid                       int
	rssKB, anonKB, fileKB     int64
	hwmKB                     int64
	threads                   int64
	cpuTicks                  int64 // utime + stime, in clock ticks (USER_HZ = 100 on Linux)
	smapsPrivKB, smapsShareKB int64
}

// anonByMapping lists the largest anonymous resident mappings of a
// process (start address, size, anonymous KB): Go's heap arenas are 64 MB
// reservations, C malloc arenas 64 MB (128 MB) ones, thread stacks 8 MB,
// "[heap]" is the brk heap of malloc's main arena.
func anonByMapping(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return err.Error()
	}
	type mapping struct {
		name       string
		size, anon int64
	}
	var ms []mapping
	var cur *mapping
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			r := strings.SplitN(f[0], "-", 2)
			lo, _ := strconv.ParseUint(r[0], 16, 64)
			hi, _ := strconv.ParseUint(r[1], 16, 64)
			name := r[0]
			if len(f) >= 6 {
				name = f[5]
			}
			ms = append(ms, mapping{name: name, size: int64(hi-lo) / 1024})
			cur = &ms[len(ms)-1]
			continue
		}
		if cur != nil && len(f) >= 2 && f[0] == "Anonymous:" {
			cur.anon, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].anon > ms[j].anon })
	var out []string
	for _, m := range ms[:min(8, len(ms))] {
		out = append(out, fmt.Sprintf("%s(%dK)=%dK", m.name, m.size, m.anon))
	}
	return strings.Join(out, " ")
}

func sampleProc(pid int) (procSample, error) {
	s := procSample{pid: pid}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.rssKB = n
		case "RssAnon":
			s.anonKB = n
		case "RssFile":
			s.fileKB = n
		case "VmHWM":
			s.hwmKB = n
		case "Threads":
			s.threads = n
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// Fields after the command name (which may hold spaces) start at field 3 (state).
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	if len(f) > 12 {
		ut, _ := strconv.ParseInt(f[11], 10, 64)  // field 14
		stt, _ := strconv.ParseInt(f[12], 10, 64) // field 15
		s.cpuTicks = ut + stt
	}
	if sr, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		for _, l := range strings.Split(string(sr), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			n, _ := strconv.ParseInt(f[0], 10, 64)
			switch k {
			case "Private_Clean", "Private_Dirty":
				s.smapsPrivKB += n
			case "Shared_Clean", "Shared_Dirty":
				s.smapsShareKB += n
			}
		}
	}
	return s, nil
}

func childPID(parent int, name string) int { return harness.ChildPID(parent, name) }

// gwSample is the gateway under load at one end of a measurement window:
// its stats method's answer and the gateway's and plugin's processes.
type gwSample struct {
	st     map[string]any
	gw, pl procSample
}

// sampleGateway takes a gwSample; a plugin gone since the window began
// (restarted) fails the benchmark, as it would skew every figure.
func sampleGateway(b *testing.B, local *gwAPI, gwPID, plPID int) gwSample {
	b.Helper()
	var s gwSample
	var err error
	if s.st, err = local.stats(); err != nil {
		b.Fatal(err)
	}
	if s.gw, err = sampleProc(gwPID); err != nil {
		b.Fatal(err)
	}
	if s.pl, err = sampleProc(plPID); err != nil {
		b.Fatalf("plugin %d gone (restarted?): %v", plPID, err)
	}
	return s
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

// gcTrace is the last GODEBUG=gctrace=1 line a process wrote to stderr.
type gcTrace struct {
	line                                            string
	before, after, live, goal, stacks, globals, cnt int
}

var gcLine = regexp.MustCompile(`^gc (\d+) .* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal, (\d+) MB stacks, (\d+) MB globals`)

func lastGCTrace(stderr string) (gcTrace, bool) {
	var g gcTrace
	found := false
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		a := make([]int, 7)
		for i := range a {
			a[i], _ = strconv.Atoi(m[i+1])
		}
		g = gcTrace{line: sc.Text(), cnt: a[0], before: a[1], after: a[2], live: a[3], goal: a[4], stacks: a[5], globals: a[6]}
		found = true
	}
	return g, found
}

// gwAPI is the gateway's local API, for its own "stats" method.
type gwAPI struct {
	addr, token, gwID string
}

func (g *gwAPI) stats() (map[string]any, error) {
	req, err := http.NewRequest("POST", "http://"+g.addr+"/v1/devices/"+g.gwID+"/methods/stats", strings.NewReader("null"))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call stats: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read stats: %w", err)
	}
	var out struct {
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Payload == nil {
		return nil, fmt.Errorf("decode stats %q: %v", b, err)
	}
	return out.Payload, nil
}

// deviceTotals sums the bridges' per-device counters.
func deviceTotals(st map[string]any) (online int, polls, errs float64) {
	br, _ := st["bridges"].(map[string]any)
	devs, _ := br["devices"].(map[string]any)
	for _, v := range devs {
		d, _ := v.(map[string]any)
		if d["state"] == "online" {
			online++
		}
		p, _ := d["polls"].(float64)
		e, _ := d["errors"].(float64)
		polls += p
		errs += e
	}
	return online, polls, errs
}

// BenchmarkGatewayRSS250 runs droverhub, devsim (Modbus TCP, 50 units per
// process and bus) and `drover run` bridging 250 devices polled every 5 s,
// each child connected to the hub with its own MQTT/TLS identity derived from
// an enrollment group. Once every device is online at the hub and a settle
// time has passed, it reads the RSS of the gateway and its Modbus plugin from
// /proc and their CPU time over a steady window. Target: < 40 MB together.
func BenchmarkGatewayRSS250(b *testing.B) {
	nDev := envInt("DROVER_BENCH_GW_DEVICES", 250)
	perBus := envInt("DROVER_BENCH_GW_PER_BUS", 50)
	children := os.Getenv("DROVER_BENCH_GW_CHILDREN") != "0"
	settle := envDuration("DROVER_BENCH_GW_SETTLE", 30*time.Second)
	window := envDuration("DROVER_BENCH_GW_WINDOW", 30*time.Second)
	extraEnv := strings.Fields(os.Getenv("DROVER_BENCH_GW_ENV"))
	if perBus < 1 || perBus > 247 || nDev < 1 {
		b.Fatalf("bad DROVER_BENCH_GW_DEVICES=%d / DROVER_BENCH_GW_PER_BUS=%d", nDev, perBus)
	}
	ctx := harness.Context(b)
	dir := b.TempDir()
	const gwID = "gw-bench"

	h := harness.StartHub(b, "")
	svc := h.Service(b)
	connStr, childrenKey := harness.ProvisionGateway(b, svc, h.Hostname, gwID, "bench-line", dir)
	buses, devices, _ := simFleet(b, nDev, perBus, 5*time.Second)
	if !children {
		childrenKey = ""
	}
	api := freeAddrString(b)
	harness.GatewayConfig{
		ID: gwID, DataDir: filepath.Join(dir, "data"), LocalAPI: api,
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: h.MQTTAddr, CAFile: h.CAFile,
			ChildrenKeyFile: childrenKey, TokenTTL: time.Hour},
		PluginsDir: filepath.Dir(harness.Bin(b, "drover-plugin-modbus")), ProfilesDir: demoProfilesDir(),
		Buses: buses, Devices: devices,
	}.Write(b, filepath.Join(dir, "gateway.yaml"))

	// env(1) execs the gateway in its own place (same pid), with gctrace on
	// so its heap can be read from stderr; the plugin inherits the environment.
	args := append([]string{"GODEBUG=gctrace=1"}, extraEnv...)
	args = append(args, harness.Bin(b, "drover"), "run", "-c", filepath.Join(dir, "gateway.yaml"), "--log-level", "warn")
	start := time.Now()
	g := harness.Start(b, "/usr/bin/env", args...)
	gwPID := g.Cmd.Process.Pid
	if p := os.Getenv("DROVER_BENCH_GW_STDERR"); p != "" {
		b.Cleanup(func() { _ = os.WriteFile(p, []byte(g.Stderr()), 0o600) })
	}

	local := &gwAPI{addr: api, gwID: gwID}
	poll(b, 60*time.Second, "gateway local API up", g, func() (bool, string) {
		tok, err := os.ReadFile(filepath.Join(dir, "data", "api.token"))
		if err != nil {
			return false, err.Error()
		}
		local.token = strings.TrimSpace(string(tok))
		_, err = local.stats()
		return err == nil, fmt.Sprint(err)
	})
	// All devices online: at the hub when children have an uplink, else in the bridges.
	poll(b, 5*time.Minute, fmt.Sprintf("%d devices online", nDev), g, func() (bool, string) {
		if !children {
			st, err := local.stats()
			if err != nil {
				return false, err.Error()
			}
			on, _, _ := deviceTotals(st)
			return on >= nDev, fmt.Sprintf("%d online in the bridges", on)
		}
		items, _, err := svc.Query(ctx, "SELECT COUNT() AS n FROM devices WHERE properties.reported.connection.state = 'online'", 10, "")
		if err != nil || len(items) != 1 {
			return false, fmt.Sprint(len(items), err)
		}
		var r struct{ N int }
		if err := json.Unmarshal(items[0], &r); err != nil {
			return false, err.Error()
		}
		return r.N >= nDev, fmt.Sprintf("%d online at the hub", r.N)
	})
	allOnline := time.Since(start)
	time.Sleep(settle) // the settle period itself, not synchronisation

	plPID := childPID(gwPID, "drover-plugin-modbus")
	if plPID == 0 {
		b.Fatalf("no drover-plugin-modbus child of %d", gwPID)
	}
	s0 := sampleGateway(b, local, gwPID, plPID)
	st0, g0, p0 := s0.st, s0.gw, s0.pl
	h0, _ := sampleProc(h.Cmd.Process.Pid)
	time.Sleep(window) // the measurement window itself, not synchronisation
	s1 := sampleGateway(b, local, gwPID, plPID)
	st1, g1, p1 := s1.st, s1.gw, s1.pl
	h1, _ := sampleProc(h.Cmd.Process.Pid)

	const hz = 100.0 // USER_HZ
	cpuPct := func(a, z procSample) float64 { return 100 * float64(z.cpuTicks-a.cpuTicks) / hz / window.Seconds() }
	on, polls0, errs0 := deviceTotals(st0)
	_, polls1, errs1 := deviceTotals(st1)
	total := mb(g1.rssKB + p1.rssKB)

	fmt.Printf("RESULT %-40s devices=%d online=%d buses=%d all-online-after=%.1fs\n",
		"gateway 250 devices: setup", nDev, on, (nDev+perBus-1)/perBus, allOnline.Seconds())
	fmt.Printf("RESULT %-40s gateway=%.1f MB plugin=%.1f MB total=%.1f MB (target < 40) peak gateway=%.1f plugin=%.1f\n",
		"gateway 250 devices: RSS", mb(g1.rssKB), mb(p1.rssKB), total, mb(g1.hwmKB), mb(p1.hwmKB))
	fmt.Printf("RESULT %-40s gateway anon=%.1f file=%.1f threads=%d; plugin anon=%.1f file=%.1f threads=%d (MB)\n",
		"gateway 250 devices: RSS breakdown", mb(g1.anonKB), mb(g1.fileKB), g1.threads, mb(p1.anonKB), mb(p1.fileKB), p1.threads)
	fmt.Printf("RESULT %-40s gateway %s; plugin %s\n", "gateway 250 devices: anon by mapping", anonByMapping(g1.pid), anonByMapping(p1.pid))
	if m, ok := st1["memory"].(map[string]any); ok {
		var parts []string
		for _, k := range []string{"goHeapObjects", "goHeapUnused", "goHeapFree", "goHeapReleased", "goStacks", "goMSpan", "goMetadata", "goOther", "goHeapGoal", "RssAnon"} {
			if v, ok := m[k].(float64); ok {
				parts = append(parts, fmt.Sprintf("%s=%.1f", k, v/1048576))
			}
		}
		fmt.Printf("RESULT %-40s %s MB; goroutines=%v\n", "gateway 250 devices: Go memory classes", strings.Join(parts, " "), m["goroutines"])
	}
	fmt.Printf("RESULT %-40s gateway=%.2f%% plugin=%.2f%% of one core over %s; polls=%.0f (%.1f/s) failed=%.0f; hub=%.2f%% hub RSS=%.1f MB\n",
		"gateway 250 devices: CPU", cpuPct(g0, g1), cpuPct(p0, p1), window, polls1-polls0, (polls1-polls0)/window.Seconds(), errs1-errs0,
		cpuPct(h0, h1), mb(h1.rssKB))
	if gt, ok := lastGCTrace(g.Stderr()); ok {
		fmt.Printf("RESULT %-40s GCs=%d heap live=%d MB goal=%d MB stacks=%d MB globals=%d MB\n",
			"gateway 250 devices: gateway Go heap", gt.cnt, gt.live, gt.goal, gt.stacks, gt.globals)
	}
	if len(extraEnv) > 0 {
		fmt.Printf("RESULT %-40s %s\n", "gateway 250 devices: extra env", strings.Join(extraEnv, " "))
	}
	b.ReportMetric(mb(g1.rssKB), "gw_rss_MB")
	b.ReportMetric(mb(p1.rssKB), "plugin_rss_MB")
	b.ReportMetric(total, "total_rss_MB")
	b.ReportMetric(cpuPct(g0, g1), "gw_cpu_%")
	b.ReportMetric(cpuPct(p0, p1), "plugin_cpu_%")
	b.ReportMetric(allOnline.Seconds(), "online_s")
	b.ReportMetric(0, "ns/op")
}

func writeFile(b *testing.B, p, content string) { harness.WriteFile(b, p, content) }

func freeAddrString(b *testing.B) string {
	return "127.0.0.1:" + strconv.Itoa(freePort(b))
}

// poll checks cond every 500 ms until it holds or timeout passes: neither
// hub nor gateway offers an event for these conditions, so this polls with
// a deadline.
func poll(b *testing.B, timeout time.Duration, what string, gw *harness.Proc, cond func() (bool, string)) {
	b.Helper()
	pollEvery(b, 500*time.Millisecond, timeout, what, gw, cond)
}

// pollEvery is poll with its period; a short one for the conditions whose
// time is the measurement.
func pollEvery(b *testing.B, period, timeout time.Duration, what string, gw *harness.Proc, cond func() (bool, string)) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, info := cond()
		if ok {
			return
		}
		last = info
		time.Sleep(period)
	}
	b.Fatalf("%s: not within %s (last: %s)\ngateway stderr:\n%s", what, timeout, last, tailLines(gw.Stderr(), 40))
}

func tailLines(s string, n int) string { return harness.Tail(s, n) }

// BenchmarkUplinkHeap250 is the breakdown behind BenchmarkGatewayRSS250's
// upstream share: it connects 250 identities to a droverhub process with the
// gateway's own upstream client, in this process, and reports the Go heap,
// stacks and goroutines each connection holds once idle. With
// DROVER_BENCH_HEAPPROFILE=FILE it also writes a heap profile
// (`go tool pprof -top -sample_index=inuse_space FILE`) and the goroutines
// grouped by stack to FILE.goroutines.
func BenchmarkUplinkHeap250(b *testing.B) {
	const n = 250
	h := harness.StartHub(b, "")
	c := newHubClient(b, h)
	ids := c.createDevices(b, "u", n)
	profile := os.Getenv("DROVER_BENCH_HEAPPROFILE")
	if profile != "" {
		runtime.MemProfileRate = 512
	}
	ctx := harness.Context(b)
	tlsCfg := h.TLSConfig(b)
	tlsCfg.ClientSessionCache = nil // as the gateway's: one config, no session cache
	before := memNow()
	clients := make([]*upstream.Client, n)
	for i, id := range ids {
		cl, err := upstream.New(upstream.Options{DeviceID: id, HostName: h.Hostname, Address: h.MQTTAddr, Key: sharedKey, TLS: tlsCfg})
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = cl
		go func() { _ = cl.Run(ctx) }() // ends with ctx, when the benchmark does
	}
	for _, cl := range clients {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := cl.WaitConnected(wctx)
		cancel()
		if err != nil {
			b.Fatalf("connect: %v", err)
		}
	}
	time.Sleep(5 * time.Second) // let handshake garbage become garbage; a settle period, not synchronisation
	after := memNow()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
		g, err := os.Create(profile + ".goroutines")
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("goroutine").WriteTo(g, 1); err != nil {
			b.Fatal(err)
		}
		g.Close()
	}
	per := func(x, y uint64) float64 { return (float64(y) - float64(x)) / n / 1024 }
	fmt.Printf("RESULT %-40s heap in use %.1f KB, stacks %.1f KB, goroutines %.1f per connection (%d connections)\n",
		"uplink per identity (in-process)", per(before.HeapInuse, after.HeapInuse), per(before.StackInuse, after.StackInuse),
		float64(after.goroutines-before.goroutines)/n, n)
	b.ReportMetric(per(before.HeapInuse, after.HeapInuse), "heap_KB/conn")
	b.ReportMetric(per(before.StackInuse, after.StackInuse), "stack_KB/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/conn")
	b.ReportMetric(0, "ns/op")
}

type memSample struct {
	runtime.MemStats
	goroutines int
}

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var m memSample
	runtime.ReadMemStats(&m.MemStats)
	m.goroutines = runtime.NumGoroutine()
	return m
}
