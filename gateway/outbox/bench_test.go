package outbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

// benchProps are the properties the daemon puts on a telemetry message.
var benchProps = iothubtopic.Properties{
	{Name: iothubtopic.SysContentType, Value: "application/json"},
	{Name: iothubtopic.SysContentEncoding, Value: "utf-8"},
}

func benchBody() []byte {
	b := []byte(`{"temperature":21.5,"pressure":1.013,"running":true,"flow":12.25,"setpoint":20,"vib":0.0012345}`)
	for len(b) < 100 {
		b = append(b, ' ')
	}
	return b[:100]
}

func openBench(b *testing.B, s Sync) *Outbox {
	o, err := Open(filepath.Join(b.TempDir(), "gateway.db"), Options{Sync: s, MaxBytes: 4 << 30, TTL: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = o.Close() })
	return o
}

// BenchmarkAccept measures committed accepts per second of 100-byte
// telemetry messages, one producer at a time (serial) and with 64
// concurrent producers sharing group commits (parallel), under both
// synchronous modes.
func BenchmarkAccept(b *testing.B) {
	body := benchBody()
	for _, s := range []Sync{SyncFull, SyncNormal} {
		for _, par := range []int{1, 64} {
			name := fmt.Sprintf("sync=%s/producers=%d", s.pragma(), par)
			b.Run(name, func(b *testing.B) {
				o := openBench(b, s)
				ctx := context.Background()
				var n atomic.Int64
				b.SetParallelism(max(1, par/max(1, runtimeProcs())))
				start := time.Now()
				if par == 1 {
					for i := 0; b.Loop(); i++ {
						if _, err := o.Accept(ctx, Message{Identity: fmt.Sprint("dev-", i%250), Kind: Telemetry, Body: body, Props: benchProps}); err != nil {
							b.Fatal(err)
						}
					}
					n.Store(int64(b.N))
				} else {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							i := n.Add(1)
							if _, err := o.Accept(ctx, Message{Identity: fmt.Sprint("dev-", i%250), Kind: Telemetry, Body: body, Props: benchProps}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "msgs/s")
			})
		}
	}
}

func runtimeProcs() int { return testingProcs }

// BenchmarkDrain measures how fast a backlog of b.N messages spread over
// 250 identities drains through senders that do nothing (the cost is the
// outbox's reads and acks), unlimited rate, SyncFull.
func BenchmarkDrain(b *testing.B) {
	o := openBench(b, SyncFull)
	body := benchBody()
	ctx := context.Background()
	// Fill with group commits from many producers (not measured).
	const producers = 64
	done := make(chan error, producers)
	for p := range producers {
		go func() {
			for i := p; i < b.N; i += producers {
				if _, err := o.Accept(ctx, Message{Identity: fmt.Sprint("dev-", i%250), Kind: Telemetry, Body: body, Props: benchProps}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range producers {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	var sent atomic.Int64
	finished := make(chan struct{})
	nop := func(context.Context, Entry) error {
		if sent.Add(1) == int64(b.N) {
			close(finished)
		}
		return nil
	}
	d, err := NewDrainer(o, DrainerOptions{Telemetry: nop, Reported: nop, Batch: 64})
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	b.ResetTimer()
	start := time.Now()
	go func() { _ = d.Run(rctx) }()
	<-finished
	el := time.Since(start)
	cancel()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}

// BenchmarkDiskBytes reports the file size per queued 100-byte message
// (database plus WAL, after a checkpoint) and the accounted bytes per
// message that MaxBytes counts.
func BenchmarkDiskBytes(b *testing.B) {
	const n = 100000
	for b.Loop() {
		path := filepath.Join(b.TempDir(), "gateway.db")
		o, err := Open(path, Options{Sync: SyncNormal, MaxBytes: 4 << 30, TTL: -1})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		body := benchBody()
		done := make(chan error, 16)
		for p := range 16 {
			go func() {
				for i := p; i < n; i += 16 {
					if _, err := o.Accept(ctx, Message{Identity: fmt.Sprint("dev-", i%250), Kind: Telemetry, Body: body, Props: benchProps}); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
		}
		for range 16 {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		s, err := o.Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o.wr.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
		var size int64
		for _, p := range []string{path, path + "-wal"} {
			if fi, err := os.Stat(p); err == nil {
				size += fi.Size()
			}
		}
		_ = o.Close()
		b.ReportMetric(float64(size)/n, "disk-B/msg")
		b.ReportMetric(float64(s.Bytes)/n, "accounted-B/msg")
	}
}

var testingProcs = runtime.GOMAXPROCS(0)
