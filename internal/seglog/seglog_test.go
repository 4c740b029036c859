package seglog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func open(t *testing.T, dir string, segBytes int64) (*Log, Report) {
	t.Helper()
	l, rep, err := Open(dir, Options{SegmentBytes: segBytes})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, rep
}

func record(i, size int) []byte {
	return bytes.Repeat([]byte{byte(i)}, size)
}

func scanAll(t *testing.T, l *Log, seg uint64) ([][]byte, int64) {
	t.Helper()
	var got [][]byte
	bad, err := l.Scan(seg, func(rec []byte) error {
		got = append(got, bytes.Clone(rec))
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%d): %v", seg, err)
	}
	return got, bad
}

func readAll(t *testing.T, l *Log) [][]byte {
	t.Helper()
	var all [][]byte
	for _, s := range l.Segments() {
		recs, bad := scanAll(t, l, s)
		if bad != 0 {
			t.Fatalf("segment %d: bad = %d", s, bad)
		}
		all = append(all, recs...)
	}
	return all
}

func segPath(dir string, n uint64) string { return filepath.Join(dir, segName(n)) }

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		segBytes int64
		batches  []int // records per batch
		size     int
	}{
		{"one segment", 0, []int{1, 5, 3}, 40},
		{"rotation", 256, []int{1, 2, 3, 4, 1, 1, 1, 7}, 50},
		{"empty records", 256, []int{3, 100}, 0},
		{"batch bigger than segment", 64, []int{10, 10, 1}, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _, err := Open(dir, Options{SegmentBytes: tt.segBytes})
			if err != nil {
				t.Fatal(err)
			}
			var want [][]byte
			i := 0
			for _, n := range tt.batches {
				var batch [][]byte
				for range n {
					batch = append(batch, record(i, tt.size+i%3))
					i++
				}
				before := l.Current()
				full := sizeOf(t, segPath(dir, before)) >= effective(tt.segBytes) && sizeOf(t, segPath(dir, before)) > headerLen
				seg, err := l.Append(batch...)
				if err != nil {
					t.Fatal(err)
				}
				if wantSeg := before + map[bool]uint64{true: 1}[full]; seg != wantSeg {
					t.Fatalf("Append went to segment %d, want %d", seg, wantSeg)
				}
				want = append(want, batch...)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			segs := l.Segments()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2, rep := open(t, dir, tt.segBytes)
			if rep.TruncatedBytes != 0 || len(rep.SetAside) != 0 {
				t.Fatalf("clean reopen reported %+v", rep)
			}
			if !slices.Equal(l2.Segments(), segs) {
				t.Fatalf("Segments after reopen = %v, want %v", l2.Segments(), segs)
			}
			if got := readAll(t, l2); !equalRecs(got, want) {
				t.Fatalf("read %d records, want %d (or contents differ)", len(got), len(want))
			}
		})
	}
}

func effective(segBytes int64) int64 {
	if segBytes <= 0 {
		return DefaultSegmentBytes
	}
	return segBytes
}

