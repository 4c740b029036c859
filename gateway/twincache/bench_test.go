package twincache

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkMergeReported measures cached reported patches per second (one
// transaction each), 250 identities, under both synchronous modes.
func BenchmarkMergeReported(b *testing.B) {
	for _, normal := range []bool{false, true} {
		name := "sync=FULL"
		if normal {
			name = "sync=NORMAL"
		}
		b.Run(name, func(b *testing.B) {
			c, err := Open(filepath.Join(b.TempDir(), "gateway.db"), Options{SyncNormal: normal})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				patch := map[string]any{"points": map[string]any{"temperature": i, "running": true}}
				if err := c.MergeReported(ctx, fmt.Sprint("dev-", i%250), patch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "patches/s")
		})
	}
}
