package localhub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/broker"
	"github.com/drover-iot/drover/localhub/metrics"
	"github.com/drover-iot/drover/localhub/service"
	"github.com/drover-iot/drover/localhub/store"
)

// devices is the device side of the hub: it authenticates CONNECTs, answers
// twin requests, stores telemetry, and carries direct method calls.
type devices struct {
	h      *Hub
	broker *broker.Broker

	mu       sync.Mutex
	pending  map[string]*call           // rid -> in-flight method call
	waiters  map[string][]chan struct{} // device -> waiting for it to connect
	activity map[string]time.Time       // last persisted activity per device

	rid atomic.Uint64
}

type call struct {
	deviceID string
	done     chan result
}

type result struct {
	status int
	body   []byte
}

func newDevices(h *Hub) *devices {
	return &devices{h: h, pending: map[string]*call{}, waiters: map[string][]chan struct{}{}, activity: map[string]time.Time{}}
}

// run owns nothing periodic yet; it exists so the hub can stop future workers in one place.
func (d *devices) run(ctx context.Context) { <-ctx.Done() }

// AuthenticateDevice implements broker.Authenticator: the password must be a
// SAS token for this hub's {hostname}/devices/{id}, signed with the device's
// primary or secondary key (or the "device" policy), unexpired, and the
// device must be enabled.
func (d *devices) AuthenticateDevice(ctx context.Context, deviceID, password string) (time.Time, error) {
	exp, err := d.authenticate(ctx, deviceID, password)
	if err != nil {
		d.h.metrics.AuthFailure()
	}
	return exp, err
}

func (d *devices) authenticate(ctx context.Context, deviceID, password string) (time.Time, error) {
	tok, err := sas.Parse(password)
	if err != nil {
		return time.Time{}, err
	}
	if !tok.Covers(sas.DeviceResource(d.h.opts.Hostname, deviceID)) {
		return time.Time{}, fmt.Errorf("token resource %q does not cover device %s on %s", tok.Resource, deviceID, d.h.opts.Hostname)
	}
	dev, err := d.h.st.GetDevice(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) && tok.KeyName == "" {
		dev, err = d.provision(ctx, deviceID, tok)
	}
	if err != nil {
		return time.Time{}, err
	}
	if !dev.Enabled() {
		return time.Time{}, fmt.Errorf("device %s is disabled", deviceID)
	}
	if dev.AuthType != "sas" {
		return time.Time{}, fmt.Errorf("device %s does not use SAS authentication", deviceID)
	}
	now := d.h.now()
	if tok.KeyName != "" {
		p, err := d.h.st.Policy(ctx, tok.KeyName)
		if err != nil {
			return time.Time{}, err
		}
		if !p.Has(store.DeviceConnect) {
			return time.Time{}, fmt.Errorf("policy %s lacks DeviceConnect", p.Name)
		}
		if err := verifyEither(tok, p.PrimaryKey, p.SecondaryKey, now); err != nil {
			return time.Time{}, err
		}
		return tok.Expiry, nil
	}
	if err := verifyEither(tok, dev.PrimaryKey, dev.SecondaryKey, now); err != nil {
		return time.Time{}, err
	}
	return tok.Expiry, nil
}

// provision registers an unknown device whose token is signed with a key
// derived from an enabled enrollment group's key (zero-touch provisioning of
// a gateway's children, as Azure DPS symmetric-key groups do).
func (d *devices) provision(ctx context.Context, deviceID string, tok sas.Token) (store.Device, error) {
	groups, err := d.h.st.ListEnrollments(ctx)
	if err != nil {
		return store.Device{}, err
	}
	for _, g := range groups {
		if !g.Enabled() {
			continue
		}
		primary, err1 := sas.DeriveKey(g.PrimaryKey, deviceID)
		secondary, err2 := sas.DeriveKey(g.SecondaryKey, deviceID)
		if err1 != nil || err2 != nil {
			continue
		}
		if verifyEither(tok, primary, secondary, d.h.now()) != nil {
			continue
		}
		dev, err := d.h.st.ProvisionChild(ctx, g, deviceID, primary, secondary)
		if err != nil {
			return dev, fmt.Errorf("provision %s through enrollment group %s: %w", deviceID, g.ID, err)
		}
		d.h.log.Info("device provisioned", "device", deviceID, "enrollment", g.ID, "parent", g.Parent)
		return dev, nil
	}
	return store.Device{}, fmt.Errorf("device %s: %w (and no enrollment group key signs its token)", deviceID, store.ErrNotFound)
}

