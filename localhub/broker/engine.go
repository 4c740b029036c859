package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

// willMessageType is the application property IoT Hub adds to a forwarded Will. [azure note 1.2]
const willMessageType = "iothub-MessageType"

// engine is the running mochi server and its listener.
type engine struct {
	srv *mqtt.Server
	ln  *listener
}

func (e *engine) addr() string { return e.ln.Address() }

// close stops mochi; its Close closes our listener, which closes and waits for
// every connection. Then wait for the accept goroutine mochi started.
func (e *engine) close() {
	_ = e.srv.Close()
	e.ln.waitServe()
}

func (b *Broker) newEngine() (*engine, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1             // SUBSCRIBE QoS 2 is granted 1 [azure note 1.5]
	caps.MinimumProtocolVersion = 4 // MQTT 3.1.1 [azure note 1.1]
	caps.MaximumPacketSize = maxPacketSize
	caps.MaximumClientWritesPending = writesPending
	caps.SharedSubAvailable = 0
	caps.SubIDAvailable = 0
	caps.TopicAliasMaximum = 0
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       slog.New(quietHandler{b.log.With("component", "mochi").Handler()}),
		// $SYS values are never readable by devices; compute them rarely
		// (mochi reads MemStats, a stop-the-world call, each time).
		SysTopicResendInterval: 24 * 60 * 60,
	})
	if err := srv.AddHook(&hook{b: b, srv: srv}, nil); err != nil {
		return nil, fmt.Errorf("add broker hook: %w", err)
	}
	ln := newListener(b.opts.Addr, b.opts.TLS, b.connectTimeout, b.log, b.endSession)
	if err := srv.AddListener(ln); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", b.opts.Addr, err)
	}
	if err := srv.Serve(); err != nil { // does not block: starts the accept goroutine
		_ = srv.Close()
		return nil, fmt.Errorf("start mqtt server: %w", err)
	}
	return &engine{srv: srv, ln: ln}, nil
}

// hook adapts mochi's callbacks to the broker. Every callback runs on the
// goroutine of the connection it concerns.
type hook struct {
	mqtt.HookBase
	b   *Broker
	srv *mqtt.Server
}

var provided = []byte{
	mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnDisconnect,
	mqtt.OnACLCheck, mqtt.OnPacketRead, mqtt.OnSubscribe, mqtt.OnPublish, mqtt.OnWill,
}

// ID names the hook in mochi's logs.
func (h *hook) ID() string { return "drover-iothub" }

// Provides tells mochi which callbacks the hook implements.
func (h *hook) Provides(b byte) bool { return bytes.IndexByte(provided, b) >= 0 }

func conn(cl *mqtt.Client) *trackedConn {
	c, _ := cl.Net.Conn.(*trackedConn)
	return c
}

// OnConnect refuses MQTT 5 (IoT Hub speaks 3.1.1; 3.1 is refused by
// MinimumProtocolVersion) and caps the keep-alive.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 4 {
		h.b.refused(cl, pk.Connect.ClientIdentifier, "unsupported protocol version", nil)
		_ = h.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return packets.ErrUnsupportedProtocolVersion
	}
	if cl.State.Keepalive == 0 || cl.State.Keepalive > maxKeepalive {
		cl.State.Keepalive = maxKeepalive // [azure note 1.2]
	}
	return nil
}

// OnConnectAuthenticate checks client id, username, Will and SAS token. A
// false return makes mochi answer CONNACK 5 "not authorized" (3.1.1).
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := conn(cl)
	if c == nil {
		return false
	}
	id := pk.Connect.ClientIdentifier
	reason, err := h.b.checkConnect(c, id, pk.Connect)
	if reason != "" {
		h.b.refused(cl, id, reason, err)
		return false
	}
	return true
}

