package outbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// selfWritten reads this process's write_bytes from /proc/self/io.
func selfWritten(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no write_bytes in /proc/self/io")
	return 0
}

// BenchmarkWear reports the disk bytes written (/proc/self/io write_bytes,
// after a final fsync-free close so checkpoint writes count) per accepted
// message, by kind, durability and identities, in two situations: "acked"
// (a healthy uplink: every message is acknowledged 20 ms after it was
// accepted) and "down" (nothing is acknowledged; messages stay queued).
// Producers send one message per identity every 20 ms of simulated time
// (no sleeping: the producer loop runs as fast as it can, rounds of one
// message per identity). The database is on the test's temporary
// directory's file system; the figure is what reaches the block layer.
func BenchmarkWear(b *testing.B) {
	for _, mode := range []Durability{EveryMessage, Batched, Spill} {
		for _, kind := range []Kind{Telemetry, Reported} {
			for _, idents := range []int{1, 250} {
				for _, acked := range []bool{true, false} {
					situation := map[bool]string{true: "acked", false: "down"}[acked]
					b.Run(fmt.Sprintf("%s/%s/identities=%d/%s", mode, kind, idents, situation), func(b *testing.B) {
						benchWear(b, mode, kind, idents, acked)
					})
				}
			}
		}
	}
}

func benchWear(b *testing.B, mode Durability, kind Kind, idents int, acked bool) {
	path := filepath.Join(b.TempDir(), "gateway.db")
	o, err := Open(path, Options{Sync: SyncFull, Durability: mode, SpillAfter: 2 * time.Second, BatchEvery: 200 * time.Millisecond, MaxBytes: 4 << 30, TTL: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := benchBody()
	rounds := max(b.N/idents, 1)
	before := selfWritten(b)
	var stored int64
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range idents {
			wg.Go(func() {
				m := Message{Identity: fmt.Sprint("dev-", i), Kind: kind, Body: body, Props: benchProps}
				if kind == Reported {
					m.Body = fmt.Appendf(nil, `{"points":{"p%d":%d}}`, r%8, r)
				}
				if _, err := o.Accept(ctx, m); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		if acked {
			es, err := o.Next(ctx, "", 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			rs := make([]Receipt, len(es))
			for i, e := range es {
				rs[i] = e.Receipt()
			}
			if err := o.Ack(ctx, rs...); err != nil {
				b.Fatal(err)
			}
		}
	}
	st, err := o.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	stored = st.Bytes + st.MemoryBytes
	if err := o.Close(); err != nil {
		b.Fatal(err)
	}
	n := float64(rounds * idents)
	b.ReportMetric(float64(selfWritten(b)-before)/n, "written-B/msg")
	if !acked && st.Depth > 0 {
		b.ReportMetric(float64(stored)/float64(st.Depth), "stored-B/row")
	}
	b.ReportMetric(0, "ns/op")
}
