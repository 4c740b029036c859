package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

func TestAcceptKeepsIDProducedAtAndProps(t *testing.T) {
	clk := newClock()
	o, _ := openTemp(t, Options{Now: clk.Now})
	produced := clk.Now().Add(-90 * time.Second)
	props := iothubtopic.Properties{{Name: iothubtopic.SysContentType, Value: "application/json"}, {Name: "unit", Value: "°C & more"}}
	gen := accept(t, o, Message{Identity: "pump-1", Kind: Telemetry, Body: []byte(`{"t":1}`), Props: props, ProducedAt: produced})
	given := accept(t, o, Message{Identity: "pump-1", Kind: Telemetry, Body: []byte(`{"t":2}`), ID: "my-id"})
	if len(gen) != 32 || given != "my-id" {
		t.Fatalf("ids = %q, %q; want a generated 32-hex id and my-id", gen, given)
	}
	es := next(t, o, "", 10)
	if len(es) != 2 {
		t.Fatalf("got %d entries, want 2", len(es))
	}
	e := es[0]
	if e.ID != gen || !e.ProducedAt.Equal(produced) || !e.AcceptedAt.Equal(clk.Now()) || !slices.Equal(e.Props, props) || e.Kind != Telemetry || e.Identity != "pump-1" {
		t.Fatalf("entry = %+v; want id %s produced %v props %v", e, gen, produced, props)
	}
	if !es[1].ProducedAt.Equal(clk.Now()) {
		t.Fatalf("zero ProducedAt became %v, want the accept time %v", es[1].ProducedAt, clk.Now())
	}
	wp := e.WireProps()
	if v, _ := wp.Get(iothubtopic.SysMessageID); v != gen {
		t.Fatalf("wire props %v: $.mid = %q, want %q", wp, v, gen)
	}
	if v, _ := wp.Get(iothubtopic.SysCreationTime); v != produced.UTC().Format(time.RFC3339Nano) {
		t.Fatalf("wire props %v: $.ctime = %q", wp, v)
	}
}