func sizeOf(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func equalRecs(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}

func TestRotationListsSegments(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 256)
	for i := range 20 {
		if _, err := l.Append(record(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	segs := l.Segments()
	if len(segs) < 2 || segs[0] != 1 || segs[len(segs)-1] != l.Current() {
		t.Fatalf("Segments = %v, Current = %d", segs, l.Current())
	}
	for i, s := range segs {
		if s != uint64(i+1) {
			t.Fatalf("Segments = %v, want 1..n", segs)
		}
		if s != l.Current() && sizeOf(t, segPath(dir, s)) < 256 {
			t.Fatalf("segment %d sealed below SegmentBytes", s)
		}
	}
}

func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0)
	kept := [][]byte{record(1, 10), record(2, 0), record(3, 30)}
	if _, err := l.Append(kept...); err != nil {
		t.Fatal(err)
	}
	keptEnd := l.size
	if _, err := l.Append(record(4, 25)); err != nil {
		t.Fatal(err)
	}
	full := l.size
	l.Close()
	orig, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	for cut := keptEnd; cut < full; cut++ {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			if err := os.WriteFile(segPath(dir, 1), orig[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			l, rep, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.TruncatedBytes != cut-keptEnd {
				t.Fatalf("TruncatedBytes = %d, want %d", rep.TruncatedBytes, cut-keptEnd)
			}
			if got := sizeOf(t, segPath(dir, 1)); got != keptEnd {
				t.Fatalf("file is %d bytes after Open, want %d", got, keptEnd)
			}
			next := record(9, 7)
			if _, err := l.Append(next); err != nil {
				t.Fatal(err)
			}
			l.Sync()
			l.Close()
			l2, rep2 := open(t, dir, 0)
			if rep2.TruncatedBytes != 0 {
				t.Fatalf("second Open truncated %d", rep2.TruncatedBytes)
			}
			want := append(slices.Clone(kept), next)
			if got := readAll(t, l2); !equalRecs(got, want) {
				t.Fatalf("records after repair = %q, want %q", got, want)
			}
			l2.Close()
		})
	}
}

func TestCorruptOlderSegment(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 64)
	recs := [][]byte{record(1, 20), record(2, 20), record(3, 20), record(4, 20)}
	for _, r := range recs {
		if _, err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if l.Current() == 1 {
		t.Fatal("expected rotation")
	}
	l.Sync()
	l.Close()
	// Segment 1 holds records 1 and 2 (16+2*28 = 72 >= 64, so 3 rotated).
	data, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	data[headerLen+28+frameLen+5] ^= 0xff // payload of record 2
	if err := os.WriteFile(segPath(dir, 1), data, 0o600); err != nil {
		t.Fatal(err)
	}
	l2, rep := open(t, dir, 64)
	if rep.TruncatedBytes != 0 || len(rep.SetAside) != 0 {
		t.Fatalf("Open reported %+v", rep)
	}
	after, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, data) {
		t.Fatal("Open modified an older segment")
	}
	got, bad := scanAll(t, l2, 1)
	if !equalRecs(got, recs[:1]) {
		t.Fatalf("Scan returned %q, want first record only", got)
	}
	if want := int64(len(data) - headerLen - 28); bad != want {
		t.Fatalf("bad = %d, want %d", bad, want)
	}
}

func TestSetAside(t *testing.T) {
	tests := []struct {
		name   string
		seg    uint64
		header []byte
	}{
		{"short", 5, []byte("DRVSEG")},
		{"empty", 5, nil},
		{"wrong magic", 5, append([]byte("XXXSEG1\n"), 5, 0, 0, 0, 0, 0, 0, 0)},
		{"number mismatch", 5, header(4)},
		{"older one bad", 1, header(7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := open(t, dir, 0)
			if _, err := l.Append(record(1, 10)); err != nil {
				t.Fatal(err)
			}
			l.Sync()
			l.Close()
			if tt.seg == 1 {
				// Move the good data to segment 2 so segment 1 can be the bad one.
				data, _ := os.ReadFile(segPath(dir, 1))
				copy(data, header(2))
				os.WriteFile(segPath(dir, 2), data, 0o600)
			}
			if err := os.WriteFile(segPath(dir, tt.seg), tt.header, 0o600); err != nil {
				t.Fatal(err)
			}
			others := []string{"notes.txt", "0000000000000001.seg.bak", "00000000000000AB.seg", "1.seg"}
			for _, o := range others {
				os.WriteFile(filepath.Join(dir, o), []byte("x"), 0o600)
			}
			l2, rep := open(t, dir, 0)
			if !slices.Equal(rep.SetAside, []string{segName(tt.seg)}) {
				t.Fatalf("SetAside = %v", rep.SetAside)
			}
			if _, err := os.Stat(segPath(dir, tt.seg) + ".corrupt"); err != nil {
				t.Fatalf("not renamed: %v", err)
			}
			if slices.Contains(l2.Segments(), tt.seg) {
				t.Fatalf("Segments %v lists the set-aside segment", l2.Segments())
			}
			for _, o := range others {
				if b, err := os.ReadFile(filepath.Join(dir, o)); err != nil || string(b) != "x" {
					t.Fatalf("unrelated file %s touched: %v", o, err)
				}
			}
			if _, err := l2.Append(record(2, 10)); err != nil {
				t.Fatal(err)
			}
			want := [][]byte{record(1, 10), record(2, 10)}
			if got := readAll(t, l2); !equalRecs(got, want) {
				t.Fatalf("records = %q, want %q", got, want)
			}
		})
	}
}

