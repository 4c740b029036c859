package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkWearDrain reports the disk bytes written (/proc/self/io
// write_bytes, including the checkpoint at Close) per row while a backlog
// drains through a Drainer whose senders acknowledge at once: the cost of
// removing acknowledged rows. The drain is paced at wearDrainRate messages
// per second (the Drainer's token bucket), about what a hub acknowledges on
// the standard machine: unpaced, concurrent turns end together and share
// commits, which hides the per-commit cost. The backlog (wearDrainRows telemetry rows,
// interleaved over the identities as concurrent producers leave them) is
// written with every_message durability (spill-log: spilled to the log)
// and not measured; the drain runs
// under each durability mode with the daemon's Drainer defaults. SyncFull,
// as the gateway. spill-log is Spill with a spill log (what the gateway
// runs): its backlog is spilled there, as an outage leaves it.
func BenchmarkWearDrain(b *testing.B) {
	for _, mode := range []string{"every_message", "batched", "spill", "spill-log"} {
		for _, idents := range []int{1, 50, 250} {
			b.Run(fmt.Sprintf("%s/identities=%d", mode, idents), func(b *testing.B) {
				for range b.N {
					benchWearDrain(b, mode, idents)
				}
			})
		}
	}
}

const (
	wearDrainRows = 10000
	wearDrainRate = 1000
)

func benchWearDrain(b *testing.B, mode string, idents int) {
	path := filepath.Join(b.TempDir(), "gateway.db")
	opts := Options{Sync: SyncFull, MaxBytes: 4 << 30, TTL: -1}
	if mode == "spill-log" {
		opts.Durability, opts.SpillAfter, opts.SpillDir = Spill, time.Hour, path+".spill"
	} else {
		var err error
		if opts.Durability, err = ParseDurability(mode); err != nil {
			b.Fatal(err)
		}
	}
	fill := opts
	if mode != "spill-log" {
		fill.Durability = EveryMessage
	}
	o, err := Open(path, fill)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := benchBody()
	var wg sync.WaitGroup
	per := wearDrainRows / idents
	for i := range idents {
		wg.Go(func() {
			for range per {
				if _, err := o.Accept(ctx, Message{Identity: fmt.Sprint("dev-", i), Kind: Telemetry, Body: body, Props: benchProps}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		b.Fatal(err)
	}
	o, err = Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	st, err := o.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	rows := st.Depth
	nop := func(context.Context, Entry) error { return nil }
	d, err := NewDrainer(o, DrainerOptions{Telemetry: nop, Reported: nop, Rate: wearDrainRate})
	if err != nil {
		b.Fatal(err)
	}
	before := selfWritten(b)
	start := time.Now()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	for {
		st, err := o.Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st.Depth == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(start)
	cancel()
	<-done
	if err := o.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(selfWritten(b)-before)/float64(rows), "drain-B/row")
	b.ReportMetric(float64(rows)/el.Seconds(), "rows/s")
	b.ReportMetric(0, "ns/op")
}
