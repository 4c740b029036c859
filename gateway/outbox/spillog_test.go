package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/seglog"
)

// openLog opens a spill-mode outbox with a spill log beside its database.
func openLog(t *testing.T, path string, opts Options) *Outbox {
	t.Helper()
	opts.Durability = Spill
	opts.SpillDir = path + ".spill"
	return openAt(t, path, opts)
}

// segmentFiles lists the spill log's segment files.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// drainAll hands out and acknowledges everything, identity by identity,
// and returns the ids per identity in the order they were handed out.
func drainAll(t *testing.T, o *Outbox, idents []string) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for range 100000 {
		progress := false
		for _, id := range idents {
			es := next(t, o, id, 32)
			if len(es) == 0 {
				continue
			}
			progress = true
			got[id] = append(got[id], idsOf(es)...)
			if err := o.Ack(t.Context(), receipts(es)...); err != nil {
				t.Fatal(err)
			}
		}
		if !progress {
			if st := stats(t, o); st.Depth == 0 {
				return got
			}
			// Acks made room: the keeper loads the next segment.
			<-time.After(time.Millisecond)
		}
	}
	t.Fatalf("drain did not end: %+v", stats(t, o))
	return nil
}

func TestSpillLog(t *testing.T) {
	t.Run("unacked past the bound is appended to the log, not the database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openLog(t, path, Options{SpillAfter: 100 * time.Millisecond})
		ids := acceptN(t, o, "dev-1", 0, 20)
		awaitStats(t, o, "spilled", func(s Stats) bool { return s.Memory == 0 && s.Logged == 20 })
		if n := rowsOnDisk(t, path); n != 0 {
			t.Fatalf("%d rows in the database, want 0: spills go to the log", n)
		}
		if f := segmentFiles(t, path+".spill"); len(f) == 0 {
			t.Fatal("no segment file in the spill dir")
		}
		ids = append(ids, acceptN(t, o, "dev-1", 20, 5)...) // held, after the logged ones
		es := next(t, o, "dev-1", 100)
		sameIDs(t, "next across log and memory", idsOf(es), ids)
		if err := o.Ack(t.Context(), receipts(es)...); err != nil {
			t.Fatal(err)
		}
		st := stats(t, o)
		if st.Depth != 0 || st.Logged != 0 || st.Acked != 25 || st.Spilled != 20 || st.Bytes != 0 {
			t.Fatalf("stats after acking all %+v", st)
		}
	})
	t.Run("a restart finds what was logged and not acked, in order", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		opts := Options{SpillAfter: time.Hour, HeldFile: path + ".held"}
		o := openLog(t, path, opts)
		ids := acceptN(t, o, "dev-1", 0, 30)
		accept(t, o, rep("dev-2", `{"a":1}`))
		if err := o.spillAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		es := next(t, o, "dev-1", 10)
		if err := o.Ack(t.Context(), receipts(es)...); err != nil {
			t.Fatal(err)
		}
		accept(t, o, rep("dev-2", `{"b":2}`)) // held: Close spills it
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if n := rowsOnDisk(t, path); n != 0 {
			t.Fatalf("%d rows in the database, want 0", n)
		}
		o = openLog(t, path, opts)
		sameIDs(t, "after reopen", idsOf(next(t, o, "dev-1", 100)), ids[10:])
		r := next(t, o, "dev-2", 10)
		if len(r) != 1 || string(r[0].Body) != `{"a":1,"b":2}` {
			t.Fatalf("reported after reopen %v, want one composed patch", bodies(r))
		}
		if st := stats(t, o); st.LostInMemory != 0 || st.Depth != 21 || st.Logged != 21 {
			t.Fatalf("stats after reopen %+v: want 20 telemetry and 1 reported logged, nothing lost", st)
		}
	})
	t.Run("a spilled reported patch supersedes the logged one", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openLog(t, path, Options{SpillAfter: time.Hour})
		accept(t, o, rep("dev-1", `{"a":1,"b":1}`))
		if err := o.spillAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		id := accept(t, o, rep("dev-1", `{"b":2,"c":3}`))
		if err := o.spillAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		es := next(t, o, "dev-1", 10)
		if len(es) != 1 || es[0].ID != id || string(es[0].Body) != `{"a":1,"b":2,"c":3}` {
			t.Fatalf("queued %v, want one composed patch with the last id", bodies(es))
		}
		if st := stats(t, o); st.Logged != 1 || st.Depth != 1 || st.Accepted != 2 {
			t.Fatalf("stats %+v, want 1 logged entry, depth 1, 2 accepted", st)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o = openLog(t, path, Options{SpillAfter: time.Hour})
		if es := next(t, o, "dev-1", 10); len(es) != 1 || string(es[0].Body) != `{"a":1,"b":2,"c":3}` {
			t.Fatalf("after reopen %v, want the composed patch alone", bodies(es))
		}
	})
	t.Run("beyond the memory bound entries wait on disk and come back in order", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openLog(t, path, Options{SpillAfter: time.Hour, MemoryBytes: 16 << 10})
		idents := []string{"dev-a", "dev-b", "dev-c"}
		want := map[string][]string{}
		for i := range 3000 {
			id := idents[i%3]
			want[id] = append(want[id], accept(t, o, tel(id, fmt.Sprintf(`{"i":%d}`, i))))
		}
		st := stats(t, o)
		if st.Depth != 3000 || st.Logged == 0 || st.Memory > 3000/2 {
			t.Fatalf("stats %+v: want 3000 queued, most of them logged", st)
		}
		var inMem int64
		o.mu.Lock()
		inMem, unloaded := o.mem.logBytes, o.slog.unloadedN
		o.mu.Unlock()
		// One spill goes to one segment, so the bound is kept to within a spill.
		if inMem > 2*16<<10 || unloaded == 0 {
			t.Fatalf("%d logged bytes in memory (bound 16 KiB), %d entries only on disk: want the bound kept by unloading", inMem, unloaded)
		}
		got := drainAll(t, o, idents)
		for _, id := range idents {
			sameIDs(t, id, got[id], want[id])
		}
		if st := stats(t, o); st.Logged != 0 || st.Bytes != 0 || st.Acked != 3000 {
			t.Fatalf("stats after the drain %+v", st)
		}
		if err := o.maintainLog(true); err != nil {
			t.Fatal(err)
		}
		if f := segmentFiles(t, path+".spill"); len(f) != 1 {
			t.Fatalf("segments left after the drain %v, want only the current one", f)
		}
	})
	t.Run("a restart with more than memory holds loads it segment by segment", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		opts := Options{SpillAfter: time.Hour, MemoryBytes: 16 << 10}
		o := openLog(t, path, opts)
		want := acceptN(t, o, "dev-1", 0, 2000)
		for acked := 0; acked < 500; {
			// Next hands out what memory holds; acks make room for more.
			es := next(t, o, "dev-1", 500-acked)
			if err := o.Ack(t.Context(), receipts(es)...); err != nil {
				t.Fatal(err)
			}
			acked += len(es)
			if len(es) == 0 {
				<-time.After(time.Millisecond)
			}
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o = openLog(t, path, opts)
		if st := stats(t, o); st.Depth != 1500 || st.Accepted != 2000 || st.Acked != 500 {
			t.Fatalf("stats after reopen %+v: want depth 1500, the counters kept", st)
		}
		got := drainAll(t, o, []string{"dev-1"})
		sameIDs(t, "after reopen", got["dev-1"], want[500:])
	})
	t.Run("a segment larger than memory_bytes still drains after memory_bytes is lowered", func(t *testing.T) {
		// Written with a large bound, one spill makes one segment far larger
		// than the bound it is read back with; the logged reported patch is
		// kept in memory whatever the bound. The segment must load anyway.
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openLog(t, path, Options{SpillAfter: time.Hour, MemoryBytes: 4 << 20})
		accept(t, o, rep("dev-1", `{"fw":"1.0"}`))
		want := acceptN(t, o, "dev-1", 0, 3000)
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o = openLog(t, path, Options{SpillAfter: time.Hour, MemoryBytes: 16 << 10})
		if es := next(t, o, "dev-1", 10); len(es) != 10 {
			t.Fatalf("after reopen with a smaller bound Next handed out %d entries, want 10: the queue is stuck behind an unloaded segment (%+v)", len(es), stats(t, o))
		}
		got := drainAll(t, o, []string{"dev-1"})
		if n := len(got["dev-1"]); n != 3001 {
			t.Fatalf("drained %d entries, want the reported patch and 3000 telemetry", n)
		}
		sameIDs(t, "telemetry after reopen", got["dev-1"][1:], want)
	})
	t.Run("over MaxBytes the oldest logged telemetry is evicted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openLog(t, path, Options{SpillAfter: time.Hour, MaxBytes: 20 << 10, MemoryBytes: 8 << 10})
		ids := acceptN(t, o, "dev-1", 0, 1000)
		if err := o.spillAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		st := stats(t, o)
		if st.DroppedFull == 0 || st.Bytes > 20<<10 || st.Depth+st.DroppedFull != 1000 {
			t.Fatalf("stats %+v: want evictions keeping the log under 20 KiB", st)
		}
		got := drainAll(t, o, []string{"dev-1"})
		sameIDs(t, "the newest survive", got["dev-1"], ids[1000-len(got["dev-1"]):])
	})
	t.Run("logged telemetry past its TTL is dropped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		c := newClock()
		o := openLog(t, path, Options{SpillAfter: time.Hour, TTL: time.Minute, Now: c.Now})
		acceptN(t, o, "dev-1", 0, 5)
		if err := o.spillAll(t.Context()); err != nil {
			t.Fatal(err)
		}
		c.Add(2 * time.Minute)
		fresh := acceptN(t, o, "dev-1", 5, 2)
		sameIDs(t, "after the TTL", idsOf(next(t, o, "dev-1", 10)), fresh)
		// The test clock is far behind the spiller's, so the fresh two may
		// be spilled too: only the count of expired ones is certain.
		if st := stats(t, o); st.DroppedTTL != 5 || st.Depth != 2 {
			t.Fatalf("stats %+v: want 5 expired, 2 queued", st)
		}
	})
	t.Run("switching to batched moves the log into the database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openLog(t, path, Options{SpillAfter: time.Hour})
		ids := acceptN(t, o, "dev-1", 0, 10)
		accept(t, o, rep("dev-2", `{"a":1}`))
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o = openAt(t, path, Options{Durability: Batched, SpillDir: path + ".spill"})
		sameIDs(t, "imported", idsOf(next(t, o, "dev-1", 100)), ids)
		if n := rowsOnDisk(t, path); n != 11 {
			t.Fatalf("%d rows in the database after the import, want 11", n)
		}
		if _, err := os.Stat(path + ".spill"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("spill dir still there after the import: %v", err)
		}
	})
}