func TestAllSetAsideStartsNewSegment(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(segPath(dir, 3), []byte("junk"), 0o600)
	l, rep := open(t, dir, 0)
	if len(rep.SetAside) != 1 || l.Current() != 4 {
		t.Fatalf("SetAside = %v, Current = %d; want 1 set aside and segment 4", rep.SetAside, l.Current())
	}
	if _, err := l.Append([]byte("a")); err != nil {
		t.Fatal(err)
	}
}

func TestSyncOnlyWhenChanged(t *testing.T) {
	l, _ := open(t, t.TempDir(), 0)
	if l.fileSyncs != 1 || l.dirSyncs != 1 {
		t.Fatalf("Open of an empty dir: fileSyncs %d dirSyncs %d, want 1 and 1", l.fileSyncs, l.dirSyncs)
	}
	check := func(file, dir int) {
		t.Helper()
		if l.fileSyncs != file || l.dirSyncs != dir {
			t.Fatalf("fileSyncs %d dirSyncs %d, want %d and %d", l.fileSyncs, l.dirSyncs, file, dir)
		}
	}
	must(t, l.Sync())
	check(1, 1)
	_, err := l.Append([]byte("x"))
	must(t, err)
	must(t, l.Sync())
	must(t, l.Sync())
	check(2, 1)
	l.Append() // no records: nothing to sync
	must(t, l.Sync())
	check(2, 1)
}

func TestSyncAfterRotationAndRemove(t *testing.T) {
	l, _ := open(t, t.TempDir(), 32)
	_, err := l.Append(record(1, 40))
	must(t, err)
	seg, err := l.Append(record(2, 40)) // rotates: the old segment is synced now
	must(t, err)
	if seg != 2 || l.fileSyncs != 2 {
		t.Fatalf("seg %d fileSyncs %d, want 2 and 2", seg, l.fileSyncs)
	}
	must(t, l.Sync())
	if l.fileSyncs != 3 || l.dirSyncs != 2 {
		t.Fatalf("fileSyncs %d dirSyncs %d, want 3 and 2", l.fileSyncs, l.dirSyncs)
	}
	must(t, l.Remove(1))
	must(t, l.Sync())
	must(t, l.Sync())
	if l.fileSyncs != 3 || l.dirSyncs != 3 {
		t.Fatalf("fileSyncs %d dirSyncs %d, want 3 and 3", l.fileSyncs, l.dirSyncs)
	}
}

func TestReopenWithoutChangesWritesNothing(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0)
	l.Append([]byte("a"))
	l.Sync()
	l.Close()
	l2, _ := open(t, dir, 0)
	must(t, l2.Sync())
	if l2.fileSyncs != 0 || l2.dirSyncs != 0 {
		t.Fatalf("fileSyncs %d dirSyncs %d, want none", l2.fileSyncs, l2.dirSyncs)
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 32)
	for i := range 3 {
		_, err := l.Append(record(i, 40))
		must(t, err)
	}
	if err := l.Remove(l.Current()); err == nil || !strings.Contains(err.Error(), "current") {
		t.Fatalf("Remove(current) = %v", err)
	}
	must(t, l.Remove(1))
	if err := l.Remove(1); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("second Remove(1) = %v", err)
	}
	if _, err := l.Scan(1, func([]byte) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Scan of removed segment = %v", err)
	}
	must(t, l.Sync())
	l.Close()
	l2, _ := open(t, dir, 32)
	if got := l2.Segments(); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("Segments after reopen = %v", got)
	}
	if _, err := os.Stat(segPath(dir, 1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment 1 still exists: %v", err)
	}
}

func TestAppendTooLarge(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, 0)
	_, err := l.Append([]byte("ok"), make([]byte, MaxRecord+1))
	if err == nil || !strings.Contains(err.Error(), "MaxRecord") {
		t.Fatalf("Append over MaxRecord = %v", err)
	}
	if got := sizeOf(t, segPath(dir, 1)); got != headerLen {
		t.Fatalf("refused batch wrote: file is %d bytes", got)
	}
	_, err = l.Append([]byte("after"))
	must(t, err)
	if got := readAll(t, l); !equalRecs(got, [][]byte{[]byte("after")}) {
		t.Fatalf("records = %q", got)
	}
}

