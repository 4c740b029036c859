package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

// maxTelemetry is the largest device-to-cloud message IoT Hub accepts (body
// and topic); a bigger one would get the connection closed. [azure note 1.1]
const maxTelemetry = 256 * 1024

// GetTwin reads the twin's desired and reported sections (each with its
// "$version"; numbers as json.Number). It fails with ErrNotConnected when
// offline or when the connection drops before the answer, ErrTimeout after
// the ctx deadline or RequestTimeout, and *StatusError for a non-2xx reply.
// [azure note 1.7]
func (c *Client) GetTwin(ctx context.Context) (desired, reported map[string]any, err error) {
	r, err := c.twinRequest(ctx, "get twin", iothubtopic.TwinGet, nil)
	if err != nil {
		return nil, nil, err
	}
	desired, reported, err = decodeTwin(r.body)
	if err != nil {
		return nil, nil, fmt.Errorf("get twin: %w", err)
	}
	return desired, reported, nil
}

// PatchReported merge-patches the reported section (nil values delete) and
// returns its new $version (0 if the hub did not say). Errors as for GetTwin.
func (c *Client) PatchReported(ctx context.Context, patch map[string]any) (version int64, err error) {
	if patch == nil {
		patch = map[string]any{}
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return 0, fmt.Errorf("patch reported: encode: %w", err)
	}
	r, err := c.twinRequest(ctx, "patch reported", iothubtopic.ReportedPatch, body)
	if err != nil {
		return 0, err
	}
	if r.version == 0 {
		c.log.Warn("reported patch reply without $version", "status", r.status)
	}
	return r.version, nil
}

// twinRequest publishes one $rid-correlated twin request and waits for its
// reply; non-2xx replies become *StatusError.
func (c *Client) twinRequest(ctx context.Context, what string, topic func(rid string) string, body []byte) (reply, error) {
	cn, err := c.acquire()
	if err != nil {
		return reply{}, fmt.Errorf("%s: %w", what, err)
	}
	defer c.release(cn)
	ctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
	defer cancel()

	rid := strconv.FormatUint(c.rid.Add(1), 10)
	p := &pending{cn: cn, done: make(chan reply, 1)}
	c.mu.Lock()
	if !cn.live {
		c.mu.Unlock()
		return reply{}, fmt.Errorf("%s: %w", what, ErrNotConnected)
	}
	c.pending[rid] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.pending[rid] == p {
			delete(c.pending, rid)
		}
		c.mu.Unlock()
	}()

	sent := c.publish(cn, topic(rid), 0, body)
	for {
		select {
		case r := <-p.done:
			if r.err != nil {
				return reply{}, fmt.Errorf("%s: %w", what, r.err)
			}
			if r.status < 200 || r.status > 299 {
				return reply{}, fmt.Errorf("%s: %w", what, decodeStatusError(r.status, r.body))
			}
			return r, nil
		case err := <-sent:
			if err != nil {
				return reply{}, fmt.Errorf("%s: %w: %w", what, ErrNotConnected, err)
			}
			sent = nil
		case <-ctx.Done():
			return reply{}, ctxError(what, ctx)
		}
	}
}

// SendTelemetry publishes body at QoS 1 on devices/{id}/messages/events/{props}
// and returns nil only once the hub has acknowledged it (PUBACK). Offline it
// fails at once with ErrNotConnected; a drop before the PUBACK also gives
// ErrNotConnected, and ErrTimeout comes after the ctx deadline or
// RequestTimeout. After an error the message may or may not have arrived:
// delivery is at least once.
func (c *Client) SendTelemetry(ctx context.Context, body []byte, props iothubtopic.Properties) error {
	topic := iothubtopic.Telemetry(c.o.DeviceID, props)
	if n := len(body) + len(topic); n > maxTelemetry {
		return fmt.Errorf("send telemetry: message of %d bytes exceeds the hub's %d", n, maxTelemetry)
	}
	cn, err := c.acquire()
	if err != nil {
		return fmt.Errorf("send telemetry: %w", err)
	}
	defer c.release(cn)
	ctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
	defer cancel()
	c.count(func(s *Stats) { s.Published++ })
	if body == nil {
		body = []byte{}
	}
	select {
	case err := <-c.publish(cn, topic, 1, body):
		if err != nil {
			c.count(func(s *Stats) { s.PublishFailures++ })
			return fmt.Errorf("send telemetry: %w: %w", ErrNotConnected, err)
		}
		c.count(func(s *Stats) { s.Acked++ })
		return nil
	case <-ctx.Done():
		c.count(func(s *Stats) { s.PublishFailures++ })
		return ctxError("send telemetry", ctx)
	}
}

// publish hands one message to paho on cn and reports the token's outcome.
// The goroutine ends when the token completes, which paho guarantees once
// the connection is gone; Run waits for it. The caller holds cn (acquire),
// so the WaitGroup counter is above zero here.
func (c *Client) publish(cn *conn, topic string, qos byte, body []byte) <-chan error {
	res := make(chan error, 1)
	c.reqWG.Go(func() {
		tok := cn.pc.Publish(topic, qos, false, body)
		<-tok.Done()
		res <- tok.Error()
	})
	return res
}

func (c *Client) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// ctxError reports why a request's ctx ended: a deadline is ErrTimeout.
func ctxError(what string, ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w (%w)", what, ErrTimeout, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
