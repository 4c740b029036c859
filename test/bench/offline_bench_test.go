package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3", to read hub.db and gateway.db

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/outbox"
	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/test/harness"
)

// Knobs of BenchmarkOutboxDrainToHub and BenchmarkReconnectConvergence250,
// all optional (defaults in brackets):
//
//	DROVER_BENCH_DRAIN_DEVICES   bridged devices whose identities own the backlog [100]
//	DROVER_BENCH_DRAIN_POLL      their poll interval; the backlog is one hour of it [1s]
//	DROVER_BENCH_DRAIN_BACKLOG   backlog size, overriding devices×3600 s/poll [360000]
//	DROVER_BENCH_CONV_DEVICES    devices in the convergence run [250]
//	DROVER_BENCH_CONV_POLL       their poll interval [5s]
//	DROVER_BENCH_CONV_OUTAGE     how long the hub stays down [30s]
//	DROVER_BENCH_CONV_SETTLE     connected time before the outage; from 1 min on the upstream
//	                             client counts the loss as one of a stable connection [65s]
//	DROVER_BENCH_OFFLINE_STDERR  file prefix to save the gateway's stderr in at the end

// offlineRig is droverhub on fixed loopback ports (so it can be stopped and
// started again on the same data directory), devsim processes with Modbus
// TCP units, and `drover run` bridging them, every child provisioned through
// an enrollment group.
type offlineRig struct {
	b                   *testing.B
	dir, hubDir         string
	mqttAddr, httpsAddr string
	maxTelemetry        int64
	gwID                string
	devices             []string

	hub     *harness.Hub
	svc     *serviceclient.Client
	gw      *harness.Proc
	api     *gwAPI
	cfgPath string
	dataDir string
}

func newOfflineRig(b *testing.B, gwID string, nDev, perBus int, pollEvery time.Duration, maxTelemetry int64) *offlineRig {
	b.Helper()
	if perBus < 1 || perBus > 247 || nDev < 1 {
		b.Fatalf("bad device count %d / per bus %d", nDev, perBus)
	}
	r := &offlineRig{b: b, dir: b.TempDir(), gwID: gwID, maxTelemetry: maxTelemetry,
		mqttAddr: freeAddrString(b), httpsAddr: freeAddrString(b)}
	r.hubDir = filepath.Join(r.dir, "hub")
	r.dataDir = filepath.Join(r.dir, "data")
	r.cfgPath = filepath.Join(r.dir, "gateway.yaml")
	if err := os.MkdirAll(r.hubDir, 0o700); err != nil {
		b.Fatal(err)
	}
	r.startHub()
	connStr, childrenKey := harness.ProvisionGateway(b, r.svc, r.hub.Hostname, gwID, gwID+"-line", r.dir)
	buses, devices, ids := simFleet(b, nDev, perBus, pollEvery)
	r.devices = ids
	api := freeAddrString(b)
	r.api = &gwAPI{addr: api, gwID: gwID}
	harness.GatewayConfig{
		ID: gwID, DataDir: r.dataDir, LocalAPI: api,
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: r.mqttAddr, CAFile: r.hub.CAFile,
			ChildrenKeyFile: childrenKey, TokenTTL: time.Hour},
		PluginsDir: filepath.Dir(harness.Bin(b, "drover-plugin-modbus")), ProfilesDir: demoProfilesDir(),
		Buses: buses, Devices: devices,
	}.Write(b, r.cfgPath)
	return r
}

// startHub runs droverhub on the rig's data directory and ports and waits
// until it is ready; a new service client goes with each hub process.
func (r *offlineRig) startHub() {
	b := r.b
	b.Helper()
	h := harness.StartHubOn(b, r.hubDir, r.mqttAddr, r.httpsAddr, "--max-telemetry", strconv.FormatInt(r.maxTelemetry, 10))
	r.hub, r.svc = h, h.Service(b)
}