func verifyEither(tok sas.Token, primary, secondary string, now time.Time) error {
	err := tok.Verify(primary, now)
	if err == nil || errors.Is(err, sas.ErrExpired) {
		return err
	}
	if secondary != "" {
		if err2 := tok.Verify(secondary, now); err2 == nil || errors.Is(err2, sas.ErrExpired) {
			return err2
		}
	}
	return err
}

// DeviceConnected implements broker.Handler.
func (d *devices) DeviceConnected(id string) {
	d.h.metrics.Connect()
	now := d.h.now()
	if err := d.h.st.SetConnectionState(context.Background(), id, true, now); err != nil {
		d.h.log.Warn("record connection", "device", id, "error", err)
	}
	d.mu.Lock()
	d.activity[id] = now
	ws := d.waiters[id]
	delete(d.waiters, id)
	d.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
	d.h.log.Info("device connected", "device", id)
}

// DeviceDisconnected implements broker.Handler.
func (d *devices) DeviceDisconnected(id string) {
	if err := d.h.st.SetConnectionState(context.Background(), id, false, d.h.now()); err != nil {
		d.h.log.Warn("record disconnection", "device", id, "error", err)
	}
	d.mu.Lock()
	delete(d.activity, id)
	d.mu.Unlock()
	d.h.log.Info("device disconnected", "device", id)
}

// touch persists lastActivityTime at most once a second per device.
func (d *devices) touch(id string) {
	now := d.h.now()
	d.mu.Lock()
	last, ok := d.activity[id]
	if ok && now.Sub(last) < time.Second {
		d.mu.Unlock()
		return
	}
	d.activity[id] = now
	d.mu.Unlock()
	if err := d.h.st.TouchActivity(context.Background(), id, now); err != nil {
		d.h.log.Warn("record activity", "device", id, "error", err)
	}
}

// Telemetry implements broker.Handler: the message is committed before the broker acknowledges it.
func (d *devices) Telemetry(id string, msg broker.Message) error {
	d.h.metrics.Message(metrics.KindTelemetry)
	sys := msg.Props.System()
	m := store.Message{
		DeviceID: id, Enqueued: d.h.now(),
		MessageID: sys[iothubtopic.SysMessageID], CorrelationID: sys[iothubtopic.SysCorrelationID],
		ContentType: sys[iothubtopic.SysContentType], ContentEncoding: sys[iothubtopic.SysContentEncoding],
		Properties: msg.Props.App(), System: map[string]string{}, Body: msg.Body,
	}
	for k, v := range sys {
		switch k {
		case iothubtopic.SysMessageID, iothubtopic.SysCorrelationID, iothubtopic.SysContentType, iothubtopic.SysContentEncoding:
		default:
			m.System[k] = v
		}
	}
	if msg.Retain {
		m.Properties["mqtt-retain"] = "true"
	}
	seq, err := d.h.st.AppendTelemetry(context.Background(), m)
	if err != nil {
		return err
	}
	d.h.feed.publish(seq)
	d.touch(id)
	return nil
}

// TwinGet implements broker.Handler: the reply holds desired and reported with their $version.
func (d *devices) TwinGet(id, rid string) {
	d.h.metrics.Message(metrics.KindTwinGet)
	d.touch(id)
	t, err := d.h.st.GetTwin(context.Background(), id)
	if err != nil {
		d.twinError(id, rid, 500, 500001, "read twin: "+err.Error())
		return
	}
	body, err := json.Marshal(map[string]any{
		"desired":  t.Desired.Document(twin.Desired, false),
		"reported": t.Reported.Document(twin.Reported, false),
	})
	if err != nil {
		d.twinError(id, rid, 500, 500001, "encode twin: "+err.Error())
		return
	}
	d.send(id, iothubtopic.TwinResponse(200, rid, 0), body)
}

