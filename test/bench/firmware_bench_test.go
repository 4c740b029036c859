package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/internal/smpsim"
	"github.com/drover-iot/drover/test/harness"
)

// Knobs of BenchmarkFirmwareRollout, all optional (defaults in brackets):
//
//	DROVER_BENCH_FW_DEVICES  comma-separated fleet sizes, one MCU per UART [50]
//	DROVER_BENCH_FW_SIZE     image file size in bytes [262144]
//	DROVER_BENCH_FW_IDLE     quiet window measuring the gateway's idle disk writes [20s]

// fwBaud is the MCUs' UART speed; the simulator paces its pseudo-terminals
// to it.
const fwBaud = 115200

// countingProxy forwards TCP connections to target and counts the bytes
// each way as they pass (a kept-alive connection is counted before it
// closes).
type countingProxy struct {
	ln       net.Listener
	target   string
	down, up atomic.Int64 // target → client, client → target
	conns    atomic.Int64
	mu       sync.Mutex
	open     map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func startCountingProxy(b *testing.B, target string) *countingProxy {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &countingProxy{ln: ln, target: target, open: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	b.Cleanup(p.close)
	return p
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

func (p *countingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.conns.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pipe(c)
		}()
	}
}

// track records c as open (false once the proxy is closing).
func (p *countingProxy) track(c net.Conn, open bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open == nil {
		return false
	}
	if open {
		p.open[c] = struct{}{}
	} else {
		delete(p.open, c)
	}
	return true
}

func (p *countingProxy) pipe(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	if !p.track(c, true) || !p.track(s, true) {
		return
	}
	defer p.track(c, false)
	defer p.track(s, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(countWriter{s, &p.up}, c)
		_ = s.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(countWriter{c, &p.down}, s)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}

// close stops accepting, cuts open connections and waits for the pipes.
func (p *countingProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		_ = c.Close()
	}
	p.open = nil
	p.mu.Unlock()
	p.wg.Wait()
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// fwBenchRig is droverhub, `devsim serial` with one MCU per pseudo-terminal, and
// `drover run` with its serial plugin, one bus per MCU, the gateway's
// HTTPS upstream going through a counting proxy.
type fwBenchRig struct {
	b       *testing.B
	dir     string
	hub     *harness.Hub
	svc     *serviceclient.Client
	proxy   *countingProxy
	sim, gw *harness.Proc
	api     *gwAPI
	dataDir string
	key     string
}

func newFwBenchRig(b *testing.B, n int) *fwBenchRig {
	b.Helper()
	r := &fwBenchRig{b: b, dir: b.TempDir()}
	r.hub = harness.StartHub(b, "")
	r.svc = r.hub.Service(b)
	connStr, childrenKey := harness.ProvisionGateway(b, r.svc, r.hub.Hostname, "gw-fw-bench", "fw-bench-line", r.dir)
	r.key = filepath.Join(r.dir, "release.key")
	var k struct {
		PublicKey string `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(r.ctl("firmware", "keygen", r.key, "-o", "json")), &k); err != nil {
		b.Fatalf("keygen: %v", err)
	}
	r.proxy = startCountingProxy(b, r.hub.HTTPSAddr)

	// The device's default SMP buffer (384, Zephyr's default), which the
	// plugin reads with params and fills; log lines every second share the
	// UART as an application's would.
	r.sim = harness.Start(b, harness.Bin(b, "devsim"), "serial", "--count", strconv.Itoa(n), "--baud", strconv.Itoa(fwBaud),
		"--reset-silence", "300ms", "--log-level", "warn")
	cfg := harness.GatewayConfig{
		ID: "gw-fw-bench", DataDir: filepath.Join(r.dir, "data"), LocalAPI: freeAddrString(b),
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: r.hub.MQTTAddr, HTTPSAddress: r.proxy.addr(),
			CAFile: r.hub.CAFile, ChildrenKeyFile: childrenKey, TokenTTL: time.Hour},
		PluginsDir: filepath.Dir(harness.Bin(b, "drover-plugin-serial")), ProfilesDir: demoProfilesDir(),
		FirmwareKeys: []string{k.PublicKey},
	}
	for i := range n {
		port := r.sim.Await(b, "serial:", 30*time.Second)
		bus, id := fmt.Sprintf("uart-%d", i+1), fmt.Sprintf("mcu-%02d", i+1)
		cfg.Buses = append(cfg.Buses, harness.Bus{Name: bus, Plugin: "serial", Port: port, Baud: fwBaud, Timeout: time.Second})
		cfg.Devices = append(cfg.Devices, harness.Device{ID: id, Bus: bus, Profile: "demo-mcu"})
	}
	r.sim.Await(b, "ready", 30*time.Second)
	r.dataDir = cfg.DataDir
	cfgPath := filepath.Join(r.dir, "gateway.yaml")
	cfg.Write(b, cfgPath)
	// Info: the plugin logs each upload's duration ("image uploaded").
	r.gw = harness.Start(b, harness.Bin(b, "drover"), "run", "-c", cfgPath, "--log-level", "info")
	r.api = &gwAPI{addr: cfg.LocalAPI, gwID: cfg.ID}
	poll(b, time.Minute, "gateway local API up", r.gw, func() (bool, string) {
		tok, err := os.ReadFile(filepath.Join(r.dataDir, "api.token"))
		if err != nil {
			return false, err.Error()
		}
		r.api.token = strings.TrimSpace(string(tok))
		_, err = r.api.stats()
		return err == nil, fmt.Sprint(err)
	})
	poll(b, 3*time.Minute, "every MCU reports what it runs", r.gw, func() (bool, string) {
		c, err := r.count("properties.reported.firmware.currentVersion = '1.0.0'")
		return err == nil && c == n, fmt.Sprintf("%d of %d (%v)", c, n, err)
	})
	return r
}

// ctl runs droverctl against the rig's hub.
func (r *fwBenchRig) ctl(args ...string) string {
	r.b.Helper()
	cmd := exec.Command(harness.Bin(r.b, "droverctl"), args...)
	cmd.Env = append(os.Environ(), "DROVER_HUB_CONNECTION_STRING="+r.hub.OwnerConnectionString,
		"DROVER_CA_FILE="+r.hub.CAFile, "DROVER_HUB_ADDRESS="+r.hub.HTTPSAddr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.b.Fatalf("droverctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// count counts the rig's devices matching a query condition.
func (r *fwBenchRig) count(where string) (int, error) {
	items, _, err := r.svc.Query(context.Background(), "SELECT COUNT() AS n FROM devices WHERE "+where, 10, "")
	if err != nil || len(items) != 1 {
		return 0, fmt.Errorf("count %q: %d items, %w", where, len(items), err)
	}
	var c struct{ N int }
	err = json.Unmarshal(items[0], &c)
	return c.N, err
}

// publish uploads an MCUboot image of exactly size bytes for MCU-1.
func (r *fwBenchRig) publish(version string, size int) {
	r.b.Helper()
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		r.b.Fatal(err)
	}
	// Header, body and the 40-byte SHA-256 TLV make the file size.
	img := smpsim.BuildImage(v, size-mcuboot.HeaderSize-40, false)
	if len(img) != size {
		r.b.Fatalf("image of %d bytes, want %d", len(img), size)
	}
	p := filepath.Join(r.dir, "mcu-"+version+".bin")
	writeFile(r.b, p, string(img))
	r.ctl("firmware", "upload", p, "--version", version, "--manufacturer", "Acme", "--model", "MCU-1", "--key", r.key, "--name", "mcu-fw")
}

// fwSample is what the rollout is measured by at one instant.
type fwSample struct {
	at                time.Time
	gwWrite, plWrite  int64 // /proc/PID/io write_bytes of gateway and plugin
	down, up, conns   int64 // through the proxy to the hub's HTTPS port
	gatewayStderrSize int
	db, wal           int64   // sizes of gateway.db and its WAL
	accepted, merged  float64 // the outbox's counters: messages accepted, reported patches merged
	// CPU ticks (USER_HZ) of gateway, plugin, simulator and hub: whether
	// the machine, not the UARTs, set the pace.
	cpu [4]int64
}

func (r *fwBenchRig) sample() fwSample {
	r.b.Helper()
	gw := r.gw.Cmd.Process.Pid
	s := fwSample{at: time.Now(), down: r.proxy.down.Load(), up: r.proxy.up.Load(), conns: r.proxy.conns.Load()}
	var err error
	if s.gwWrite, err = ioWrite(gw); err != nil {
		r.b.Fatal(err)
	}
	if pl := childPID(gw, "drover-plugin-serial"); pl != 0 {
		s.plWrite, _ = ioWrite(pl)
	}
	s.gatewayStderrSize = len(r.gw.Stderr())
	s.db, s.wal = fileSizes(r.dataDir)
	st, err := r.api.stats()
	if err != nil {
		r.b.Fatal(err)
	}
	s.accepted, s.merged = field(st, "outbox", "Accepted"), field(st, "outbox", "Merged")
	for i, pid := range []int{gw, childPID(gw, "drover-plugin-serial"), r.sim.Cmd.Process.Pid, r.hub.Cmd.Process.Pid} {
		if ps, err := sampleProc(pid); err == nil {
			s.cpu[i] = ps.cpuTicks
		}
	}
	return s
}

// tookRE finds the duration in the plugin's log line for a finished image
// upload (msg="image uploaded"), as the gateway relays it; the order of
// the line's attributes varies.
var tookRE = regexp.MustCompile(`\btook=(\S+)`)

// uploadTimes are the plugin's upload durations logged since offset.
func (r *fwBenchRig) uploadTimes(offset int) []time.Duration {
	var out []time.Duration
	log := r.gw.Stderr()
	if offset > len(log) {
		return nil
	}
	for _, line := range strings.Split(log[offset:], "\n") {
		m := tookRE.FindStringSubmatch(line)
		if m == nil || !strings.Contains(line, `msg="image uploaded"`) {
			continue
		}
		if d, err := time.ParseDuration(m[1]); err == nil {
			out = append(out, d)
		} else if ns, err := strconv.ParseFloat(m[1], 64); err == nil {
			out = append(out, time.Duration(ns)) // the plugin's duration crosses go-plugin's log as nanoseconds
		}
	}
	return out
}

// spread is min / median / max.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("min %.1fs / median %.1fs / max %.1fs (%d)", s[0].Seconds(), s[len(s)/2].Seconds(), s[len(s)-1].Seconds(), len(s))
}

// cacheFiles lists the gateway's firmware cache: file → size.
func cacheFiles(dataDir string) map[string]int64 {
	out := map[string]int64{}
	root := filepath.Join(dataDir, "firmware")
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				rel, _ := filepath.Rel(root, p)
				out[rel] = fi.Size()
			}
		}
		return nil
	})
	return out
}

// smpWireBytes is the bytes on the UART for one image of size at device
// buffer buf, by smpFramingLimit's model: per chunk of D image bytes, the
// request's base64 lines and the answer.
func smpWireBytes(size, buf int) (perByte float64, chunks int) {
	d := buf - 4 - 8 - 18
	b64 := 4 * int(math.Ceil(float64(d+30)/3))
	lines := int(math.Ceil(float64(b64) / 124))
	chunks = int(math.Ceil(float64(size) / float64(d)))
	return float64(b64+3*lines+35) / float64(d), chunks
}

// BenchmarkFirmwareRollout updates a fleet of simulated MCUs (devsim
// serial: each on its own pseudo-terminal paced like a 115200-baud UART,
// Zephyr's default 384-byte SMP buffer, MCUboot test swap and confirm)
// behind one gateway with a 256 KiB image, as one hub job to all of them:
// first as `droverctl firmware deploy` does by default (each device's job
// record awaits its reported outcome, so at most 32 are in flight), then
// with --no-await (every twin written at once). Reported per phase: wall
// time from the deploy command to every device current, against the
// UART's framing limit for one device (the UARTs run in parallel, so that
// is the fleet's limit too); per-device upload times (the plugin's) and
// job record times (the hub's: desired written to outcome reported); the
// bytes the gateway downloaded from the hub's HTTPS port (a counting proxy
// in front of it: one image, once, is the target); and the disk bytes the
// gateway process wrote (/proc/PID/io write_bytes) per device flashed.
// Real processes: droverhub, devsim serial, `drover run` and
// drover-plugin-serial.
func BenchmarkFirmwareRollout(b *testing.B) {
	sizes := []int{50}
	if v := os.Getenv("DROVER_BENCH_FW_DEVICES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 64 {
				b.Fatalf("DROVER_BENCH_FW_DEVICES: bad size %q (1..64, devsim's limit)", f)
			}
			sizes = append(sizes, n)
		}
	}
	size := envInt("DROVER_BENCH_FW_SIZE", 256<<10)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			for range b.N {
				firmwareRolloutRun(b, n, size)
			}
		})
	}
}

func firmwareRolloutRun(b *testing.B, n, size int) {
	r := newFwBenchRig(b, n)
	perByte, chunks := smpWireBytes(size, smpsim.DefaultBufSize)
	limit := float64(size) / smpFramingLimit(smpsim.DefaultBufSize, fwBaud)
	b.Logf("wire limit: buf %d → %d chunks of %d image bytes, %.3f UART bytes per image byte (base64 4/3, 124-character lines + 3 framing bytes, SMP header + CBOR + length + CRC, 35-byte answer) → %.1f s per device at %d 8N1; the UARTs run in parallel, so %.1f s is the fleet's limit too",
		smpsim.DefaultBufSize, chunks, smpsim.DefaultBufSize-30, perByte, limit, fwBaud, limit)
	b.ReportMetric(limit, "limit-s")

	// The gateway writes while idle too (telemetry of the MCUs' polled
	// points into its outbox): a quiet window gives the rate to set apart.
	idleA := r.sample()
	wait(envDuration("DROVER_BENCH_FW_IDLE", 20*time.Second))
	idleZ := r.sample()
	idleRate := float64(idleZ.gwWrite-idleA.gwWrite) / idleZ.at.Sub(idleA.at).Seconds()
	b.Logf("idle: the gateway process wrote %d B in %.1f s (%.0f B/s) with no rollout; outbox accepted %.0f messages",
		idleZ.gwWrite-idleA.gwWrite, idleZ.at.Sub(idleA.at).Seconds(), idleRate, idleZ.accepted-idleA.accepted)

	for i, phase := range []struct {
		name, version string
		args          []string
	}{
		{"await", "2.0.0", nil},
		{"no-await", "3.0.0", []string{"--no-await"}},
	} {
		r.publish(phase.version, size)
		jobID := "fw-bench-" + phase.name
		a := r.sample()
		args := append([]string{"firmware", "deploy", "--version", phase.version, "--model", "MCU-1", "--query", "*", "--job-id", jobID}, phase.args...)
		r.ctl(args...)
		where := fmt.Sprintf("properties.reported.firmware.status = 'current' AND properties.reported.firmware.currentVersion = '%s'", phase.version)
		pollEvery(b, 250*time.Millisecond, 30*time.Minute, phase.name+": every MCU current", r.gw, func() (bool, string) {
			c, err := r.count(where)
			failed, _ := r.count("properties.reported.firmware.status = 'failed'")
			if failed > 0 {
				b.Fatalf("%s: %d devices report failed\n%s", phase.name, failed, tailLines(r.gw.Stderr(), 40))
			}
			return err == nil && c == n, fmt.Sprintf("%d of %d current (%v)", c, n, err)
		})
		z := r.sample()
		wall := z.at.Sub(a.at)

		recs, err := r.svc.DeviceJobs(context.Background(), jobID)
		if err != nil {
			b.Fatal(err)
		}
		var recTimes []time.Duration
		var firstStart, lastStart time.Time
		for _, d := range recs {
			s, err1 := time.Parse(time.RFC3339Nano, d.StartTimeUtc)
			e, err2 := time.Parse(time.RFC3339Nano, d.EndTimeUtc)
			if err1 == nil && err2 == nil && !e.Before(s) {
				recTimes = append(recTimes, e.Sub(s))
				if firstStart.IsZero() || s.Before(firstStart) {
					firstStart = s
				}
				if s.After(lastStart) {
					lastStart = s
				}
			}
		}
		records := "n/a (records end once the twin is written)"
		if i == 0 {
			records = fmt.Sprintf("%s, the last started %.1f s after the first", spread(recTimes), lastStart.Sub(firstStart).Seconds())
		}
		uploads := r.uploadTimes(a.gatewayStderrSize)
		cache := cacheFiles(r.dataDir)
		written := z.gwWrite - a.gwWrite
		b.Logf("%s, %d devices: all current %.1f s after the deploy command (%.2f× the one-device limit %.1f s); uploads (plugin) %s; job records (hub) %s; "+
			"downloaded from the hub's HTTPS port %d B over %d connections (image %d B: %.3f×), sent %d B; "+
			"gateway process wrote %d B (%.0f B per device flashed; %.0f B per device beyond the idle rate), plugin %d B; outbox accepted %.0f messages (%.0f reported patches merged): %.1f per device; gateway.db %d→%d B, WAL %d→%d B; firmware cache %v",
			phase.name, n, wall.Seconds(), wall.Seconds()/limit, limit, spread(uploads), records,
			z.down-a.down, z.conns-a.conns, size, float64(z.down-a.down)/float64(size), z.up-a.up,
			written, float64(written)/float64(n), (float64(written)-idleRate*wall.Seconds())/float64(n), z.plWrite-a.plWrite,
			z.accepted-a.accepted, z.merged-a.merged, (z.accepted-a.accepted)/float64(n), a.db, z.db, a.wal, z.wal, cache)
		cpu := func(i int) float64 { return float64(z.cpu[i]-a.cpu[i]) / 100 / wall.Seconds() * 100 }
		b.Logf("%s: CPU over the rollout, %% of one core: gateway %.0f, plugin %.0f, devsim %.0f, hub %.0f (2 cores: 200)",
			phase.name, cpu(0), cpu(1), cpu(2), cpu(3))
		b.ReportMetric(wall.Seconds(), phase.name+"-s")
		b.ReportMetric(float64(z.down-a.down), phase.name+"-downloadB")
		b.ReportMetric(float64(written)/float64(n), phase.name+"-diskB/device")
		if len(uploads) != n {
			b.Errorf("%s: %d uploads logged, want %d", phase.name, len(uploads), n)
		}
		if i == 0 {
			if len(recTimes) != n {
				b.Errorf("%s: %d finished job records, want %d", phase.name, len(recTimes), n)
			}
		}
	}
}