// terminate sends SIGTERM and waits for the process to exit.
func terminate(b *testing.B, p *harness.Proc, what string) {
	b.Helper()
	select {
	case <-p.Exited():
		b.Fatalf("%s exited before it was stopped: %v\n%s", what, p.ExitErr(), tailLines(p.Stderr(), 40))
	default:
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatalf("signal %s: %v", what, err)
	}
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		b.Fatalf("%s did not stop within 30s of SIGTERM", what)
	}
}

// startGateway starts `drover run`; it does not wait for anything.
func (r *offlineRig) startGateway(tag string) {
	r.gw = harness.Start(r.b, harness.Bin(r.b, "drover"), "run", "-c", r.cfgPath, "--log-level", "warn")
	if p := os.Getenv("DROVER_BENCH_OFFLINE_STDERR"); p != "" {
		g := r.gw
		r.b.Cleanup(func() { _ = os.WriteFile(p+"."+tag, []byte(g.Stderr()), 0o600) })
	}
}

// waitAPI waits until the gateway's local API answers "stats".
func (r *offlineRig) waitAPI(timeout time.Duration) {
	poll(r.b, timeout, "gateway local API up", r.gw, func() (bool, string) {
		tok, err := os.ReadFile(filepath.Join(r.dataDir, "api.token"))
		if err != nil {
			return false, err.Error()
		}
		r.api.token = strings.TrimSpace(string(tok))
		_, err = r.api.stats()
		return err == nil, fmt.Sprint(err)
	})
}

// connectedChildren counts the rig's devices the hub sees connected.
func (r *offlineRig) connectedChildren(ctx context.Context) (int, error) {
	ids, err := r.childIDs(ctx, "connectionState = 'Connected'")
	return len(ids), err
}

// childIDs lists the rig's devices (not the gateway) that match a query condition.
func (r *offlineRig) childIDs(ctx context.Context, where string) ([]string, error) {
	items, err := r.svc.QueryAll(ctx, "SELECT deviceId FROM devices WHERE "+where, 1000)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, it := range items {
		var d struct {
			DeviceID string `json:"deviceId"`
		}
		if json.Unmarshal(it, &d) == nil && strings.HasPrefix(d.DeviceID, "pump-") {
			out = append(out, d.DeviceID)
		}
	}
	return out, nil
}

// hubCount runs a COUNT() query aliased n through the service API.
func (r *offlineRig) hubCount(ctx context.Context, q string) (int, error) {
	items, _, err := r.svc.Query(ctx, q, 10, "")
	if err != nil {
		return 0, err
	}
	if len(items) != 1 {
		return 0, fmt.Errorf("count query answered %d items", len(items))
	}
	var c struct{ N int }
	if err := json.Unmarshal(items[0], &c); err != nil {
		return 0, fmt.Errorf("decode count %s: %w", items[0], err)
	}
	return c.N, nil
}

// field reads a number at a path of a decoded JSON document (-1 when absent).
func field(m map[string]any, keys ...string) float64 {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return -1
		}
		v = mm[k]
	}
	switch x := v.(type) {
	case float64:
		return x
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return -1
}

const backlogIDPrefix = "bl-"

// backlogMessage is the i-th message of identity id's synthetic backlog,
// produced every period from first on.
func backlogMessage(id string, i int, first time.Time, every time.Duration) outbox.Message {
	at := first.Add(time.Duration(i+1) * every)
	body := fmt.Sprintf(`{"pressure":%.2f,"temperature":%.1f,"uptime":%d}`, 4.2+float64(i%30)/100, 18+float64(i%80)/10, i*int(every/time.Second))
	props := iothubtopic.Properties{
		{Name: iothubtopic.SysContentType, Value: "application/json"},
		{Name: iothubtopic.SysContentEncoding, Value: "utf-8"},
		{Name: "measuredAt", Value: at.UTC().Format(time.RFC3339Nano)},
	}
	return outbox.Message{Identity: id, Kind: outbox.Telemetry, Body: []byte(body), Props: props,
		ProducedAt: at, ID: fmt.Sprintf("%s%s-%06d", backlogIDPrefix, id, i)}
}

