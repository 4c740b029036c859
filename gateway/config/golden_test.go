package config

import (
	"bytes"
	"context"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGoldenMulti checks the full listing for a file with many problems:
// all found at once, one per line, sorted by file and line.
func TestGoldenMulti(t *testing.T) {
	const in, golden = "testdata/golden/multi.yaml", "testdata/golden/multi.golden"
	problems, err := Check(context.Background(), in, nil)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	var got bytes.Buffer
	if err := FormatProblems(&got, problems); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("listing differs from %s (run with -update after checking):\n--- got\n%s--- want\n%s", golden, got.Bytes(), want)
	}
}
