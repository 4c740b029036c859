package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/sas"
)

// subackFailure is the SUBACK return code for a refused filter. [MQTT-3.9.3]
const subackFailure = 0x80

// subscriptions are made after every connect; QoS 0 as the Node SDK does. [azure note 1.5, 6.1]
var subscriptions = map[string]byte{
	iothubtopic.FilterTwinResponses:  0,
	iothubtopic.FilterDesiredPatches: 0,
	iothubtopic.FilterMethodRequests: 0,
}

// connect opens one connection with a fresh token and subscribes. On success
// the connection is live and Handler.Connected is queued.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	expiry := c.o.Now().Add(c.o.TokenTTL).Truncate(time.Second) // se is whole seconds
	token, err := sas.Sign(sas.DeviceResource(c.o.HostName, c.o.DeviceID), c.o.Key, "", expiry)
	if err != nil {
		return nil, fmt.Errorf("sign SAS token: %w", err)
	}
	cn := &conn{lost: make(chan error, 1), kick: make(chan error, 1), expiry: expiry}
	cn.ctx, cn.cancel = context.WithCancel(ctx)

	// The raw connection is closed if ctx ends while paho is still dialing or
	// waiting for CONNACK: paho's Connect takes no context.
	var watch struct {
		sync.Mutex
		stop func() bool
	}
	dial := func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		nc, err := c.dial(ctx)
		if err != nil {
			return nil, err
		}
		watch.Lock()
		watch.stop = context.AfterFunc(ctx, func() { _ = nc.Close() })
		watch.Unlock()
		return nc, nil
	}
	po := mqtt.NewClientOptions().
		AddBroker("tls://" + c.o.Address). // only passed to dial
		SetClientID(c.o.DeviceID).
		SetUsername(c.user).
		SetPassword(token).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetKeepAlive(c.o.KeepAlive).
		SetPingTimeout(c.o.pingTimeout()).
		SetConnectTimeout(c.o.ConnectTimeout).
		SetWriteTimeout(c.o.RequestTimeout).
		SetCustomOpenConnectionFn(dial).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case cn.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			c.log.Warn("upstream message on an unexpected topic", "topic", clip(m.Topic()))
		})
	pc := mqtt.NewClient(po)
	pc.AddRoute(iothubtopic.FilterTwinResponses, func(_ mqtt.Client, m mqtt.Message) { c.onTwinResponse(cn, m.Topic(), m.Payload()) })
	pc.AddRoute(iothubtopic.FilterDesiredPatches, func(_ mqtt.Client, m mqtt.Message) { c.onDesired(cn, m.Topic(), m.Payload()) })
	pc.AddRoute(iothubtopic.FilterMethodRequests, func(_ mqtt.Client, m mqtt.Message) { c.onMethod(cn, m.Topic(), m.Payload()) })
	cn.pc = pc

	tok := pc.Connect()
	<-tok.Done() // bounded by ConnectTimeout, and by ctx through the dial and the watch
	watch.Lock()
	if watch.stop != nil {
		watch.stop()
	}
	watch.Unlock()
	if err := tok.Error(); err != nil {
		cn.cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, connectError(c.o.Address, tok, err)
	}
	if err := c.subscribe(ctx, cn); err != nil {
		cn.cancel()
		pc.Disconnect(0)
		return nil, err
	}
	c.goUp(cn)
	return cn, nil
}

// connectError classifies a failed CONNECT: refused credentials wrap ErrUnauthorized. [azure note 1.2]
func connectError(addr string, tok mqtt.Token, err error) error {
	if ct, ok := tok.(*mqtt.ConnectToken); ok {
		switch rc := ct.ReturnCode(); rc {
		case packets.ErrRefusedIDRejected, packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised:
			return fmt.Errorf("connect to %s: %w (CONNACK %d: %w)", addr, ErrUnauthorized, rc, err)
		}
	}
	return fmt.Errorf("connect to %s: %w", addr, err)
}

// dial opens TCP and TLS within ConnectTimeout and ctx.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.ConnectTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", c.o.Address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.o.Address, err)
	}
	tc := tls.Client(raw, c.o.TLS.Clone())
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", c.o.Address, err)
	}
	return tc, nil
}

// subscribe makes the three subscriptions and checks every one was granted.
func (c *Client) subscribe(ctx context.Context, cn *conn) error {
	tok := cn.pc.SubscribeMultiple(subscriptions, nil)
	t := time.NewTimer(c.o.RequestTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case err := <-cn.lost:
		return fmt.Errorf("subscribe: connection lost: %w", err)
	case <-t.C:
		return fmt.Errorf("subscribe: %w: no SUBACK within %s", ErrTimeout, c.o.RequestTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	res := st.Result()
	for filter := range subscriptions {
		if code, ok := res[filter]; !ok || code == subackFailure {
			return fmt.Errorf("subscribe: hub refused %s", filter)
		}
	}
	return nil
}

// onTwinResponse runs on paho's router: it hands the reply to its request
// and never blocks.
func (c *Client) onTwinResponse(cn *conn, topic string, body []byte) {
	status, rid, version, err := iothubtopic.ParseTwinResponse(topic)
	if err != nil {
		c.log.Warn("unreadable twin response from hub", "topic", clip(topic), "error", err)
		return
	}
	c.mu.Lock()
	p, ok := c.pending[rid]
	if ok && p.cn == cn {
		delete(c.pending, rid)
	}
	c.mu.Unlock()
	if !ok || p.cn != cn {
		c.log.Warn("twin response for no pending request", "rid", clip(rid), "status", status)
		return
	}
	p.done <- reply{status: status, version: version, body: body}
}

// onDesired runs on paho's router: it decodes the notification and queues it
// for the Handler, in arrival order. A notification the client cannot place
// (unreadable, no $version, queue full) recycles the connection so the next
// Connected re-reads the twin.
func (c *Client) onDesired(cn *conn, topic string, body []byte) {
	topicVersion, err := iothubtopic.ParseDesiredPatch(topic)
	var patch map[string]any
	var version int64
	if err == nil {
		patch, version, err = decodeDesired(body, topicVersion)
	}
	if err != nil {
		c.log.Error("unreadable desired notification from hub; resynchronising", "topic", clip(topic), "error", err)
		c.mu.Lock()
		c.kickLocked(cn, fmt.Errorf("%w: %w", ErrResync, err))
		c.mu.Unlock()
		return
	}
	ev := event{kind: evDesired, patch: patch, version: version}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case cn.ctx.Err() != nil:
		// The connection is already down; the next Connected re-reads the twin.
	case !cn.live:
		cn.early = append(cn.early, ev) // before goUp: deliver after Connected
		if len(cn.early) > maxQueuedPatches {
			cn.early = nil
			c.kickLocked(cn, fmt.Errorf("%w: desired notification queue full", ErrResync))
		}
	case !c.ev.push(ev):
		c.log.Error("desired notification queue full; resynchronising", "version", version)
		c.kickLocked(cn, fmt.Errorf("%w: desired notification queue full", ErrResync))
	}
}
