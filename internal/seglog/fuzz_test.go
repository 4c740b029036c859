package seglog

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzScan writes arbitrary bytes after a valid header, both as an older
// segment (which Open must leave alone) and as the newest (which Open
// repairs), and checks that the records Scan returns plus bad account for
// every byte.
func FuzzScan(f *testing.F) {
	f.Add([]byte{})
	f.Add(encode(nil, [][]byte{[]byte("hello"), {}, []byte("world")}))
	f.Add(append(encode(nil, [][]byte{[]byte("abc")}), 1, 2, 3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		file := append(header(1), data...)
		if err := os.WriteFile(filepath.Join(dir, segName(1)), file, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(2)), header(2), 0o600); err != nil {
			t.Fatal(err)
		}
		l, _, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var used int64
		bad, err := l.Scan(1, func(rec []byte) error {
			used += frameLen + int64(len(rec))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if bad < 0 || used+bad != int64(len(data)) {
			t.Fatalf("records use %d bytes, bad %d, data %d", used, bad, len(data))
		}
		l.Close()

		// The same bytes as the newest segment: Open cuts exactly bad bytes.
		os.Remove(filepath.Join(dir, segName(2)))
		l2, rep, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if rep.TruncatedBytes != bad {
			t.Fatalf("TruncatedBytes %d, Scan bad %d", rep.TruncatedBytes, bad)
		}
		bad2, err := l2.Scan(1, func([]byte) error { return nil })
		if err != nil || bad2 != 0 {
			t.Fatalf("after repair: bad %d, err %v", bad2, err)
		}
	})
}
