package outbox

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWearPaced reports the disk bytes written per accepted message
// under spill durability with the uplink down (nothing acknowledged) and
// producers paced like the gateway's bridges, on a time scale four times
// faster: SpillAfter 500 ms (the default 2 s) and one telemetry message and
// one reported patch per identity every 250 ms (a 1 s poll; identities
// staggered over it), for 15 s (60 s). The figure is the spills' writes and
// the checkpoint at Close; stored-B/msg is the outbox's accounted bytes
// (on disk and held) per accepted message at the end. The outbox's fixed
// 100 ms spacing of spill commits is not scaled, so a faster scale would
// distort the spills.
//
// store=log spills to the spill log (Options.SpillDir, what the gateway
// uses), store=database to SQLite.
func BenchmarkWearPaced(b *testing.B) {
	for _, store := range []string{"log", "database"} {
		for _, idents := range []int{1, 50, 250} {
			b.Run(fmt.Sprintf("store=%s/identities=%d/down", store, idents), func(b *testing.B) {
				for range b.N {
					benchWearPaced(b, idents, true, store == "log")
				}
			})
		}
		// Telemetry only: every spilled row is appended, none is updated in
		// place, which is the case a rollback journal writes least for.
		for _, idents := range []int{50, 250} {
			b.Run(fmt.Sprintf("store=%s/identities=%d/down/telemetry-only", store, idents), func(b *testing.B) {
				for range b.N {
					benchWearPaced(b, idents, false, store == "log")
				}
			})
		}
	}
}

func benchWearPaced(b *testing.B, idents int, reported, spillLog bool) {
	const (
		scale = 4
		poll  = time.Second / scale
		run   = 60 * time.Second / scale
	)
	path := filepath.Join(b.TempDir(), "gateway.db")
	opts := Options{Sync: SyncFull, Durability: Spill, SpillAfter: 2 * time.Second / scale, MaxBytes: 4 << 30, TTL: -1}
	if spillLog {
		opts.SpillDir = path + ".spill"
	}
	o, err := Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := benchBody()
	before := selfWritten(b)
	// The bridges poll each device on its own timer: one identity per tick,
	// spread evenly over the poll period.
	tk := time.NewTicker(poll / time.Duration(idents))
	defer tk.Stop()
	n := 0
	end := time.Now().Add(run)
	for tick := 0; ; tick++ {
		if now := <-tk.C; now.After(end) {
			break
		}
		id := fmt.Sprint("dev-", tick%idents)
		if _, err := o.Accept(ctx, Message{Identity: id, Kind: Telemetry, Body: body, Props: benchProps}); err != nil {
			b.Fatal(err)
		}
		if !reported {
			n++
			continue
		}
		if _, err := o.Accept(ctx, Message{Identity: id, Kind: Reported, Body: fmt.Appendf(nil, `{"points":{"p%d":%d}}`, tick%4, tick)}); err != nil {
			b.Fatal(err)
		}
		n += 2
	}
	st, err := o.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := o.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(selfWritten(b)-before)/float64(n), "written-B/msg")
	b.ReportMetric(float64(st.Spilled)/float64(n), "spilled/msg")
	b.ReportMetric(float64(st.Bytes+st.MemoryBytes)/float64(n), "stored-B/msg")
	b.ReportMetric(0, "ns/op")
}