// TestSpillLogGarbage: a segment with a bad header, a torn tail and records
// that pass their checksum but do not decode cost what they hold and
// nothing else.
func TestSpillLogGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	dir := path + ".spill"
	o := openLog(t, path, Options{SpillAfter: time.Hour})
	ids := acceptN(t, o, "dev-1", 0, 10)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	// Records a writer of this package would not write, appended through the
	// log so that their checksums are right.
	l, _, err := seglog.Open(dir, seglog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := encodeEntry(nil, &memEntry{e: Entry{Message: Message{Identity: "dev-1", Kind: Telemetry, ID: "x", Body: []byte("{}")}, Seq: 99}})
	garbage := [][]byte{
		{}, {'Z', 1, 2}, {recEntry}, {recEntry, 0xff, 0xff}, {recRemoval, 0xff, 0xff, 0xff, 0xff, 0x0f},
		good[:len(good)/2], bytes.Replace(good, []byte("dev-1"), []byte("\x00\x00\x00\x00\x00"), 1),
		append([]byte{recEntry, 5, 7}, good[3:]...), // kind 7
	}
	if _, err := l.Append(garbage...); err != nil {
		t.Fatal(err)
	}
	cur := l.Current()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, fmt.Sprintf("%016x.seg", cur))
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{40, 0, 0, 0, 1, 2, 3, 4, 'E', 1}); err != nil { // a torn record
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.seg", cur+7)), []byte("not a segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	o = openLog(t, path, Options{SpillAfter: time.Hour})
	sameIDs(t, "after garbage", idsOf(next(t, o, "dev-1", 100)), ids)
	if st := stats(t, o); st.Depth != 10 || st.DroppedCorrupt == 0 {
		t.Fatalf("stats %+v: want the 10 good entries and the undecodable records counted", st)
	}
	acceptN(t, o, "dev-1", 10, 1)
	if err := o.spillAll(t.Context()); err != nil {
		t.Fatalf("spill after garbage: %v", err)
	}
}

