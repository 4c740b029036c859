package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/outbox"
)

// Knobs of BenchmarkFlashWear, all optional (defaults in brackets):
//
//	DROVER_BENCH_WEAR_DEVICES  comma-separated fleet sizes [1,50,250]
//	DROVER_BENCH_WEAR_MODE     outbox.durability to configure; empty leaves the key out
//	                           (the default of the build under test) []
//	DROVER_BENCH_WEAR_SPILL_AFTER  outbox.spill_after to configure; empty leaves it out []
//	DROVER_BENCH_WEAR_WINDOW   length of each measured window [30s]
//	DROVER_BENCH_WEAR_SETTLE   time after all devices are connected, before measuring [10s]
//	DROVER_BENCH_WEAR_DRAIN    backlog for the drain phase, in seconds of production of the
//	                           whole fleet; 0 skips it [3600 for up to 50 devices, else 0]

// ioWrite reads write_bytes (bytes the process caused to be sent to the
// block layer) from /proc/PID/io.
func ioWrite(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, fmt.Errorf("read io of %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no write_bytes in /proc/%d/io", pid)
}

// fileSizes returns the sizes of gateway.db and its WAL.
func fileSizes(dataDir string) (db, wal int64) {
	if fi, err := os.Stat(filepath.Join(dataDir, "gateway.db")); err == nil {
		db = fi.Size()
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "gateway.db-wal")); err == nil {
		wal = fi.Size()
	}
	return db, wal
}

// wearSample is one reading of the gateway's writes and its outbox counters.
type wearSample struct {
	at              time.Time
	written         int64
	accepted, merge float64
	bytes           float64 // outbox accounted bytes queued
	depth           float64
	db, wal         int64
	spill           int64 // bytes in the spill log's segment files
}

func (r *offlineRig) wearSample() wearSample {
	r.b.Helper()
	w, err := ioWrite(r.gw.Cmd.Process.Pid)
	if err != nil {
		r.b.Fatal(err)
	}
	st, err := r.api.stats()
	if err != nil {
		r.b.Fatal(err)
	}
	s := wearSample{at: time.Now(), written: w,
		accepted: field(st, "outbox", "Accepted"), merge: field(st, "outbox", "Merged"),
		bytes: field(st, "outbox", "Bytes"), depth: field(st, "outbox", "Depth")}
	s.db, s.wal = fileSizes(r.dataDir)
	segs, _ := filepath.Glob(filepath.Join(r.dataDir, "outbox-spill", "*.seg"))
	for _, f := range segs {
		if fi, err := os.Stat(f); err == nil {
			s.spill += fi.Size()
		}
	}
	return s
}

// report prints and records the bytes written per accepted message between two samples.
func (r *offlineRig) reportWear(phase string, n int, a, z wearSample) {
	b := r.b
	msgs := z.accepted - a.accepted
	written := z.written - a.written
	per := float64(written) / max(msgs, 1)
	stored := (z.bytes - a.bytes) / max(msgs, 1)
	b.Logf("wear %s, %d devices: %d bytes written in %.1fs for %.0f messages (%.0f reported patches merged): %.0f B/message; "+
		"outbox accounted %+.0f B/message, depth %.0f→%.0f; gateway.db %d→%d B, WAL %d→%d B, spill log %d→%d B",
		phase, n, written, z.at.Sub(a.at).Seconds(), msgs, z.merge-a.merge, per, stored, a.depth, z.depth, a.db, z.db, a.wal, z.wal, a.spill, z.spill)
	b.ReportMetric(per, phase+"-B/msg")
}

// BenchmarkFlashWear measures the disk bytes the gateway process writes
// (/proc/PID/io write_bytes, which counts what reaches the block layer:
// WAL frames, checkpoints into gateway.db, anything else the process
// writes) per accepted outbox message (telemetry and reported patches,
// merged patches counted too), at 1, 50 and 250 devices polled every
// second: with the uplink healthy, with the hub stopped, and while a
// backlog drains after the hub comes back. Real processes: droverhub,
// devsim Modbus TCP units, `drover run` with its Modbus plugin.
func BenchmarkFlashWear(b *testing.B) {
	sizes := []int{1, 50, 250}
	if v := os.Getenv("DROVER_BENCH_WEAR_DEVICES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("DROVER_BENCH_WEAR_DEVICES: bad size %q", f)
			}
			sizes = append(sizes, n)
		}
	}
	mode := os.Getenv("DROVER_BENCH_WEAR_MODE")
	window := envDuration("DROVER_BENCH_WEAR_WINDOW", 30*time.Second)
	settle := envDuration("DROVER_BENCH_WEAR_SETTLE", 10*time.Second)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			for range b.N {
				flashWearRun(b, n, mode, window, settle)
			}
		})
	}
}

