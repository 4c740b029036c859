package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

// Statuses the client answers by itself, without calling Handler.Method.
const (
	statusBadRequest  = 400 // the payload is not JSON
	statusServerError = 500 // the handler panicked or its response cannot be encoded
	statusBusy        = 503 // every worker busy and the queue full
)

// methodCall is a direct method request waiting for a worker.
type methodCall struct {
	cn      *conn // the connection the request came on
	name    string
	rid     string
	payload json.RawMessage
}

// onMethod runs on paho's router and never blocks on the Handler: it queues
// the call for a worker, or answers at once when it cannot.
func (c *Client) onMethod(cn *conn, topic string, body []byte) {
	name, rid, err := iothubtopic.ParseMethodRequest(topic)
	if err != nil {
		// Without a readable $rid there is nothing to answer; the hub times the call out.
		c.log.Warn("unreadable method request from hub", "topic", clip(topic), "error", err)
		return
	}
	payload, err := methodPayload(body)
	if err != nil {
		c.log.Warn("method request with a payload that is not JSON", "method", name)
		c.publishResponse(cn, rid, statusBadRequest, errorBody("payload is not JSON"))
		return
	}
	if !c.dispatch(methodCall{cn: cn, name: name, rid: rid, payload: payload}) {
		c.log.Warn("method refused: all workers busy", "method", name)
		c.publishResponse(cn, rid, statusBusy, errorBody("too many method calls in progress"))
	}
}

// dispatch queues call and starts a worker when fewer than MethodWorkers
// run; false when the queue is full. Workers exist only while there are
// calls: an idle identity holds no method goroutine (a gateway has
// hundreds of identities that are almost never called).
func (c *Client) dispatch(call methodCall) bool {
	select {
	case c.methods <- call:
	default:
		return false
	}
	c.mu.Lock()
	if c.stopped || c.workers >= c.o.MethodWorkers {
		c.mu.Unlock()
		return true // a running worker takes it
	}
	c.workers++
	c.workWG.Add(1)
	c.mu.Unlock()
	go c.methodWorker()
	return true
}

// publishResponse sends a method response at QoS 0 without waiting: paho
// allows publishing from its router as long as nobody waits on the token.
func (c *Client) publishResponse(cn *conn, rid string, status int, body []byte) {
	cn.pc.Publish(iothubtopic.MethodResponse(status, rid), 0, false, body)
}

// methodWorker serves queued calls until the queue is empty or Run stops.
func (c *Client) methodWorker() {
	defer c.workWG.Done()
	for {
		select {
		case call := <-c.methods:
			c.serveMethod(c.runCtx, call)
			continue
		default:
		}
		// Decide to exit under c.mu: dispatch queues first and then looks at
		// c.workers under c.mu, so a call queued now is either seen here or
		// gets a worker of its own.
		c.mu.Lock()
		if len(c.methods) > 0 && !c.stopped {
			c.mu.Unlock()
			continue
		}
		c.workers--
		c.mu.Unlock()
		return
	}
}

// serveMethod calls the Handler and always answers: on the connection the
// request came on while it lasts, else on the one live at the time of the
// answer (localhub still matches it by $rid), else the answer is dropped.
func (c *Client) serveMethod(ctx context.Context, call methodCall) {
	mctx, cancel := context.WithTimeout(ctx, c.o.MethodTimeout)
	status, resp := c.callMethod(mctx, call)
	cancel()
	body, err := methodResponse(resp)
	if err != nil {
		c.log.Error("method response cannot be encoded", "method", call.name, "error", err)
		status, body = statusServerError, errorBody("method response cannot be encoded")
	}
	c.mu.Lock()
	cn := c.cur
	if call.cn != nil && call.cn.ctx.Err() == nil {
		cn = call.cn
	}
	c.mu.Unlock()
	if cn == nil {
		c.log.Warn("method response dropped: not connected", "method", call.name, "status", status)
		return
	}
	tok := cn.pc.Publish(iothubtopic.MethodResponse(status, call.rid), 0, false, body)
	t := time.NewTimer(c.o.RequestTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			c.log.Warn("method response not sent", "method", call.name, "error", err)
		}
	case <-t.C:
		c.log.Warn("method response not sent", "method", call.name, "error", ErrTimeout)
	case <-ctx.Done():
	}
}

// callMethod runs Handler.Method; a panic becomes a 500.
func (c *Client) callMethod(ctx context.Context, call methodCall) (status int, resp any) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("method handler panicked", "method", call.name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			status, resp = statusServerError, json.RawMessage(errorBody("method handler failed"))
		}
	}()
	return c.o.Handler.Method(ctx, call.name, call.payload)
}
