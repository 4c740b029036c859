package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T, o Options) (*Store, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hub.db")
	s, err := Open(p, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, p
}

// TestGroupCommitIsolatesFailures: operations batched into one transaction
// succeed or fail on their own.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("d%d", i%100) // every id is created twice: one must fail
			_, errs[i] = s.CreateDevice(ctx, Device{ID: id})
		}(i)
	}
	wg.Wait()
	var ok, exists int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrExists):
			exists++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 100 || exists != 100 {
		t.Fatalf("ok %d exists %d, want 100/100", ok, exists)
	}
	total, _, err := s.CountDevices(ctx)
	if err != nil || total != 100 {
		t.Fatalf("total %d: %v", total, err)
	}
}

func TestReportedPatchSurvivesReopen(t *testing.T) {
	s, p := openTest(t, Options{})
	ctx := context.Background()
	if _, err := s.CreateDevice(ctx, Device{ID: "d"}); err != nil {
		t.Fatal(err)
	}
	v, err := s.PatchReported(ctx, "d", map[string]any{"a": "x"})
	if err != nil || v != 2 {
		t.Fatalf("version %d: %v", v, err)
	}
	if _, err := s.PatchReported(ctx, "ghost", map[string]any{"a": 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("patch of unknown device: %v", err)
	}
	s.Close()
	s2, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	tw, err := s2.GetTwin(ctx, "d")
	if err != nil || tw.Reported.Props["a"] != "x" || tw.Reported.Version != 2 {
		t.Fatalf("after reopen: %+v %v", tw.Reported, err)
	}
}

func TestTelemetryBounded(t *testing.T) {
	s, _ := openTest(t, Options{MaxTelemetry: 100})
	ctx := context.Background()
	for i := 0; i < 1200; i++ {
		if _, err := s.AppendTelemetry(ctx, Message{DeviceID: "d", Enqueued: time.Now(), Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.rd.QueryRow(`SELECT COUNT(*) FROM telemetry`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Pruning runs every few hundred inserts: the table never holds more than the bound plus one prune interval.
	if n > 100+500 {
		t.Fatalf("telemetry holds %d rows, bound 100 (+500 between prunes)", n)
	}
	last, _ := s.LastTelemetrySeq(ctx)
	if last != 1200 {
		t.Fatalf("last seq %d", last)
	}
}

func TestValidateDeviceID(t *testing.T) {
	for _, c := range []struct {
		id string
		ok bool
	}{
		{"pump-1", true}, {"a.b+c%d_e#f*g?h!i(j)k,l=m@n$o'p", true}, {"", false}, {"a b", false}, {"a/b", false},
		{"ünï", false}, {string(make([]byte, 129)), false},
	} {
		if err := ValidateDeviceID(c.id); (err == nil) != c.ok {
			t.Errorf("%q: err %v, want ok=%v", c.id, err, c.ok)
		}
	}
}
