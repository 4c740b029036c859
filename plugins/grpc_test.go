package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/plugintest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// probe is a plugins.Plugin that records what reached it and answers with
// canned data, to check the adapters field by field.
type probe struct {
	*plugintest.Fake // everything not overridden

	mu       sync.Mutex
	gotCtx   chan context.Context
	gotDev   plugins.DeviceConfig
	gotWrite []plugins.PointWrite
	block    bool
	late     chan struct{} // closed after a late progress call was made
}

func (p *probe) Attach(ctx context.Context, dev plugins.DeviceConfig) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gotDev = dev
	return nil
}

func (p *probe) Read(ctx context.Context, id string, points []string) ([]plugins.PointValue, error) {
	if p.gotCtx != nil {
		p.gotCtx <- ctx
	}
	if p.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return []plugins.PointValue{
		{Point: "t", Value: plugins.Value{Kind: plugins.KindFloat, Float: 21.5}, Time: time.Unix(1700000000, 5).UTC()},
		{Point: "s", Value: plugins.Value{Kind: plugins.KindString, String: "ok"}, Quality: plugins.QualityBad, Error: "stale"},
	}, nil
}

func (p *probe) Write(ctx context.Context, id string, ws []plugins.PointWrite) ([]plugins.WriteResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gotWrite = ws
	v := ws[0].Value
	return []plugins.WriteResult{{Point: ws[0].Point, OK: true, ReadBack: &v}}, nil
}

func (p *probe) Scan(ctx context.Context, req plugins.ScanRequest, progress func(plugins.ScanEvent)) error {
	for a := req.From; a <= req.To; a++ {
		progress(plugins.ScanEvent{Address: a, Found: a%2 == 0})
	}
	// A buggy plugin reporting after it returned must not crash the server.
	// The stream's context ends once the handler has finished, so waiting
	// for it makes the call land after the stream closed (not merely after
	// Scan returned, which races with the adapter's finish).
	go func() {
		<-ctx.Done()
		progress(plugins.ScanEvent{Address: -1})
		close(p.late)
	}()
	return nil
}

func (p *probe) Flash(ctx context.Context, req plugins.FlashRequest, progress func(plugins.FlashEvent)) error {
	progress(plugins.FlashEvent{Phase: "uploading", Done: req.ResumeOffset, Total: 10})
	return plugins.Errorf(plugins.CodeDeviceError, "device rejected block at %d", req.ResumeOffset)
}

func TestAdaptersCarryFields(t *testing.T) {
	pr := &probe{Fake: plugintest.NewFake(), late: make(chan struct{})}
	p := plugintest.Connect(t, pr)
	ctx := t.Context()

	t.Run("attach", func(t *testing.T) {
		dev := plugins.DeviceConfig{ID: "pump-1", Bus: "rs485-1", Address: 3,
			Profile: json.RawMessage(`{"points":{}}`), Options: json.RawMessage(`{"timeout":"1s"}`)}
		if err := p.Attach(ctx, dev); err != nil {
			t.Fatal(err)
		}
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if !reflect.DeepEqual(pr.gotDev, dev) {
			t.Errorf("plugin got %+v, sent %+v", pr.gotDev, dev)
		}
	})
	t.Run("read", func(t *testing.T) {
		vs, err := p.Read(ctx, "pump-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := pr.Read(ctx, "", nil)
		if !reflect.DeepEqual(vs, want) {
			t.Errorf("got %+v, want %+v", vs, want)
		}
	})
	t.Run("write", func(t *testing.T) {
		w := []plugins.PointWrite{{Point: "sp", Value: plugins.Value{Kind: plugins.KindUint, Uint: 9}}}
		rs, err := p.Write(ctx, "pump-1", w)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || !rs[0].OK || rs[0].ReadBack == nil || *rs[0].ReadBack != w[0].Value {
			t.Errorf("results %+v", rs)
		}
	})
	t.Run("scan stream", func(t *testing.T) {
		var got []plugins.ScanEvent
		err := p.Scan(ctx, plugins.ScanRequest{Bus: "b", From: 1, To: 6}, func(ev plugins.ScanEvent) { got = append(got, ev) })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 6 || got[0].Address != 1 || !got[1].Found || got[5].Address != 6 {
			t.Errorf("events %+v", got)
		}
		<-pr.late
	})
	t.Run("flash stream then error", func(t *testing.T) {
		var got []plugins.FlashEvent
		err := p.Flash(ctx, plugins.FlashRequest{DeviceID: "pump-1", ResumeOffset: 4}, func(ev plugins.FlashEvent) { got = append(got, ev) })
		if plugins.CodeOf(err) != plugins.CodeDeviceError {
			t.Errorf("err %v, want device-error", err)
		}
		if len(got) != 1 || got[0].Done != 4 {
			t.Errorf("events %+v", got)
		}
	})
}

func TestContextCrossesBoundary(t *testing.T) {
	pr := &probe{Fake: plugintest.NewFake(), gotCtx: make(chan context.Context, 1), block: true}
	p := plugintest.Connect(t, pr)

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := p.Read(ctx, "d", nil)
		if plugins.CodeOf(err) != plugins.CodeTimeout || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v (code %v), want timeout", err, plugins.CodeOf(err))
		}
		if _, ok := (<-pr.gotCtx).Deadline(); !ok {
			t.Error("the plugin's context had no deadline")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := p.Read(ctx, "d", nil)
			errc <- err
		}()
		pctx := <-pr.gotCtx
		cancel()
		<-pctx.Done() // the plugin sees the cancellation
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
}

func TestNewLogHandler(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  string
	}{
		{plugins.LevelTrace, "trace"},
		{slog.LevelDebug, "debug"},
		{slog.LevelInfo, "info"},
		{slog.LevelWarn, "warn"},
		{slog.LevelError, "error"},
		{slog.LevelError + 4, "error"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(plugins.NewLogHandler(&buf, plugins.LevelTrace))
			l.Log(t.Context(), tc.level, "bus opened", "bus", "rs485-1", slog.Group("g", "k", 1))
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Fatalf("not JSON: %q", buf.String())
			}
			if m["@message"] != "bus opened" || m["@level"] != tc.want || m["bus"] != "rs485-1" {
				t.Errorf("line %s", buf.String())
			}
			ts, _ := m["@timestamp"].(string)
			if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", ts); err != nil {
				t.Errorf("@timestamp %q: %v", ts, err)
			}
			if _, ok := m["g"].(map[string]any); !ok {
				t.Errorf("group lost: %s", buf.String())
			}
		})
	}
}