// checkConnect returns why a CONNECT is refused, or "" to accept it.
// [azure note 1.2, 8.2]
func (b *Broker) checkConnect(c *trackedConn, id string, cp packets.ConnectParams) (string, error) {
	u, err := parseUsername(string(cp.Username))
	switch {
	case containsSlash(id) || (err == nil && u.module != ""):
		return "module identities are not supported", nil
	case !iothubtopic.ValidDeviceID(id):
		return "client id is not a valid device id", nil
	case err != nil:
		return "malformed username", err
	case !sameHost(u.host, b.opts.Hostname):
		return "username names another hub", nil
	case u.device != id:
		return "username names another device", nil
	}
	if cp.WillFlag {
		r, err := iothubtopic.Parse(id, cp.WillTopic)
		if err != nil || r.Kind != iothubtopic.KindTelemetry {
			return "will topic is not the device's telemetry topic", err
		}
	}
	if len(cp.Password) == 0 {
		return "missing password", nil // X.509 client certificates are not supported
	}
	ctx, cancel := context.WithTimeout(b.runCtx, authTimeout)
	defer cancel()
	expiry, err := b.opts.Auth.AuthenticateDevice(ctx, id, string(cp.Password))
	if err != nil {
		return "authentication failed", err
	}
	if !expiry.IsZero() && !time.Now().Before(expiry) {
		return "token expired", nil
	}
	c.expiry = expiry
	return "", nil
}

func (b *Broker) refused(cl *mqtt.Client, id, reason string, err error) {
	attrs := []any{"device", clip(id), "reason", reason}
	if c := conn(cl); c != nil {
		attrs = append(attrs, "remote", c.remote)
	}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	b.log.Warn("device connect refused", attrs...)
}

// OnSessionEstablish runs after authentication, before mochi takes over an
// older session of the same id and before the CONNACK.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if c := conn(cl); c != nil {
		h.b.startSession(cl, c)
	}
}

// OnDisconnect ends the session (the listener repeats this as a backstop for
// paths where mochi returns without calling OnDisconnect).
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if c := conn(cl); c != nil {
		h.b.endSession(c, err)
	}
}

// OnACLCheck lets a device publish and subscribe to its own topics only. [azure note 1.1]
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return iothubtopic.AllowedPublish(cl.ID, topic)
	}
	return iothubtopic.AllowedSubscription(cl.ID, topic)
}

// errRefusedPublish closes the connection from OnPacketRead: mochi only
// propagates ErrRejectPacket from there, and the read loop then ends.
var errRefusedPublish = fmt.Errorf("publish refused: %w", packets.ErrRejectPacket)

// OnPacketRead closes the connection on a QoS 2 PUBLISH or a PUBLISH to a
// topic the device may not use, as IoT Hub does (for any QoS; mochi alone would
// drop QoS 0 silently). [azure note 1.1, 1.5]
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	if pk.FixedHeader.Qos > 1 {
		h.b.log.Warn("publish refused", "device", cl.ID, "topic", clip(pk.TopicName), "reason", "qos 2 is not supported")
		return pk, errRefusedPublish
	}
	if _, err := iothubtopic.Parse(cl.ID, pk.TopicName); err != nil {
		h.b.log.Warn("publish refused", "device", cl.ID, "topic", clip(pk.TopicName), "error", err)
		return pk, errRefusedPublish
	}
	return pk, nil
}

// OnSubscribe grants QoS 1 for QoS 2 and logs refused filters (the refusal
// itself, SUBACK 0x80, comes from OnACLCheck).
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	for i := range pk.Filters {
		f := &pk.Filters[i]
		if f.Qos > 1 {
			f.Qos = 1 // [azure note 1.5]
		}
		if !iothubtopic.AllowedSubscription(cl.ID, f.Filter) {
			h.b.log.Warn("subscription refused", "device", cl.ID, "filter", clip(f.Filter))
		}
	}
	return pk
}