// FuzzSpillRecord: no record, whatever its bytes, makes the decoders panic.
func FuzzSpillRecord(f *testing.F) {
	m := &memEntry{props: "a=b", e: Entry{Message: Message{Identity: "dev-1", Kind: Telemetry, ID: "id", Body: []byte(`{"v":1}`)}, Seq: 7}}
	f.Add(encodeEntry(nil, m))
	f.Add(encodeRemoval(nil, []int64{3, 1, 2}))
	f.Fuzz(func(t *testing.T, rec []byte) {
		if len(rec) == 0 {
			return
		}
		if e, err := decodeEntry(rec); err == nil && (e.e.Identity == "" || e.e.Seq <= 0) {
			t.Fatalf("decoded %+v from %x", e.e, rec)
		}
		_, _ = decodeRemoval(rec)
	})
}

// TestDrainerSpillLog drains a spill log larger than memory holds with the
// Drainer: every identity's telemetry goes out once, in order, as segments
// are loaded, and identities with nothing loaded are not polled (Pending
// leaves them out until their segment is in memory).
func TestDrainerSpillLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	o := openLog(t, path, Options{SpillAfter: time.Hour, MemoryBytes: 16 << 10})
	ids := []string{"a", "b", "c", "d", "e"}
	fill(t, o, ids, 600)
	if err := o.spillAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, n := range o.Pending() {
		total += n
	}
	if st := stats(t, o); total >= st.Depth || st.Depth != 3000 {
		t.Fatalf("pending %d of depth %d: want the entries waiting on disk left out", total, st.Depth)
	}
	r := newRecorder(3000)
	d := newDrainer(t, o, r, DrainerOptions{Batch: 32})
	runDrainer(t, d, r)
	checkFIFO(t, r.entries(), 600)
	if st := stats(t, o); st.Depth != 0 || st.Logged != 0 {
		t.Fatalf("after the drain %+v", st)
	}
	if ds := d.Stats(); ds.Sent != 3000 {
		t.Fatalf("drainer sent %d, want 3000 (each once)", ds.Sent)
	}
}
