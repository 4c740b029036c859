package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/drover-iot/drover/gateway/upstream"
	"github.com/drover-iot/drover/internal/iothubtopic"
)

// maxQueuedTelemetry bounds the in-memory telemetry kept per identity while
// the uplink is down; the oldest message is dropped (and counted) beyond it.
const maxQueuedTelemetry = 1000

// link is one identity's connection to the hub (the gateway's own, or a
// bridged device's): its cached twin, the reported patch waiting to be sent
// (merged while queued), and queued telemetry.
type link struct {
	id     string
	log    *slog.Logger
	client *upstream.Client // nil when the gateway runs without upstream

	// onDesired is called with the whole desired document after a twin GET
	// and after every desired patch, in order, from the client's event goroutine.
	onDesired func(desired map[string]any, version int64)
	onMethod  func(ctx context.Context, name string, payload json.RawMessage) (int, any)

	mu             sync.Mutex
	desired        map[string]any
	desiredVersion int64
	reported       map[string]any // what the hub has been sent plus what is pending
	pending        map[string]any // merged reported patch not yet acknowledged
	telemetry      []telemetryMsg
	dropped        int64
	sentReported   int64
	sentTelemetry  int64

	wake chan struct{}
}

type telemetryMsg struct {
	body  []byte
	props iothubtopic.Properties
}

func newLink(id string, log *slog.Logger) *link {
	return &link{id: id, log: log, desired: map[string]any{}, reported: map[string]any{}, pending: map[string]any{}, wake: make(chan struct{}, 1)}
}

func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Report queues a reported-properties patch; patches merge while queued.
func (l *link) Report(patch map[string]any) {
	l.mu.Lock()
	compose(l.pending, patch)
	mergeInto(l.reported, deepCopy(patch))
	l.mu.Unlock()
	l.poke()
}

// Telemetry queues one message of point values measured at at.
func (l *link) Telemetry(values map[string]any, at time.Time) {
	body, err := json.Marshal(values)
	if err != nil {
		l.log.Warn("encode telemetry", "error", err)
		return
	}
	props := iothubtopic.Properties{
		{Name: iothubtopic.SysMessageID, Value: newID()},
		{Name: iothubtopic.SysContentType, Value: "application/json"},
		{Name: iothubtopic.SysContentEncoding, Value: "utf-8"},
		{Name: "measuredAt", Value: at.UTC().Format(time.RFC3339Nano)},
	}
	l.mu.Lock()
	if len(l.telemetry) >= maxQueuedTelemetry {
		l.telemetry = l.telemetry[1:]
		l.dropped++
	}
	l.telemetry = append(l.telemetry, telemetryMsg{body: body, props: props})
	l.mu.Unlock()
	l.poke()
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Twin returns the cached twin: desired as last received, reported as sent or queued.
func (l *link) Twin() map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	des := deepCopy(l.desired)
	des["$version"] = l.desiredVersion
	return map[string]any{"deviceId": l.id, "properties": map[string]any{"desired": des, "reported": deepCopy(l.reported)}}
}

// run owns the client and the sender loop until ctx ends.
func (l *link) run(ctx context.Context) {
	if l.client == nil {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := l.client.Run(ctx); err != nil {
			l.log.Error("upstream client stopped", "error", err)
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-l.wake:
		case <-tick.C:
		}
		if l.client.Connected() {
			l.flush(ctx)
		}
	}
}

// flush sends the pending reported patch, then queued telemetry, while connected.
func (l *link) flush(ctx context.Context) {
	l.mu.Lock()
	patch := l.pending
	if len(patch) > 0 {
		l.pending = map[string]any{}
	}
	l.mu.Unlock()
	if len(patch) > 0 {
		if _, err := l.client.PatchReported(ctx, patch); err != nil {
			// Put it back under anything newer: newer values win per key.
			l.mu.Lock()
			newer := l.pending
			l.pending = patch
			compose(l.pending, newer)
			l.mu.Unlock()
			var se *upstream.StatusError
			if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 {
				l.log.Error("hub refused reported patch; dropping it", "status", se.Status, "error", err)
				l.mu.Lock()
				l.pending = newer
				l.mu.Unlock()
			}
			return
		}
		l.mu.Lock()
		l.sentReported++
		l.mu.Unlock()
	}
	for {
		l.mu.Lock()
		if len(l.telemetry) == 0 {
			l.mu.Unlock()
			return
		}
		m := l.telemetry[0]
		l.mu.Unlock()
		if err := l.client.SendTelemetry(ctx, m.body, m.props); err != nil {
			return
		}
		l.mu.Lock()
		if len(l.telemetry) > 0 {
			l.telemetry = l.telemetry[1:]
		}
		l.sentTelemetry++
		l.mu.Unlock()
	}
}

// Connected implements upstream.Handler: read the twin and hand desired on.
func (l *link) Connected(ctx context.Context) {
	des, rep, err := l.client.GetTwin(ctx)
	if err != nil {
		l.log.Warn("get twin after connect", "error", err)
		return
	}
	version := versionOf(des)
	delete(des, "$version")
	delete(rep, "$version")
	l.mu.Lock()
	l.desired, l.desiredVersion = des, version
	// Reported: the gateway wins. Keys the hub has that we never sent stay as the hub has them.
	merged := rep
	mergeInto(merged, deepCopy(l.reported))
	l.reported = merged
	doc := deepCopy(des)
	l.mu.Unlock()
	l.poke()
	if l.onDesired != nil {
		l.onDesired(doc, version)
	}
}

// Disconnected implements upstream.Handler.
func (l *link) Disconnected(error) {}

// DesiredPatch implements upstream.Handler.
func (l *link) DesiredPatch(patch map[string]any, version int64) {
	l.mu.Lock()
	if version <= l.desiredVersion {
		l.mu.Unlock()
		return // already seen in the twin GET
	}
	mergeInto(l.desired, patch)
	l.desiredVersion = version
	doc := deepCopy(l.desired)
	l.mu.Unlock()
	if l.onDesired != nil {
		l.onDesired(doc, version)
	}
}

// Method implements upstream.Handler.
func (l *link) Method(ctx context.Context, name string, payload json.RawMessage) (int, any) {
	if l.onMethod == nil {
		return 404, map[string]string{"error": "no methods on " + l.id}
	}
	return l.onMethod(ctx, name, payload)
}

// Stats reports the link's counters.
func (l *link) Stats() map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]any{"queuedTelemetry": len(l.telemetry), "droppedTelemetry": l.dropped, "sentTelemetry": l.sentTelemetry,
		"sentReported": l.sentReported, "pendingReported": len(l.pending) > 0}
	if l.client != nil {
		out["connected"] = l.client.Connected()
	}
	return out
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
