package modbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// fourRegs reads holding 0..3 (two points) and holding 10 (a third request
// apart with max_fill 0), so consecutive requests have equal length replies.
const fourRegs = `{"name": "t", "points": [
  {"name": "a", "table": "holding", "address": 0, "type": "uint16"},
  {"name": "b", "table": "holding", "address": 1, "type": "uint16"},
  {"name": "c", "table": "holding", "address": 10, "type": "uint16"},
  {"name": "d", "table": "holding", "address": 11, "type": "uint16"},
  {"name": "k", "table": "coil", "address": 2, "writable": true}],
  "quirks": {"max_fill": 0}}`

func wantPattern(t *testing.T, vals []plugins.PointValue) {
	t.Helper()
	want := map[string]uint64{"a": 0, "b": 1, "c": 10, "d": 11}
	for _, v := range vals {
		if w, ok := want[v.Point]; ok && (v.Quality != plugins.QualityGood || v.Value.Uint != w) {
			t.Errorf("%s = %+v (%s), want %d", v.Point, v.Value, v.Error, w)
		}
	}
}

func TestSerialTransportFaults(t *testing.T) {
	cases := []struct {
		name    string
		retries int
		fault   func(n int, req, resp []byte) ([][]byte, time.Duration)
		check   func(t *testing.T, vals []plugins.PointValue, r *responder)
	}{
		{"reply split in chunks", 0,
			func(n int, req, resp []byte) ([][]byte, time.Duration) {
				return [][]byte{resp[:1], resp[1:3], resp[3:]}, 3 * time.Millisecond
			},
			func(t *testing.T, vals []plugins.PointValue, _ *responder) { wantPattern(t, vals) }},
		{"bad CRC is retried", 1,
			func(n int, req, resp []byte) ([][]byte, time.Duration) {
				if n == 1 {
					bad := append([]byte(nil), resp...)
					bad[len(bad)-1] ^= 0xFF
					return [][]byte{bad}, 0
				}
				return [][]byte{resp}, 0
			},
			func(t *testing.T, vals []plugins.PointValue, r *responder) {
				wantPattern(t, vals)
				if r.count() != 4 { // three planned requests, one retried
					t.Errorf("responder saw %d requests, want 4 (one retry)", r.count())
				}
			}},
		{"bad CRC without retries marks the points bad", 0,
			func(n int, req, resp []byte) ([][]byte, time.Duration) {
				bad := append([]byte(nil), resp...)
				bad[3] ^= 0x01 // a data byte: same length, wrong CRC
				return [][]byte{bad}, 0
			},
			func(t *testing.T, vals []plugins.PointValue, _ *responder) {
				for _, v := range vals[:4] {
					if v.Quality != plugins.QualityBad || !strings.Contains(v.Error, "CRC") {
						t.Errorf("%s = %+v, want bad quality with a CRC error", v.Point, v)
					}
				}
			}},
		{"reply from the wrong unit", 0,
			func(n int, req, resp []byte) ([][]byte, time.Duration) {
				other := append([]byte(nil), resp[:len(resp)-2]...)
				other[0]++
				return [][]byte{withCRC(other)}, 0 // a well-formed frame, wrong unit
			},
			func(t *testing.T, vals []plugins.PointValue, _ *responder) {
				if vals[0].Quality != plugins.QualityBad || !strings.Contains(vals[0].Error, "unit") {
					t.Errorf("a = %+v, want bad quality naming the unit", vals[0])
				}
			}},
		{"late reply is drained, not taken for the next answer", 0,
			func(n int, req, resp []byte) ([][]byte, time.Duration) {
				if n == 1 {
					return [][]byte{resp}, 250 * time.Millisecond // after the 150 ms timeout
				}
				return [][]byte{resp}, 0
			},
			func(t *testing.T, vals []plugins.PointValue, _ *responder) {
				if vals[0].Quality != plugins.QualityTimeout {
					t.Errorf("a = %+v, want timeout", vals[0])
				}
			}},
		{"busy device", 1,
			func(n int, req, resp []byte) ([][]byte, time.Duration) {
				return [][]byte{withCRC([]byte{req[0], req[1] | 0x80, byte(ExServerDeviceBusy)})}, 0
			},
			func(t *testing.T, vals []plugins.PointValue, r *responder) {
				if vals[0].Quality != plugins.QualityBad || !strings.HasPrefix(vals[0].Error, "busy:") {
					t.Errorf("a = %+v, want busy", vals[0])
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := ptyPair(t)
			r := startResponder(t, srv, 115200, false, tc.fault)
			d := rtuDriver(t, cli, 115200, fmt.Sprintf(`, "timeout": "150ms", "retries": %d`, tc.retries), fourRegs)
			ctx := testContext(t)
			vals, err := d.Read(ctx, "dev", nil)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, vals, r)
			if tc.name == "late reply is drained, not taken for the next answer" {
				vals, err := d.Read(ctx, "dev", []string{"c", "d"})
				if err != nil {
					t.Fatal(err)
				}
				wantPattern(t, vals)
			}
		})
	}
}

func withCRC(b []byte) []byte { return append(b, byte(crc16(b)), byte(crc16(b)>>8)) }

// TestSerialConcurrent drives one bus from many goroutines (run with -race):
// every transaction must come back whole and matched to its request.
func TestSerialConcurrent(t *testing.T) {
	srv, cli := ptyPair(t)
	startResponder(t, srv, 115200, false, nil)
	d := rtuDriver(t, cli, 115200, `, "timeout": "1s"`, fourRegs)
	attachJSON(t, d, "dev2", 2, fourRegs)
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := []string{"dev", "dev2"}[g%2]
			for range 10 {
				vals, err := d.Read(ctx, id, nil)
				if err != nil {
					errs <- err
					return
				}
				for _, v := range vals[:4] {
					if v.Quality != plugins.QualityGood {
						errs <- fmt.Errorf("%s %s: %s", id, v.Point, v.Error)
						return
					}
				}
				if _, err := d.Write(ctx, id, []plugins.PointWrite{{Point: "k", Value: vBool(true)}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSerialCancel(t *testing.T) {
	srv, cli := ptyPair(t)
	startResponder(t, srv, 115200, false, func(int, []byte, []byte) ([][]byte, time.Duration) { return nil, 0 })
	d := rtuDriver(t, cli, 115200, `, "timeout": "10s", "retries": 0`, fourRegs)
	ctx, cancel := context.WithTimeout(testContext(t), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Read(ctx, "dev", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with a short ctx: %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Read took %s after its context ended", el)
	}
}

func TestOpenBusMissingPort(t *testing.T) {
	d := New(Options{})
	err := d.OpenBus(testContext(t), plugins.BusConfig{Name: "x", Config: []byte(`{"mode": "rtu", "port": "/nonexistent/tty"}`)})
	if plugins.CodeOf(err) != plugins.CodeUnavailable {
		t.Fatalf("OpenBus on a missing port: %v, want CodeUnavailable", err)
	}
}