func TestPerIdentityFIFO(t *testing.T) {
	o, _ := openTemp(t, Options{})
	ids := []string{"a", "b", "c"}
	for i := range 60 {
		accept(t, o, tel(ids[i%3], fmt.Sprint(i)))
	}
	for k, id := range ids {
		got := bodies(next(t, o, id, 100))
		var want []string
		for i := k; i < 60; i += 3 {
			want = append(want, fmt.Sprint(i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("identity %s: order %v, want %v", id, got, want)
		}
	}
	all := bodies(next(t, o, "", 5))
	if !slices.Equal(all, []string{"0", "1", "2", "3", "4"}) {
		t.Fatalf("all identities: %v, want accept order", all)
	}
	if es := next(t, o, "unknown", 10); len(es) != 0 {
		t.Fatalf("unknown identity: %d entries", len(es))
	}
}

func TestReportedMerge(t *testing.T) {
	cases := []struct {
		name    string
		patches []string
		want    []string // queued rows for the identity, in order
	}{
		{"single", []string{`{"a":1}`}, []string{`{"a":1}`}},
		{"latest wins per key", []string{`{"a":1,"b":1}`, `{"a":2}`, `{"c":3}`}, []string{`{"a":2,"b":1,"c":3}`}},
		{"nulls kept as deletes", []string{`{"a":1,"b":2}`, `{"a":null}`}, []string{`{"a":null,"b":2}`}},
		{"nested", []string{`{"points":{"t":1,"p":2}}`, `{"points":{"t":3},"connection":{"state":"up"}}`, `{"points":{"p":null}}`},
			[]string{`{"connection":{"state":"up"},"points":{"p":null,"t":3}}`}},
		{"key order irrelevant", []string{`{"z":1,"a":{"y":1,"b":2}}`, `{"a":{"b":3,"y":1}}`}, []string{`{"a":{"b":3,"y":1},"z":1}`}},
		{"not composable keeps two rows", []string{`{"fw":null}`, `{"fw":{"status":"idle"}}`, `{"fw":{"progress":5}}`},
			[]string{`{"fw":null}`, `{"fw":{"progress":5,"status":"idle"}}`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, _ := openTemp(t, Options{})
			accept(t, o, tel("dev", `"before"`))
			for _, p := range c.patches {
				accept(t, o, rep("dev", p))
			}
			accept(t, o, rep("other", `{"x":1}`))
			got := bodies(mustKind(t, next(t, o, "dev", 100), Reported))
			if !slices.Equal(got, c.want) {
				t.Fatalf("patches %v: queued %v, want %v", c.patches, got, c.want)
			}
			s := stats(t, o)
			if s.Reported != int64(len(c.want))+1 || s.Accepted != int64(len(c.patches))+2 || s.Merged != int64(len(c.patches)-len(c.want)) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func mustKind(t *testing.T, es []Entry, k Kind) []Entry {
	t.Helper()
	var out []Entry
	for _, e := range es {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// A patch merged into a row that was handed out but not yet acked must not
// be lost when the old version's ack arrives.
func TestMergeWhileInFlight(t *testing.T) {
	o, _ := openTemp(t, Options{})
	ctx := context.Background()
	accept(t, o, rep("dev", `{"a":1}`))
	inflight := next(t, o, "dev", 10)
	id2 := accept(t, o, rep("dev", `{"b":2}`))
	if err := o.Ack(ctx, inflight[0].Receipt()); err != nil {
		t.Fatal(err)
	}
	es := next(t, o, "dev", 10)
	if len(es) != 1 || string(es[0].Body) != `{"a":1,"b":2}` || es[0].ID != id2 {
		t.Fatalf("after ack of the old version: %+v, want the merged row with id %s", es, id2)
	}
	if err := o.Ack(ctx, es[0].Receipt()); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, o); s.Depth != 0 || s.Acked != 1 || s.Bytes != 0 {
		t.Fatalf("stats after acks %+v", s)
	}
}

func TestOverflow(t *testing.T) {
	const n = 10
	size := rowSize(10, len(iothubtopic.Properties(nil).Encode()), 32)
	for _, policy := range []Policy{DropOldest, RejectNew} {
		t.Run(policy.String(), func(t *testing.T) {
			o, _ := openTemp(t, Options{MaxBytes: n * size, OnFull: policy})
			ctx := context.Background()
			var full int
			for i := range n + 5 {
				_, err := o.Accept(ctx, tel("dev", fmt.Sprintf("%010d", i)))
				if errors.Is(err, ErrFull) {
					full++
					continue
				}
				if err != nil {
					t.Fatalf("accept %d: %v", i, err)
				}
			}
			got := bodies(next(t, o, "", 100))
			s := stats(t, o)
			if s.Bytes > s.MaxBytes || s.Depth != n {
				t.Fatalf("stats %+v: want depth %d within %d bytes", s, n, n*size)
			}
			switch policy {
			case DropOldest:
				if full != 0 || s.DroppedFull != 5 || got[0] != fmt.Sprintf("%010d", 5) || got[n-1] != fmt.Sprintf("%010d", n+4) {
					t.Fatalf("drop_oldest: %d ErrFull, stats %+v, queue %v", full, s, got)
				}
			case RejectNew:
				if full != 5 || s.Rejected != 5 || s.DroppedFull != 0 || got[0] != fmt.Sprintf("%010d", 0) || got[n-1] != fmt.Sprintf("%010d", n-1) {
					t.Fatalf("reject_new: %d ErrFull, stats %+v, queue %v", full, s, got)
				}
			}
			if _, err := o.Accept(ctx, tel("dev", string(make([]byte, n*size)))); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("oversized message: %v, want ErrTooLarge", err)
			}
		})
	}
	t.Run("drop_oldest spares reported rows", func(t *testing.T) {
		o, _ := openTemp(t, Options{MaxBytes: 4 * size})
		accept(t, o, rep("dev", `{"a":1}`))
		for i := range 10 {
			accept(t, o, tel("dev", fmt.Sprintf("%010d", i)))
		}
		es := next(t, o, "", 100)
		if len(mustKind(t, es, Reported)) != 1 {
			t.Fatalf("reported row evicted: %v", bodies(es))
		}
	})
}

func TestTTL(t *testing.T) {
	clk := newClock()
	o, _ := openTemp(t, Options{TTL: time.Hour, Now: clk.Now})
	for i := range 3 {
		accept(t, o, tel("dev", fmt.Sprint("old", i)))
	}
	accept(t, o, rep("dev", `{"a":1}`))
	clk.Add(30 * time.Minute)
	accept(t, o, tel("dev", "new0"))
	accept(t, o, tel("dev", "new1"))
	if s := stats(t, o); s.OldestAge != 30*time.Minute {
		t.Fatalf("oldest age %v, want 30m", s.OldestAge)
	}
	clk.Add(31 * time.Minute)

	t.Run("next skips and sweeps expired", func(t *testing.T) {
		got := bodies(next(t, o, "dev", 100))
		if !slices.Equal(got, []string{`{"a":1}`, "new0", "new1"}) {
			t.Fatalf("after expiry: %v", got)
		}
		if s := stats(t, o); s.DroppedTTL != 3 || s.Depth != 3 {
			t.Fatalf("stats %+v, want 3 dropped by ttl", s)
		}
	})
	t.Run("explicit sweep", func(t *testing.T) {
		clk.Add(time.Hour)
		if err := o.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if s := stats(t, o); s.DroppedTTL != 5 || s.Depth != 1 || s.Reported != 1 {
			t.Fatalf("stats %+v, want only the reported row left", s)
		}
	})
	t.Run("accept times never go back", func(t *testing.T) {
		clk.Add(-2 * time.Hour) // the wall clock jumps back
		accept(t, o, tel("dev", "after jump"))
		es := next(t, o, "dev", 100)
		if last := es[len(es)-1]; last.AcceptedAt.Before(es[0].AcceptedAt) {
			t.Fatalf("accept time went back: %v", es)
		}
	})
}

func TestAckAndRedeliveryAcrossReopen(t *testing.T) {
	ctx := context.Background()
	o, path := openTemp(t, Options{})
	var ids []string
	for i := range 10 {
		ids = append(ids, accept(t, o, Message{Identity: "dev", Kind: Telemetry, Body: []byte(fmt.Sprint(i)), Props: iothubtopic.Properties{{Name: "n", Value: fmt.Sprint(i)}}}))
	}
	accept(t, o, rep("dev", `{"a":1}`))
	es := next(t, o, "dev", 100)
	if err := o.Ack(ctx, receipts(es[:4])...); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(ctx, es[0].Receipt()); err != nil { // a second ack is harmless
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o2 := openAt(t, path, Options{})
	again := next(t, o2, "dev", 100)
	if len(again) != 7 {
		t.Fatalf("after reopen %d entries, want 7", len(again))
	}
	for i, e := range again {
		want := es[4+i]
		if e.ID != want.ID || string(e.Body) != string(want.Body) || !slices.Equal(e.Props, want.Props) || !e.ProducedAt.Equal(want.ProducedAt) {
			t.Fatalf("redelivered %d = %+v, want %+v", i, e, want)
		}
	}
	if s := stats(t, o2); s.Accepted != 11 || s.Acked != 4 || s.Depth != 7 || s.Telemetry != 6 || s.Reported != 1 {
		t.Fatalf("counters after reopen %+v", s)
	}
	if again[0].ID != ids[4] {
		t.Fatalf("first redelivered id %s, want %s", again[0].ID, ids[4])
	}
}

func TestConcurrentProducers(t *testing.T) {
	o, _ := openTemp(t, Options{})
	const producers, each = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				m := tel(fmt.Sprint("dev-", p%4), fmt.Sprintf("%d-%04d", p, i))
				if p%4 == 3 && i%10 == 0 {
					m = rep(fmt.Sprint("dev-", p%4), fmt.Sprintf(`{"p%d":%d}`, p, i))
				}
				if _, err := o.Accept(context.Background(), m); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := stats(t, o)
	if s.Accepted != producers*each {
		t.Fatalf("accepted %d, want %d", s.Accepted, producers*each)
	}
	// Per producer, its telemetry comes out in the order it was accepted.
	last := map[int]string{}
	for _, e := range mustKind(t, next(t, o, "", 10*producers*each), Telemetry) {
		var p, i int
		if _, err := fmt.Sscanf(string(e.Body), "%d-%d", &p, &i); err != nil {
			t.Fatalf("body %q: %v", e.Body, err)
		}
		if prev, ok := last[p]; ok && prev >= string(e.Body) {
			t.Fatalf("producer %d: %s after %s", p, e.Body, prev)
		}
		last[p] = string(e.Body)
	}
	if s.Reported != 1 || s.Depth != s.Telemetry+1 {
		t.Fatalf("stats %+v: want one merged reported row", s)
	}
}

// TestDiskBounded fills the outbox many times over under drop_oldest and
// checks that the file (database plus WAL) stops growing.
func TestDiskBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~20 MB")
	}
	const maxBytes = 1 << 20
	o, path := openTemp(t, Options{MaxBytes: maxBytes})
	body := make([]byte, 100)
	fileSize := func() int64 {
		var n int64
		for _, p := range []string{path, path + "-wal"} {
			if fi, err := os.Stat(p); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	var sizes []int64
	for round := range 8 {
		var wg sync.WaitGroup
		for p := range 8 {
			wg.Go(func() {
				for range maxBytes / 200 / 8 * 2 { // about twice the bound per round
					if _, err := o.Accept(context.Background(), Message{Identity: fmt.Sprint("dev-", p), Kind: Telemetry, Body: body}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		sizes = append(sizes, fileSize())
		_ = round
	}
	s := stats(t, o)
	if s.Bytes > maxBytes || s.DroppedFull == 0 {
		t.Fatalf("stats %+v", s)
	}
	// Free pages are reused: after the first fill the file must not keep growing.
	if limit := 8*int64(maxBytes) + 20<<20; sizes[len(sizes)-1] > limit || sizes[len(sizes)-1] > 2*sizes[1]+1<<20 {
		t.Fatalf("file sizes per round %v: not bounded (limit %d)", sizes, limit)
	}
	t.Logf("file size per round (db+wal, bound %d accounted bytes): %v", maxBytes, sizes)
}

func TestClose(t *testing.T) {
	o, _ := openTemp(t, Options{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				_, err := o.Accept(context.Background(), tel("dev", "x"))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	accept(t, o, tel("dev", "first"))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // every producer got an answer: no op was queued after the writer stopped
	if err := o.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := o.Next(context.Background(), "", 1); err == nil {
		t.Fatal("Next after Close succeeded")
	}
}