// OnPublish hands a device's publish to the Handler. Nothing is ever fanned
// out or retained: CodeSuccessIgnore makes mochi PUBACK QoS 1 and drop the
// packet. [mochi note]
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	id := cl.ID
	r, err := iothubtopic.Parse(id, pk.TopicName)
	if err != nil { // OnPacketRead already refused it; be safe anyway
		if c := conn(cl); c != nil {
			c.kill()
		}
		return pk, packets.ErrRejectPacket
	}
	hd := h.b.opts.Handler
	switch r.Kind {
	case iothubtopic.KindTelemetry:
		msg := Message{Topic: pk.TopicName, Props: r.Props, Body: pk.Payload, Retain: pk.FixedHeader.Retain}
		if err := hd.Telemetry(id, msg); err != nil {
			h.b.log.Warn("telemetry not accepted", "device", id, "qos", pk.FixedHeader.Qos, "error", err)
			if pk.FixedHeader.Qos > 0 {
				// No PUBACK; close so the device resends after reconnecting.
				if c := conn(cl); c != nil {
					c.kill()
				}
				return pk, packets.ErrRejectPacket
			}
		}
	case iothubtopic.KindTwinGet:
		h.b.q.request(id, func() { hd.TwinGet(id, r.RID) })
	case iothubtopic.KindReportedPatch:
		body := pk.Payload
		h.b.q.request(id, func() { hd.ReportedPatch(id, r.RID, body) })
	case iothubtopic.KindMethodResponse:
		body := pk.Payload
		h.b.q.request(id, func() { hd.MethodResponse(id, r.RID, r.Status, body) })
	}
	return pk, packets.CodeSuccessIgnore
}

// OnWill forwards a Will (checked at CONNECT to be the device's telemetry
// topic) as telemetry with iothub-MessageType=Will, unless the session was
// replaced by a takeover or dropped by Disconnect. It is never retained.
// mochi calls it before OnDisconnect, so it precedes DeviceDisconnected.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	retain := will.Retain
	will.Retain = false
	c := conn(cl)
	if c == nil || c.revoked.Load() || !h.b.current(c) {
		return will, nil
	}
	r, err := iothubtopic.Parse(cl.ID, will.TopicName)
	if err != nil || r.Kind != iothubtopic.KindTelemetry {
		return will, nil
	}
	props := append(r.Props[:len(r.Props):len(r.Props)], iothubtopic.Property{Name: willMessageType, Value: "Will"})
	msg := Message{Topic: will.TopicName, Props: props, Body: will.Payload, Retain: retain}
	if err := h.b.opts.Handler.Telemetry(cl.ID, msg); err != nil {
		h.b.log.Warn("will not accepted", "device", cl.ID, "error", err)
	}
	return will, nil
}

// clip bounds client-controlled strings in logs.
func clip(s string) string {
	const maxLen = 200
	if len(s) > maxLen {
		return s[:maxLen] + "…"
	}
	return s
}

// quietHandler wraps mochi's logger: its Info and Warn lines become Debug
// (the broker logs what matters itself, and mochi warns on client-controlled
// events), and packet attributes are dropped so that payloads and a second
// CONNECT's password never reach the log.
type quietHandler struct{ h slog.Handler }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelError {
		return slog.LevelDebug
	}
	return l
}

func dropAttr(key string) bool {
	return key == "pk" || key == "packet" || key == "will"
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, demote(l))
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, demote(r.Level), r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if !dropAttr(a.Key) {
			nr.AddAttrs(a)
		}
		return true
	})
	return q.h.Handle(ctx, nr)
}

func (q quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	kept := make([]slog.Attr, 0, len(attrs))
	for _, a := range attrs {
		if !dropAttr(a.Key) {
			kept = append(kept, a)
		}
	}
	return quietHandler{q.h.WithAttrs(kept)}
}

func (q quietHandler) WithGroup(name string) slog.Handler { return quietHandler{q.h.WithGroup(name)} }
