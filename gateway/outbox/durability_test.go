package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// rowsOnDisk counts outbox rows through a connection of its own: what a
// restart would find.
func rowsOnDisk(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM outbox_msg`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// awaitRows waits until the database at path holds want outbox rows
// (committed: another connection reads it).
func awaitRows(t *testing.T, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := rowsOnDisk(t, path)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows on disk after 10s, want %d", n, want)
		}
		<-time.After(5 * time.Millisecond)
	}
}

func acceptN(t *testing.T, o *Outbox, ident string, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i++ {
		id, err := o.Accept(t.Context(), Message{Identity: ident, Kind: Telemetry, Body: fmt.Appendf(nil, `{"i":%d}`, i)})
		if err != nil {
			t.Fatalf("accept %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func idsOf(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %d ids %v, want %d %v", what, len(got), got, len(want), want)
	}
}

// awaitStats polls Stats until cond holds: the spiller has no event a test
// can subscribe to, and its work is bounded by SpillAfter.
func awaitStats(t *testing.T, o *Outbox, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := o.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 10s, stats %+v", what, st)
		}
		<-time.After(5 * time.Millisecond)
	}
}

// TestSpill covers the spill mode's rules, each against the database file:
// held in memory while acked promptly, spilled when unacked past the bound,
// over the memory bound, and at Close; queue order across memory and disk.
func TestSpill(t *testing.T) {
	t.Run("acked promptly never touches the disk", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o, err := Open(path, Options{Durability: Spill, SpillAfter: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		ids := acceptN(t, o, "dev-1", 0, 50)
		st, err := o.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Memory != 50 || st.Depth != 50 || st.Durability != "spill" {
			t.Fatalf("stats after 50 accepts %+v", st)
		}
		es, err := o.Next(t.Context(), "dev-1", 100)
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "next", idsOf(es), ids)
		rs := make([]Receipt, len(es))
		for i, e := range es {
			rs[i] = e.Receipt()
		}
		if err := o.Ack(t.Context(), rs...); err != nil {
			t.Fatal(err)
		}
		if n := rowsOnDisk(t, path); n != 0 {
			t.Fatalf("%d rows on disk, want 0", n)
		}
		if st, _ := o.Stats(t.Context()); st.Depth != 0 || st.Acked != 50 {
			t.Fatalf("stats after acking all %+v", st)
		}
	})
	t.Run("unacked past the bound is spilled, in order", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o, err := Open(path, Options{Durability: Spill, SpillAfter: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		ids := acceptN(t, o, "dev-1", 0, 20)
		awaitStats(t, o, "spilled", func(s Stats) bool { return s.Memory == 0 })
		if n := rowsOnDisk(t, path); n != 20 {
			t.Fatalf("%d rows on disk after the bound, want 20", n)
		}
		ids = append(ids, acceptN(t, o, "dev-1", 20, 5)...) // held in memory, after the spilled ones
		es, err := o.Next(t.Context(), "dev-1", 100)
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "next across disk and memory", idsOf(es), ids)
		// Acks of spilled rows delete them, AckEvery later.
		rs := make([]Receipt, len(es))
		for i, e := range es {
			rs[i] = e.Receipt()
		}
		if err := o.Ack(t.Context(), rs...); err != nil {
			t.Fatal(err)
		}
		if st, _ := o.Stats(t.Context()); st.Depth != 0 || st.Spilled < 20 {
			t.Fatalf("stats after acking all %+v", st)
		}
		awaitStats(t, o, "deferred deletes done", func(s Stats) bool { return s.AckDeferred == 0 && s.Acked == 25 })
		awaitRows(t, path, 0)
	})
	t.Run("a spilled reported patch merges into the queued row", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openAt(t, path, Options{Durability: Spill, SpillAfter: time.Hour})
		accept(t, o, rep("dev-1", `{"a":1,"b":1}`))
		if err := o.spillAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		id := accept(t, o, rep("dev-1", `{"b":2,"c":3}`))
		if err := o.spillAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := rowsOnDisk(t, path); n != 1 {
			t.Fatalf("%d rows on disk after two spills of one identity's reported state, want 1", n)
		}
		es := next(t, o, "dev-1", 10)
		if len(es) != 1 || es[0].ID != id || string(es[0].Body) != `{"a":1,"b":2,"c":3}` {
			t.Fatalf("queued %+v, want one merged patch with the last id", es)
		}
		if st := stats(t, o); st.Spilled != 1 || st.Depth != 1 || st.Accepted != 2 {
			t.Fatalf("stats %+v, want 1 spilled row, depth 1, 2 accepted", st)
		}
	})
	t.Run("over the memory bound the oldest are spilled at once", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o, err := Open(path, Options{Durability: Spill, SpillAfter: time.Hour, MemoryBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		ids := acceptN(t, o, "dev-1", 0, 2000) // about 2000 × 60 B accounted: over 64 KiB
		st, err := o.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.MemoryBytes > 64<<10 || st.Spilled == 0 || st.Depth != 2000 {
			t.Fatalf("stats %+v: want at most 64 KiB held, some spilled, 2000 queued", st)
		}
		if n := rowsOnDisk(t, path); int64(n) != st.Spilled {
			t.Fatalf("%d rows on disk, %d spilled", n, st.Spilled)
		}
		es, err := o.Next(t.Context(), "", 5000)
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "next across disk and memory", idsOf(es), ids)
	})
	t.Run("close spills everything, a reopen finds it in order", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o, err := Open(path, Options{Durability: Spill, SpillAfter: time.Hour, HeldFile: path + ".held"})
		if err != nil {
			t.Fatal(err)
		}
		ids := acceptN(t, o, "dev-1", 0, 30)
		if _, err := o.Accept(t.Context(), Message{Identity: "dev-2", Kind: Reported, Body: []byte(`{"a":1}`)}); err != nil {
			t.Fatal(err)
		}
		if _, err := o.Accept(t.Context(), Message{Identity: "dev-2", Kind: Reported, Body: []byte(`{"b":2}`)}); err != nil {
			t.Fatal(err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if n := rowsOnDisk(t, path); n != 31 {
			t.Fatalf("%d rows on disk after Close, want 30 telemetry and 1 merged reported", n)
		}
		o, err = Open(path, Options{Durability: Spill, SpillAfter: time.Hour, HeldFile: path + ".held"})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		es, err := o.Next(t.Context(), "dev-1", 100)
		if err != nil {
			t.Fatal(err)
		}
		sameIDs(t, "after reopen", idsOf(es), ids)
		rep, err := o.Next(t.Context(), "dev-2", 10)
		if err != nil || len(rep) != 1 || string(rep[0].Body) != `{"a":1,"b":2}` {
			t.Fatalf("reported after reopen: %v %v", rep, err)
		}
		if st, _ := o.Stats(t.Context()); st.LostInMemory != 0 {
			t.Fatalf("a clean Close counted %d lost", st.LostInMemory)
		}
	})
}

// TestBatched checks that batched durability commits before Accept returns
// (each accepted message is on disk, read through another connection) and
// that concurrent producers share commits.
func TestBatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	o, err := Open(path, Options{Durability: Batched, BatchEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := range 10 {
				if _, err := o.Accept(context.Background(), Message{Identity: fmt.Sprint("dev-", p), Kind: Telemetry, Body: fmt.Appendf(nil, `{"i":%d}`, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := rowsOnDisk(t, path); n != 80 {
		t.Fatalf("%d rows on disk after 80 accepts returned, want 80", n)
	}
	if st, _ := o.Stats(t.Context()); st.Memory != 0 || st.Depth != 80 || st.Durability != "batched" {
		t.Fatalf("stats %+v", st)
	}
}

func TestParseDurability(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Durability
		err  bool
	}{
		{"spill", Spill, false}, {"batched", Batched, false}, {"every_message", EveryMessage, false},
		{"", 0, true}, {"Spill", 0, true}, {"every-message", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDurability(tc.in)
			if (err != nil) != tc.err || (!tc.err && (got != tc.want || got.String() != tc.in)) {
				t.Fatalf("ParseDurability(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}