// ReportedPatch implements broker.Handler.
func (d *devices) ReportedPatch(id, rid string, body []byte) {
	d.h.metrics.Message(metrics.KindReportedPatch)
	d.touch(id)
	patch, err := twin.DecodeObject(body)
	if err != nil {
		d.twinError(id, rid, 400, 400004, "reported patch: "+err.Error())
		return
	}
	v, err := d.h.st.PatchReported(context.Background(), id, patch)
	if err != nil {
		var le *twin.LimitError
		if errors.As(err, &le) {
			d.twinError(id, rid, 400, 400004, err.Error())
			return
		}
		d.twinError(id, rid, 500, 500001, "reported patch: "+err.Error())
		return
	}
	d.h.metrics.TwinUpdate("reported")
	d.send(id, iothubtopic.TwinResponse(204, rid, v), nil)
	d.h.jobs.ReportedChanged(id) // jobs awaiting this device's reported properties re-check it
}

// twinError answers with a JSON body carrying errorCode: the Node SDK ignores
// the status in the topic and looks only at the body.
func (d *devices) twinError(id, rid string, status, code int, msg string) {
	d.h.log.Warn("twin request failed", "device", id, "status", status, "error", msg)
	b, _ := json.Marshal(map[string]any{"errorCode": code, "message": msg, "timestampUtc": d.h.now().UTC().Format(time.RFC3339)})
	d.send(id, iothubtopic.TwinResponse(status, rid, 0), b)
}

func (d *devices) send(id, topic string, body []byte) {
	if err := d.broker.Send(id, topic, body); err != nil {
		d.h.log.Debug("reply not delivered", "device", id, "topic", topic, "error", err)
	}
}

// MethodResponse implements broker.Handler: it completes the call with that rid,
// if it was made to this device.
func (d *devices) MethodResponse(id, rid string, status int, body []byte) {
	d.h.metrics.Message(metrics.KindMethodResult)
	d.touch(id)
	d.mu.Lock()
	c, ok := d.pending[rid]
	if ok && c.deviceID == id {
		delete(d.pending, rid)
	}
	d.mu.Unlock()
	if !ok || c.deviceID != id {
		d.h.log.Warn("method response for no pending call", "device", id, "rid", rid)
		return
	}
	c.done <- result{status: status, body: body}
}

// InvokeMethod implements service.Sessions.
// Each call is counted by result (ok, error_status for an answer of 400 or
// more, not_online, timeout, error) with its time.
func (d *devices) InvokeMethod(ctx context.Context, id, method string, payload json.RawMessage, respTimeout, connTimeout time.Duration) (int, json.RawMessage, error) {
	start := time.Now()
	status, body, err := d.invokeMethod(ctx, id, method, payload, respTimeout, connTimeout)
	result := "ok"
	switch {
	case errors.Is(err, service.ErrDeviceNotOnline):
		result = "not_online"
	case errors.Is(err, service.ErrMethodTimeout):
		result = "timeout"
	case err != nil:
		result = "error"
	case status >= 400:
		result = "error_status"
	}
	d.h.metrics.Method(result, time.Since(start))
	return status, body, err
}

