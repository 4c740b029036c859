package firmware

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkDownload measures a full download over loopback TLS, including
// the SHA-256 of every byte and the final fsync (docs/benchmarks.md).
func BenchmarkDownload(b *testing.B) {
	img, want := randomImage(b, 32<<20)
	s := &imageServer{content: img}
	srv := newTLS(b, s)
	d := &Downloader{Client: srv.Client(), Backoff: noWait}
	b.SetBytes(want.Size)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(b.TempDir(), "img")
		if err := d.Download(context.Background(), Source{URL: srv.URL}, want, path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResume measures the cost of resuming: hashing the 16 MiB already
// on disk, then fetching the other 16 MiB with a Range request.
func BenchmarkResume(b *testing.B) {
	img, want := randomImage(b, 32<<20)
	s := &imageServer{content: img}
	srv := newTLS(b, s)
	d := &Downloader{Client: srv.Client(), Backoff: noWait}
	b.SetBytes(want.Size)
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "img")
		writeFile(b, path, img[:16<<20])
		b.StartTimer()
		if err := d.Download(context.Background(), Source{URL: srv.URL}, want, path); err != nil {
			b.Fatal(err)
		}
	}
}
