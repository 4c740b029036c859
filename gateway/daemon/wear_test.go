package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWearMeter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "io")
	m := &wearMeter{path: p}
	write := func(n string) {
		t.Helper()
		if err := os.WriteFile(p, []byte("rchar: 1\nwrite_bytes: "+n+"\ncancelled_write_bytes: 0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		at      time.Duration
		written string
		total   int64
		perHour int64
	}{
		{"first sample", 0, "1000", 1000, 0},
		{"half an hour later", 30 * time.Minute, "6000", 6000, 10000},
		{"an hour later", time.Hour, "11000", 11000, 10000},
		{"window slides: the last hour only", 2 * time.Hour, "13000", 13000, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.written)
			got, err := m.sample(t0.Add(tc.at))
			if err != nil {
				t.Fatal(err)
			}
			if got.WrittenBytes != tc.total || got.BytesPerHour != tc.perHour {
				t.Fatalf("sample at +%v with write_bytes %s = %+v, want total %d, per hour %d", tc.at, tc.written, got, tc.total, tc.perHour)
			}
		})
	}
	if err := os.WriteFile(p, []byte("nothing here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.sample(t0); err == nil {
		t.Fatal("a file without write_bytes gave no error")
	}
}