func TestMaxRecordFits(t *testing.T) {
	l, _ := open(t, t.TempDir(), 0)
	big := record(7, MaxRecord)
	_, err := l.Append(big)
	must(t, err)
	if got := readAll(t, l); len(got) != 1 || !bytes.Equal(got[0], big) {
		t.Fatal("MaxRecord-sized record did not round trip")
	}
}

func TestScanErrors(t *testing.T) {
	l, _ := open(t, t.TempDir(), 0)
	l.Append([]byte("a"), []byte("b"))
	stop := errors.New("stop")
	n := 0
	_, err := l.Scan(1, func([]byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 || !strings.Contains(err.Error(), "scan segment 0000000000000001.seg") {
		t.Fatalf("Scan with failing fn = %v after %d calls", err, n)
	}
	if _, err := l.Scan(99, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Scan of unknown segment = %v", err)
	}
}

func TestScanCallbackMayUseLog(t *testing.T) {
	l, _ := open(t, t.TempDir(), 0)
	l.Append([]byte("a"), []byte("b"))
	n := 0
	_, err := l.Scan(1, func([]byte) error {
		n++
		_, err := l.Append([]byte("c")) // must not deadlock, and not be seen by this scan
		return err
	})
	must(t, err)
	if n != 2 {
		t.Fatalf("scan saw %d records, want 2", n)
	}
}

func TestClosed(t *testing.T) {
	l, _, err := Open(t.TempDir(), Options{})
	must(t, err)
	must(t, l.Close())
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v", err)
	}
	if _, err := l.Scan(1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close = %v", err)
	}
	if err := l.Remove(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Remove after Close = %v", err)
	}
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l, _ := open(t, dir, 0)
	fi, err := os.Stat(dir)
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", fi.Mode().Perm())
	}
	if l.Current() != 1 || !slices.Equal(l.Segments(), []uint64{1}) {
		t.Fatalf("Current %d Segments %v", l.Current(), l.Segments())
	}
	b, err := os.ReadFile(segPath(dir, 1))
	must(t, err)
	if !bytes.Equal(b, header(1)) {
		t.Fatalf("new segment = %q", b)
	}
}

func TestConcurrent(t *testing.T) {
	l, _ := open(t, t.TempDir(), 512)
	done := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range 50 {
				if _, err := l.Append(record(g*50+i, 30)); err != nil {
					done <- err
					return
				}
				if i%10 == 0 {
					if err := l.Sync(); err != nil {
						done <- err
						return
					}
					for _, s := range l.Segments() {
						if _, err := l.Scan(s, func([]byte) error { return nil }); err != nil && !errors.Is(err, os.ErrNotExist) {
							done <- err
							return
						}
					}
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		must(t, <-done)
	}
	if got := len(readAll(t, l)); got != 200 {
		t.Fatalf("read %d records, want 200", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRetireDir: with RetireDir, Remove moves the segment there, the log
// no longer lists it, and ScanFile still reads its records.
func TestRetireDir(t *testing.T) {
	dir := t.TempDir()
	retire := filepath.Join(t.TempDir(), "retired")
	l, _, err := Open(dir, Options{SegmentBytes: 32, RetireDir: retire})
	must(t, err)
	defer l.Close()
	for i := range 3 {
		_, err := l.Append(record(i, 40))
		must(t, err)
	}
	must(t, l.Remove(1))
	if slices.Contains(l.Segments(), 1) {
		t.Fatalf("segment 1 still listed: %v", l.Segments())
	}
	var got [][]byte
	bad, err := ScanFile(filepath.Join(retire, segName(1)), func(rec []byte) error {
		got = append(got, slices.Clone(rec))
		return nil
	})
	must(t, err)
	if bad != 0 || !equalRecs(got, [][]byte{record(0, 40)}) {
		t.Fatalf("retired segment read %d records, %d bad", len(got), bad)
	}
	if _, err := ScanFile(filepath.Join(dir, "missing.seg"), nil); err == nil {
		t.Fatal("ScanFile of a missing file succeeded")
	}
	junk := filepath.Join(t.TempDir(), "junk.seg")
	must(t, os.WriteFile(junk, []byte("not a segment at all"), 0o600))
	if _, err := ScanFile(junk, nil); err == nil || !strings.Contains(err.Error(), "bad header") {
		t.Fatalf("ScanFile of junk = %v", err)
	}
}
