package seglog

import "testing"

// BenchmarkAppendSync measures a typical spill: 100 records of 200 bytes in
// one Append, then Sync.
func BenchmarkAppendSync(b *testing.B) {
	l, _, err := Open(b.TempDir(), Options{SegmentBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	recs := make([][]byte, 100)
	for i := range recs {
		recs[i] = make([]byte, 200)
	}
	b.SetBytes(100 * 200)
	for b.Loop() {
		if _, err := l.Append(recs...); err != nil {
			b.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