// prefillBacklog accepts n synthetic telemetry messages into the stopped
// gateway's outbox, spread evenly over the rig's devices, with produced times
// one poll period apart ending now (one hour of production at the default
// knobs). Each identity's messages are accepted in order by one goroutine,
// all identities concurrently (group commit). Returns the accept rate and
// the sequence range the backlog occupies in the outbox.
func (r *offlineRig) prefillBacklog(n int, every time.Duration) (rate float64, lo, hi int64, st outbox.Stats) {
	b := r.b
	path := filepath.Join(r.dataDir, "gateway.db")
	box, err := outbox.Open(path, outbox.Options{Sync: outbox.SyncNormal, MaxBytes: int64(config.DefaultOutboxMaxBytes), TTL: config.DefaultOutboxTTL})
	if err != nil {
		b.Fatal(err)
	}
	per := (n + len(r.devices) - 1) / len(r.devices)
	start := time.Now()
	first := start.Add(-time.Duration(per) * every)
	var wg sync.WaitGroup
	errs := make(chan error, len(r.devices))
	left := n
	for _, id := range r.devices {
		k := min(per, left)
		left -= k
		wg.Go(func() {
			ctx := context.Background()
			for i := range k {
				_, err := box.Accept(ctx, backlogMessage(id, i, first, every))
				if err != nil {
					errs <- fmt.Errorf("accept backlog message %d of %s: %w", i, id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	st, err = box.Stats(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if err := box.Close(); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT MIN(seq), MAX(seq) FROM outbox_msg WHERE id LIKE ?`, backlogIDPrefix+"%").Scan(&lo, &hi); err != nil {
		b.Fatalf("read backlog range: %v", err)
	}
	var others int
	if err := db.QueryRow(`SELECT COUNT(*) FROM outbox_msg WHERE seq BETWEEN ? AND ? AND id NOT LIKE ?`, lo, hi, backlogIDPrefix+"%").Scan(&others); err != nil || others != 0 {
		b.Fatalf("backlog range %d..%d holds %d other rows (%v)", lo, hi, others, err)
	}
	return float64(n) / el.Seconds(), lo, hi, st
}

// BenchmarkOutboxDrainToHub measures how fast the gateway drains a one-hour
// backlog into localhub over loopback. A one-hour backlog cannot be produced
// in real time in a benchmark, so it is written into the stopped gateway's
// own outbox (data_dir/gateway.db, through gateway/outbox) for the real
// child identities, with produced times spread over the last hour; then the
// hub and the gateway start and the test times the drain: from the gateway
// process start, and at the hub from the first to the last backlog message
// stored (the hub's enqueued times). The devices keep being polled during
// the drain, so live data is interleaved as in the field. Afterwards the
// hub's database is read: every backlog message id present (0 lost),
// duplicates counted, per-device order checked.
func BenchmarkOutboxDrainToHub(b *testing.B) {
	nDev := envInt("DROVER_BENCH_DRAIN_DEVICES", 100)
	every := envDuration("DROVER_BENCH_DRAIN_POLL", time.Second)
	n := envInt("DROVER_BENCH_DRAIN_BACKLOG", int(float64(nDev)*time.Hour.Seconds()/every.Seconds()))
	if every < time.Second || n < nDev {
		b.Fatalf("bad DROVER_BENCH_DRAIN_POLL=%s / DROVER_BENCH_DRAIN_BACKLOG=%d", every, n)
	}
	ctx := harness.Context(b)
	r := newOfflineRig(b, "gw-drain", nDev, 50, every, int64(n)+1_000_000)

	// Warm-up: every child provisioned and connected once, then everything stops.
	r.startGateway("warmup")
	r.waitAPI(60 * time.Second)
	poll(b, 5*time.Minute, "children connected", r.gw, func() (bool, string) {
		c, err := r.connectedChildren(ctx)
		return err == nil && c >= nDev, fmt.Sprint(c, err)
	})
	terminate(b, r.gw, "gateway")
	terminate(b, r.hub.Proc, "hub")

	acceptRate, lo, hi, st := r.prefillBacklog(n, every)
	fmt.Printf("RESULT %-40s %d messages for %d identities (%s apart, produced over %s) accepted at %.0f msgs/s (SyncNormal, %d concurrent producers); outbox depth %d, %.1f MB accounted\n",
		"drain: backlog prefill", n, nDev, every, (time.Duration(n/nDev) * every).Round(time.Second), acceptRate, nDev, st.Depth, float64(st.Bytes)/(1<<20))
	if fi, err := os.Stat(filepath.Join(r.dataDir, "gateway.db")); err == nil {
		fmt.Printf("RESULT %-40s gateway.db %.1f MB after prefill\n", "drain: backlog on disk", float64(fi.Size())/(1<<20))
	}

	r.startHub()
	gwdb, err := sql.Open("sqlite3", "file:"+filepath.Join(r.dataDir, "gateway.db")+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		b.Fatal(err)
	}
	defer gwdb.Close()

	t0 := time.Now()
	r.startGateway("drain")
	hub0, _ := sampleProc(r.hub.Cmd.Process.Pid)
	gw0, _ := sampleProc(r.gw.Cmd.Process.Pid)
	self0, _ := sampleProc(os.Getpid())
	r.waitAPI(60 * time.Second)
	tAPI := time.Since(t0)
	var (
		tDone, tDepth0 time.Duration
		lastLog        = time.Now()
		lastLeft       = n
	)
	// The check is an index probe (cheap); the count behind the progress
	// lines scans what is left, so it runs only every 5 s.
	pollEvery(b, 100*time.Millisecond, 30*time.Minute, "backlog drained", r.gw, func() (bool, string) {
		var anyLeft bool
		if err := gwdb.QueryRow(`SELECT EXISTS(SELECT 1 FROM outbox_msg WHERE seq BETWEEN ? AND ?)`, lo, hi).Scan(&anyLeft); err != nil {
			return false, err.Error()
		}
		el := time.Since(t0)
		if !anyLeft {
			tDone = el
			return true, ""
		}
		if time.Since(lastLog) >= 5*time.Second {
			var left int
			if err := gwdb.QueryRow(`SELECT COUNT(*) FROM outbox_msg WHERE seq BETWEEN ? AND ?`, lo, hi).Scan(&left); err == nil {
				fmt.Printf("  drain progress at %5.1fs: %d left, %.0f msgs/s over the last %.1fs\n", el.Seconds(), left, float64(lastLeft-left)/time.Since(lastLog).Seconds(), time.Since(lastLog).Seconds())
				lastLog, lastLeft = time.Now(), left
			}
		}
		return false, "backlog rows left"
	})
	hub1, _ := sampleProc(r.hub.Cmd.Process.Pid)
	gw1, _ := sampleProc(r.gw.Cmd.Process.Pid)
	self1, _ := sampleProc(os.Getpid())
	pollEvery(b, 100*time.Millisecond, 2*time.Minute, "outbox depth 0", r.gw, func() (bool, string) {
		s, err := r.api.stats()
		if err != nil {
			return false, err.Error()
		}
		if field(s, "outbox", "Depth") == 0 {
			tDepth0 = time.Since(t0)
			return true, ""
		}
		return false, fmt.Sprint("depth ", field(s, "outbox", "Depth"))
	})
	final, err := r.api.stats()
	if err != nil {
		b.Fatal(err)
	}
	terminate(b, r.gw, "gateway")
	terminate(b, r.hub.Proc, "hub")

	// The hub's view: every backlog id, duplicates, enqueued times, per-device order.
	hdb, err := sql.Open("sqlite3", "file:"+filepath.Join(r.hubDir, "hub.db")+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer hdb.Close()
	rows, err := hdb.Query(`SELECT device_id, message_id, enqueued FROM telemetry WHERE message_id LIKE ? ORDER BY seq`, backlogIDPrefix+"%")
	if err != nil {
		b.Fatal(err)
	}
	seen := map[string]int{}
	lastIdx := map[string]int{}
	var rowsN, outOfOrder int
	var firstAt, lastAt time.Time
	for rows.Next() {
		var dev, mid, enq string
		if err := rows.Scan(&dev, &mid, &enq); err != nil {
			b.Fatal(err)
		}
		rowsN++
		seen[mid]++
		at, err := time.Parse(time.RFC3339Nano, enq)
		if err != nil {
			b.Fatalf("enqueued %q: %v", enq, err)
		}
		if firstAt.IsZero() || at.Before(firstAt) {
			firstAt = at
		}
		if at.After(lastAt) {
			lastAt = at
		}
		idx, _ := strconv.Atoi(mid[strings.LastIndexByte(mid, '-')+1:])
		if seen[mid] == 1 {
			if p, ok := lastIdx[dev]; ok && idx < p {
				outOfOrder++
			}
			lastIdx[dev] = idx
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	rows.Close()
	var liveRows int
	_ = hdb.QueryRow(`SELECT COUNT(*) FROM telemetry WHERE message_id NOT LIKE ? AND enqueued >= ?`, backlogIDPrefix+"%", t0.UTC().Format("2006-01-02T15:04:05.0000000Z")).Scan(&liveRows)
	dups := rowsN - len(seen)
	lost := n - len(seen)
	hubSpan := lastAt.Sub(firstAt)
	const hz = 100.0 // USER_HZ
	cpu := func(a, z procSample) float64 { return 100 * float64(z.cpuTicks-a.cpuTicks) / hz / tDone.Seconds() }

	fmt.Printf("RESULT %-40s %d msgs in %.2fs from the first to the last at the hub: %.0f msgs/s (target ≥ 5,000)\n",
		"drain: rate at the hub", n, hubSpan.Seconds(), float64(n)/hubSpan.Seconds())
	fmt.Printf("RESULT %-40s gateway start→API %.2fs, →first backlog msg at hub %.2fs, →backlog gone %.2fs (%.0f msgs/s end to end), →depth 0 %.2fs\n",
		"drain: timeline", tAPI.Seconds(), firstAt.Sub(t0).Seconds(), tDone.Seconds(), float64(n)/tDone.Seconds(), tDepth0.Seconds())
	fmt.Printf("RESULT %-40s lost=%d duplicates=%d out-of-order=%d (hub rows %d, distinct ids %d); live telemetry stored meanwhile %d\n",
		"drain: integrity", lost, dups, outOfOrder, rowsN, len(seen), liveRows)
	fmt.Printf("RESULT %-40s hub %.0f%% gateway %.0f%% this test %.0f%% of one core (2 cores = 200%%) from gateway start to backlog gone; drainer sent=%.0f failures=%.0f undeliverable=%.0f\n",
		"drain: CPU", cpu(hub0, hub1), cpu(gw0, gw1), cpu(self0, self1), field(final, "drainer", "Sent"), field(final, "drainer", "Failures"), field(final, "drainer", "Undeliverable"))
	if lost != 0 {
		b.Errorf("%d backlog messages missing at the hub", lost)
	}
	b.ReportMetric(float64(n)/hubSpan.Seconds(), "msgs/s")
	b.ReportMetric(tDone.Seconds(), "drain_s")
	b.ReportMetric(float64(dups), "dups")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkReconnectConvergence250 measures how long 250 bridged devices
// take to converge after the hub comes back. Everything runs and every child
// is connected; the hub is stopped (SIGTERM) while the gateway keeps running
// and queues telemetry and reported patches in its outbox; after the outage
// the hub starts again on the same data directory and ports, and at once
// desired.config.setpoint of every device is patched through the service
// API. Times from the restart (hub process start) to: (a) every child
// connected again, (b) every twin reporting config.status "applied" with the
// desired $version its patch produced, (c) the gateway's outbox empty.
func BenchmarkReconnectConvergence250(b *testing.B) {
	nDev := envInt("DROVER_BENCH_CONV_DEVICES", 250)
	every := envDuration("DROVER_BENCH_CONV_POLL", 5*time.Second)
	outage := envDuration("DROVER_BENCH_CONV_OUTAGE", 30*time.Second)
	settle := envDuration("DROVER_BENCH_CONV_SETTLE", 65*time.Second)
	ctx := harness.Context(b)
	r := newOfflineRig(b, "gw-conv", nDev, 50, every, 1_000_000)

	start := time.Now()
	r.startGateway("conv")
	r.waitAPI(60 * time.Second)
	poll(b, 5*time.Minute, "children connected", r.gw, func() (bool, string) {
		c, err := r.connectedChildren(ctx)
		return err == nil && c >= nDev, fmt.Sprint(c, err)
	})
	poll(b, 2*time.Minute, "every device online and reporting", r.gw, func() (bool, string) {
		c, err := r.hubCount(ctx, "SELECT COUNT() AS n FROM devices WHERE properties.reported.connection.state = 'online'")
		return err == nil && c >= nDev, fmt.Sprint(c, err)
	})
	fmt.Printf("RESULT %-40s %d devices (%d buses, poll %s) connected and online %.1fs after the gateway started\n",
		"converge: setup", nDev, (nDev+49)/50, every, time.Since(start).Seconds())

	// Connections that lived under a minute count as unstable when lost, and
	// their clients back off longer; in the field they have lived for long.
	time.Sleep(settle - time.Since(start)) // the settle period itself, not synchronisation
	terminate(b, r.hub.Proc, "hub")
	time.Sleep(outage) // the outage itself, not synchronisation
	before, err := r.api.stats()
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("RESULT %-40s hub down %s; outbox depth %.0f (telemetry %.0f, reported %.0f), %.0f merged patches\n",
		"converge: outage", outage, field(before, "outbox", "Depth"), field(before, "outbox", "Telemetry"), field(before, "outbox", "Reported"), field(before, "outbox", "Merged"))

	t0 := time.Now()
	r.startHub()
	tReady := time.Since(t0)

	// Patch every twin at once (16 callers), keeping the $version each patch produced.
	const setpoint = 22.75
	versions := make([]int64, len(r.devices))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var patchErr error
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				tw, err := r.svc.UpdateTwin(ctx, r.devices[i], serviceclient.Twin{Properties: serviceclient.TwinProperties{
					Desired: map[string]any{"config": map[string]any{"setpoint": setpoint}}}}, "")
				if err != nil {
					mu.Lock()
					patchErr = errors.Join(patchErr, fmt.Errorf("patch %s: %w", r.devices[i], err))
					mu.Unlock()
					continue
				}
				versions[i] = int64(field(tw.Properties.Desired, "$version"))
			}
		})
	}
	for i := range r.devices {
		work <- i
	}
	close(work)
	wg.Wait()
	if patchErr != nil {
		b.Fatal(patchErr)
	}
	tPatched := time.Since(t0)
	byVersion := map[int64]int{}
	for _, v := range versions {
		byVersion[v]++
	}
	vs := make([]int64, 0, len(byVersion))
	for v := range byVersion {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })

	// Per device: when it was first seen connected and first seen applied
	// (to the poll's resolution, which is printed).
	var tConn, tApplied, tDepth0, slowest time.Duration
	connAt, applAt := map[string]time.Duration{}, map[string]time.Duration{}
	var connHist []string
	lastHist := time.Duration(0)
	rounds := 0
	pollEvery(b, 100*time.Millisecond, 10*time.Minute, "converged", r.gw, func() (bool, string) {
		rounds++
		roundStart := time.Now()
		defer func() { slowest = max(slowest, time.Since(roundStart)) }()
		el := time.Since(t0)
		info := []string{}
		if tConn == 0 {
			ids, err := r.childIDs(ctx, "connectionState = 'Connected'")
			for _, id := range ids {
				if _, ok := connAt[id]; !ok {
					connAt[id] = el
				}
			}
			if err == nil && len(ids) >= nDev {
				tConn = el
			}
			if el-lastHist >= 5*time.Second {
				connHist = append(connHist, fmt.Sprintf("%.0fs:%d", el.Seconds(), len(ids)))
				lastHist = el
			}
			info = append(info, fmt.Sprintf("connected %d %v", len(ids), err))
		}
		if tApplied == 0 {
			var qerr error
			for _, v := range vs {
				ids, err := r.childIDs(ctx, fmt.Sprintf("properties.reported.config.status = 'applied' AND properties.reported.config.version = %d", v))
				qerr = errors.Join(qerr, err)
				for _, id := range ids {
					if _, ok := applAt[id]; !ok && versions[slices.Index(r.devices, id)] == v {
						applAt[id] = el
					}
				}
			}
			if qerr == nil && len(applAt) >= nDev {
				tApplied = el
			}
			info = append(info, fmt.Sprintf("applied %d %v", len(applAt), qerr))
		}
		if tDepth0 == 0 {
			s, err := r.api.stats()
			if err == nil && field(s, "outbox", "Depth") == 0 {
				tDepth0 = el
			}
			info = append(info, fmt.Sprintf("depth %.0f %v", field(s, "outbox", "Depth"), err))
		}
		return tConn > 0 && tApplied > 0 && tDepth0 > 0, strings.Join(info, "; ")
	})
	var lags []time.Duration
	for id, a := range applAt {
		lags = append(lags, a-connAt[id])
	}
	slices.Sort(lags)
	lag := func(p float64) float64 { return lags[min(len(lags)-1, int(p*float64(len(lags))))].Seconds() }
	after, err := r.api.stats()
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("RESULT %-40s hub ready %.2fs; %d twins patched %.2fs (desired $version %v)\n",
		"converge: restart", tReady.Seconds(), nDev, tPatched.Seconds(), vs)
	fmt.Printf("RESULT %-40s (a) all %d children connected %.2fs  (b) all twins applied %.2fs  (c) outbox depth 0 %.2fs (from hub process start)\n",
		"converge: times", nDev, tConn.Seconds(), tApplied.Seconds(), tDepth0.Seconds())
	fmt.Printf("RESULT %-40s connected over time %s; drainer sent=%.0f failures=%.0f; outbox dropped full=%.0f ttl=%.0f\n",
		"converge: detail", strings.Join(connHist, " "), field(after, "drainer", "Sent"), field(after, "drainer", "Failures"),
		field(after, "outbox", "DroppedFull"), field(after, "outbox", "DroppedTTL"))
	fmt.Printf("RESULT %-40s seen connected → seen applied per device: p50 %.2fs p90 %.2fs max %.2fs (poll rounds %d, slowest round %.2fs)\n",
		"converge: per-device lag", lag(0.5), lag(0.9), lags[len(lags)-1].Seconds(), rounds, slowest.Seconds())
	b.ReportMetric(tConn.Seconds(), "connected_s")
	b.ReportMetric(tApplied.Seconds(), "applied_s")
	b.ReportMetric(tDepth0.Seconds(), "depth0_s")
	b.ReportMetric(0, "ns/op")
}