func flashWearRun(b *testing.B, n int, mode string, window, settle time.Duration) {
	r := newOfflineRig(b, "gw-wear", n, min(n, 50), time.Second, 10_000_000)
	var outboxKeys string
	if mode != "" {
		outboxKeys += "  durability: " + mode + "\n"
	}
	if v := os.Getenv("DROVER_BENCH_WEAR_SPILL_AFTER"); v != "" {
		outboxKeys += "  spill_after: " + v + "\n"
	}
	if outboxKeys != "" {
		raw, err := os.ReadFile(r.cfgPath)
		if err != nil {
			b.Fatal(err)
		}
		writeFile(b, r.cfgPath, string(raw)+"outbox:\n"+outboxKeys)
	}
	r.startGateway("wear")
	r.waitAPI(60 * time.Second)
	ctx := context.Background()
	poll(b, 120*time.Second, "all children connected", r.gw, func() (bool, string) {
		c, err := r.connectedChildren(ctx)
		return err == nil && c == n, fmt.Sprintf("%d of %d connected (%v)", c, n, err)
	})
	wait(settle)

	// Healthy uplink.
	a := r.wearSample()
	wait(window)
	z := r.wearSample()
	r.reportWear("healthy", n, a, z)

	// Uplink down: the hub stops, the gateway queues.
	terminate(b, r.hub.Proc, "droverhub")
	down := time.Now()
	a = r.wearSample()
	wait(window)
	z = r.wearSample()
	r.reportWear("down", n, a, z)

	drainSecs := envInt("DROVER_BENCH_WEAR_DRAIN", map[bool]int{true: 3600, false: 0}[n <= 50])
	if drainSecs > 0 {
		// A backlog of drainSecs of the fleet's production, written into the
		// stopped gateway's outbox as BenchmarkOutboxDrainToHub does.
		terminate(b, r.gw, "drover")
		var st outbox.Stats
		if mode == "" || mode == "spill" {
			st = r.prefillSpillLog(n*drainSecs, time.Second)
		} else {
			_, _, _, st = r.prefillBacklog(n*drainSecs, time.Second)
		}
		r.startGateway("wear-drain")
		r.waitAPI(60 * time.Second)
		b.Logf("backlog: %d rows, %d accounted bytes", st.Depth, st.Bytes+st.MemoryBytes)
	}
	a = r.wearSample()
	r.startHub()
	pollEvery(b, 200*time.Millisecond, 30*time.Minute, "outbox drained", r.gw, func() (bool, string) {
		st, err := r.api.stats()
		d := field(st, "outbox", "Depth")
		return err == nil && d == 0, fmt.Sprintf("depth %.0f (%v)", d, err)
	})
	z = r.wearSample()
	drained := a.depth
	b.Logf("drain after %.0fs down: %.0f rows queued, %d bytes written until empty (%.0f B per drained row; %.0f messages accepted meanwhile)",
		time.Since(down).Seconds(), drained, z.written-a.written, float64(z.written-a.written)/max(drained, 1), z.accepted-a.accepted)
	b.ReportMetric(float64(z.written-a.written)/max(drained, 1), "drain-B/row")
	terminate(b, r.gw, "drover")
}

// wait lets the system run for d: the measured windows are periods of
// production, not synchronisation.
func wait(d time.Duration) { time.Sleep(d) }

// prefillSpillLog spills n synthetic telemetry messages into the stopped
// gateway's spill log, as a long outage under spill durability leaves
// them: in accept order, the identities interleaved, a spill whenever
// memory_bytes are held and the rest at Close.
func (r *offlineRig) prefillSpillLog(n int, every time.Duration) outbox.Stats {
	b := r.b
	box, err := outbox.Open(filepath.Join(r.dataDir, "gateway.db"), outbox.Options{Sync: outbox.SyncNormal, Durability: outbox.Spill,
		SpillAfter: time.Hour, SpillDir: filepath.Join(r.dataDir, "outbox-spill"),
		MaxBytes: int64(config.DefaultOutboxMaxBytes), TTL: config.DefaultOutboxTTL})
	if err != nil {
		b.Fatal(err)
	}
	per := (n + len(r.devices) - 1) / len(r.devices)
	first := time.Now().Add(-time.Duration(per) * every)
	ctx := context.Background()
	for i := range per {
		for _, id := range r.devices {
			if _, err := box.Accept(ctx, backlogMessage(id, i, first, every)); err != nil {
				b.Fatal(err)
			}
		}
	}
	st, err := box.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := box.Close(); err != nil {
		b.Fatal(err)
	}
	return st
}
