package broker

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// trackedConn is one accepted connection: the TLS connection mochi reads and
// writes, and the TCP connection under it, which the broker closes to drop a
// client at once (no close_notify that could block on a stuck peer).
type trackedConn struct {
	net.Conn          // *tls.Conn
	raw      net.Conn // the TCP connection
	remote   string
	revoked  atomic.Bool // dropped by Disconnect: do not forward its Will
	// expiry is set by the auth hook and read when the session starts, both on
	// the connection's own goroutine.
	expiry time.Time
	// session is the session this connection carries; guarded by Broker.mu.
	session *session
}

// kill closes the TCP connection; mochi's read loop then fails and cleans up.
func (c *trackedConn) kill() { _ = c.raw.Close() }

// session is one authenticated connection of one device.
type session struct {
	deviceID string
	cl       *mqtt.Client
	conn     *trackedConn
	timer    *time.Timer // token expiry; guarded by Broker.mu
	ended    bool        // guarded by Broker.mu
}

func (s *session) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// write sends a QoS 0 publish on this connection if it subscribed to a
// matching filter. WritePacket takes the client's lock, so it is safe next to
// mochi's own writes. [mochi note: mochi-mqtt/server issue #275]
func (s *session) write(topic string, payload []byte) error {
	if s.cl.Closed() {
		return ErrNotConnected
	}
	if !subscribed(s.cl.State.Subscriptions.GetAll(), topic) {
		return ErrNotSubscribed
	}
	err := s.cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	})
	if errors.Is(err, mqtt.ErrConnectionClosed) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	if err != nil {
		return fmt.Errorf("write publish: %w", err)
	}
	return nil
}

func subscribed(subs map[string]packets.Subscription, topic string) bool {
	for filter := range subs {
		if matchFilter(filter, topic) {
			return true
		}
	}
	return false
}

// startSession registers the new session of cl, replacing (takeover) any
// previous one, and returns once the Handler's DeviceConnected has run. It is
// called on the connection's goroutine before the CONNACK is sent, and before
// mochi kicks the old connection, so the old session's end finds it is no
// longer current and reports nothing.
func (b *Broker) startSession(cl *mqtt.Client, c *trackedConn) {
	id := cl.ID
	s := &session{deviceID: id, cl: cl, conn: c}
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		c.kill()
		return
	}
	prev := b.sessions[id]
	if prev != nil {
		prev.stopTimer()
	}
	b.sessions[id] = s
	c.session = s
	if !c.expiry.IsZero() {
		s.timer = time.AfterFunc(time.Until(c.expiry), func() { b.expire(s) })
	}
	done := b.q.lifecycle(id, func() { b.opts.Handler.DeviceConnected(id) })
	b.mu.Unlock()

	b.log.Info("device connected", "device", id, "remote", c.remote, "takeover", prev != nil)
	<-done
}

// endSession ends the session carried by c, once. DeviceDisconnected is queued
// only when it was the device's current session (not one kicked by a takeover).
func (b *Broker) endSession(c *trackedConn, cause error) {
	b.mu.Lock()
	s := c.session
	if s == nil || s.ended {
		b.mu.Unlock()
		return
	}
	s.ended = true
	s.stopTimer()
	current := b.sessions[s.deviceID] == s
	if current {
		delete(b.sessions, s.deviceID)
		id := s.deviceID
		b.q.lifecycle(id, func() { b.opts.Handler.DeviceDisconnected(id) })
	}
	b.mu.Unlock()

	attrs := []any{"device", s.deviceID, "replaced", !current}
	if cause != nil {
		attrs = append(attrs, "error", cause)
	}
	b.log.Info("device disconnected", attrs...)
}

// current reports whether c carries the device's live session.
func (b *Broker) current(c *trackedConn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return c.session != nil && !c.session.ended && b.sessions[c.session.deviceID] == c.session
}

// expire drops a session whose SAS token has expired. [azure note 1.3]
func (b *Broker) expire(s *session) {
	b.mu.Lock()
	if b.closing || s.ended {
		b.mu.Unlock()
		return
	}
	b.timerWG.Add(1)
	b.mu.Unlock()
	defer b.timerWG.Done()

	b.log.Warn("device token expired", "device", s.deviceID)
	s.conn.kill()
}
