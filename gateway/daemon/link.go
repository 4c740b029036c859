package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/drover-iot/drover/gateway/outbox"
	"github.com/drover-iot/drover/gateway/twincache"
	"github.com/drover-iot/drover/gateway/upstream"
	"github.com/drover-iot/drover/internal/iothubtopic"
)

// link is one identity's connection to the hub (the gateway's own, or a
// bridged device's). What it produces goes through the durable outbox; its
// twin is kept in the twin cache.
type link struct {
	id     string
	log    *slog.Logger
	client *upstream.Client // nil when the gateway runs without upstream
	box    *outbox.Outbox   // nil without upstream: nothing to forward
	cache  *twincache.Cache
	wake   func() // wakes the outbox drainer
	now    func() time.Time

	// onDesired is called with the whole desired document after a (re)connect
	// that found desired changed, and after every desired patch, in order,
	// from the client's event goroutine. It returns when the change was handed on.
	onDesired func(desired map[string]any, version int64)
	onMethod  func(ctx context.Context, name string, payload json.RawMessage) (int, any)
}

// Report queues a reported-properties patch (merged with what is still queued)
// and records it in the twin cache: for reported properties the gateway wins.
func (l *link) Report(patch map[string]any) {
	ctx := context.Background()
	if err := l.cache.MergeReported(ctx, l.id, patch); err != nil {
		l.log.Warn("cache reported", "error", err)
	}
	if l.box == nil {
		return
	}
	body, err := json.Marshal(patch)
	if err != nil {
		l.log.Warn("encode reported patch", "error", err)
		return
	}
	if _, err := l.box.Accept(ctx, outbox.Message{Identity: l.id, Kind: outbox.Reported, Body: body, ProducedAt: l.now()}); err != nil {
		l.log.Warn("queue reported patch", "error", err)
		return
	}
	l.wake()
}

// Telemetry queues one message of point values measured at at.
func (l *link) Telemetry(values map[string]any, at time.Time) {
	if l.box == nil {
		return
	}
	body, err := json.Marshal(values)
	if err != nil {
		l.log.Warn("encode telemetry", "error", err)
		return
	}
	props := iothubtopic.Properties{
		{Name: iothubtopic.SysContentType, Value: "application/json"},
		{Name: iothubtopic.SysContentEncoding, Value: "utf-8"},
		{Name: "measuredAt", Value: at.UTC().Format(time.RFC3339Nano)},
	}
	if _, err := l.box.Accept(context.Background(), outbox.Message{Identity: l.id, Kind: outbox.Telemetry, Body: body, Props: props, ProducedAt: at}); err != nil {
		l.log.Warn("queue telemetry", "error", err)
		return
	}
	l.wake()
}

// Twin returns the cached twin.
func (l *link) Twin() map[string]any {
	t, err := l.cache.Get(context.Background(), l.id)
	if err != nil {
		return map[string]any{"deviceId": l.id, "properties": map[string]any{"desired": map[string]any{}, "reported": map[string]any{}}}
	}
	des := t.Desired
	if des == nil {
		des = map[string]any{}
	}
	des["$version"] = t.DesiredVersion
	return map[string]any{"deviceId": l.id, "properties": map[string]any{"desired": des, "reported": t.Reported},
		"appliedDesiredVersion": t.Applied}
}

// run owns the client until ctx ends.
func (l *link) run(ctx context.Context) {
	if l.client == nil {
		<-ctx.Done()
		return
	}
	if err := l.client.Run(ctx); err != nil {
		l.log.Error("upstream client stopped", "error", err)
	}
}

// Connected implements upstream.Handler: fetch the twin, compare with the
// cache, and apply desired exactly when something was missed (desired: the
// hub wins). Then let the outbox drain.
func (l *link) Connected(ctx context.Context) {
	defer l.wake()
	des, rep, err := l.client.GetTwin(ctx)
	if err != nil {
		l.log.Warn("get twin after connect", "error", err)
		return
	}
	version := versionOf(des)
	delete(des, "$version")
	delete(rep, "$version")
	cached, err := l.cache.Get(ctx, l.id)
	if err != nil && !errors.Is(err, twincache.ErrNotFound) {
		l.log.Warn("read twin cache", "error", err)
	}
	apply, doc := twincache.Missed(cached.Desired, des, cached.Applied, version)
	// Reported: what the gateway has sent or queued wins; keys only the hub has stay.
	merged := rep
	outbox.Apply(merged, cached.Reported)
	if err := l.cache.Put(ctx, l.id, des, merged, version); err != nil {
		l.log.Warn("write twin cache", "error", err)
	}
	if apply && l.onDesired != nil {
		l.onDesired(doc, version)
		if err := l.cache.SetApplied(ctx, l.id, version); err != nil {
			l.log.Warn("record applied desired version", "error", err)
		}
	}
}

// Disconnected implements upstream.Handler.
func (l *link) Disconnected(error) {}

// DesiredPatch implements upstream.Handler.
func (l *link) DesiredPatch(patch map[string]any, version int64) {
	ctx := context.Background()
	changed, err := l.cache.MergeDesired(ctx, l.id, patch, version)
	if err != nil {
		l.log.Warn("cache desired patch", "error", err)
		return
	}
	if !changed || l.onDesired == nil {
		return // already seen in the twin fetched at connect
	}
	t, err := l.cache.Get(ctx, l.id)
	if err != nil {
		l.log.Warn("read twin cache", "error", err)
		return
	}
	l.onDesired(t.Desired, version)
	if err := l.cache.SetApplied(ctx, l.id, version); err != nil {
		l.log.Warn("record applied desired version", "error", err)
	}
}

// Method implements upstream.Handler.
func (l *link) Method(ctx context.Context, name string, payload json.RawMessage) (int, any) {
	if l.onMethod == nil {
		return 404, map[string]string{"error": "no methods on " + l.id}
	}
	return l.onMethod(ctx, name, payload)
}

func versionOf(doc map[string]any) int64 {
	switch v := doc["$version"].(type) {
	case json.Number:
		n, _ := v.Int64()
		return n
	case float64:
		return int64(v)
	case int64:
		return v
	}
	return 0
}