func (d *devices) invokeMethod(ctx context.Context, id, method string, payload json.RawMessage, respTimeout, connTimeout time.Duration) (int, json.RawMessage, error) {
	if !d.broker.Connected(id) {
		if connTimeout <= 0 || !d.waitConnected(ctx, id, connTimeout) {
			return 0, nil, service.ErrDeviceNotOnline
		}
	}
	rid := strconv.FormatUint(d.rid.Add(1), 10)
	c := &call{deviceID: id, done: make(chan result, 1)}
	d.mu.Lock()
	d.pending[rid] = c
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, rid)
		d.mu.Unlock()
	}()
	if err := d.sendMethod(ctx, id, iothubtopic.MethodRequest(method, rid), payload, connTimeout); err != nil {
		return 0, nil, fmt.Errorf("%w: %v", service.ErrDeviceNotOnline, err)
	}
	t := time.NewTimer(respTimeout)
	defer t.Stop()
	select {
	case r := <-c.done:
		body := bytes.TrimSpace(r.body)
		if len(body) == 0 {
			body = []byte("null")
		}
		if !json.Valid(body) {
			return 0, nil, fmt.Errorf("%w: %s answered %s with a payload that is not JSON", service.ErrBadResponse, id, method)
		}
		if len(body) > 128*1024 {
			return 0, nil, fmt.Errorf("%w: %s answered %s with %d bytes (limit 131072)", service.ErrBadResponse, id, method, len(body))
		}
		return r.status, json.RawMessage(body), nil
	case <-t.C:
		return 0, nil, service.ErrMethodTimeout
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// sendMethod delivers a method request. A device that has just connected may
// not have subscribed to methods yet; within the connect timeout the hub
// retries briefly instead of failing at once.
func (d *devices) sendMethod(ctx context.Context, id, topic string, payload []byte, connTimeout time.Duration) error {
	deadline := time.Now().Add(connTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := d.broker.Send(id, topic, payload)
		if err == nil || !errors.Is(err, broker.ErrNotSubscribed) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (d *devices) waitConnected(ctx context.Context, id string, timeout time.Duration) bool {
	ch := make(chan struct{})
	d.mu.Lock()
	d.waiters[id] = append(d.waiters[id], ch)
	d.mu.Unlock()
	if d.broker.Connected(id) { // connected between the check and the registration
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	d.mu.Lock()
	ws := d.waiters[id]
	for i, w := range ws {
		if w == ch {
			d.waiters[id] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	d.mu.Unlock()
	return false
}

// DesiredChanged implements service.Sessions: a connected device gets the patch with its $version.
func (d *devices) DesiredChanged(id string, patch map[string]any, version int64) {
	if patch != nil {
		d.h.metrics.TwinUpdate("desired")
	}
	if !d.broker.Connected(id) {
		return
	}
	body := make(map[string]any, len(patch)+1)
	for k, v := range patch {
		body[k] = v
	}
	body["$version"] = version
	b, err := json.Marshal(body)
	if err != nil {
		d.h.log.Error("encode desired notification", "device", id, "error", err)
		return
	}
	d.send(id, iothubtopic.DesiredPatch(version), b)
}

// IdentityChanged implements service.Sessions: disabling or re-keying a device ends its session.
func (d *devices) IdentityChanged(before, after store.Device) {
	if !after.Enabled() || before.PrimaryKey != after.PrimaryKey || before.SecondaryKey != after.SecondaryKey || before.AuthType != after.AuthType {
		if d.broker.Connected(after.ID) {
			d.h.log.Info("dropping session after identity change", "device", after.ID, "status", after.Status)
			d.broker.Disconnect(after.ID)
		}
	}
}

// IdentityDeleted implements service.Sessions.
func (d *devices) IdentityDeleted(id string) {
	if d.broker.Connected(id) {
		d.h.log.Info("dropping session of deleted device", "device", id)
		d.broker.Disconnect(id)
	}
}

// Connected implements service.Sessions.
func (d *devices) Connected(id string) bool { return d.broker.Connected(id) }

// ConnectedCount implements service.Sessions.
func (d *devices) ConnectedCount() int { return d.broker.ConnectedCount() }

// feed tells event streams that telemetry arrived.
type feed struct {
	mu   sync.Mutex
	last int64
	wake chan struct{}
}

func newFeed() *feed { return &feed{wake: make(chan struct{})} }

func (f *feed) publish(seq int64) {
	f.mu.Lock()
	if seq > f.last {
		f.last = seq
		close(f.wake)
		f.wake = make(chan struct{})
	}
	f.mu.Unlock()
}

// Last implements service.TelemetryFeed.
func (f *feed) Last() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// Wait implements service.TelemetryFeed.
func (f *feed) Wait(after int64) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last > after {
		c := make(chan struct{})
		close(c)
		return c
	}
	return f.wake
}
