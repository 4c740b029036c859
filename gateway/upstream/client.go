package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/drover-iot/drover/internal/clock"
)

// Internal timings.
const (
	// drainTimeout bounds how long a planned reconnect waits for in-flight requests.
	drainTimeout = 2 * time.Second
	// quiesce is how long a graceful MQTT DISCONNECT may take (milliseconds, paho's unit).
	quiesce = 250
	// minRenewIn keeps a slow connect or a tight RenewBefore from reconnecting in a tight loop.
	minRenewIn = 500 * time.Millisecond
	// maxLogTopic bounds topics quoted in logs.
	maxLogTopic = 200
)

// ErrAlreadyRunning is returned by a second call to Run.
var ErrAlreadyRunning = errors.New("upstream client already running")

// Stats are counters for the gateway's twin. The counters only grow.
type Stats struct {
	Connected       bool      `json:"connected"`
	ConnectedSince  time.Time `json:"connectedSince,omitzero"`
	TokenExpiry     time.Time `json:"tokenExpiry,omitzero"`
	Connects        uint64    `json:"connects"`        // connections that reached Handler.Connected
	Disconnects     uint64    `json:"disconnects"`     // ends of those connections (renewals included)
	ConnectFailures uint64    `json:"connectFailures"` // attempts that failed (dial, TLS, CONNACK, SUBACK)
	LastError       string    `json:"lastError,omitempty"`
	LastErrorAt     time.Time `json:"lastErrorAt,omitzero"`
	Published       uint64    `json:"published"`       // telemetry messages handed to MQTT
	Acked           uint64    `json:"acked"`           // telemetry messages the hub acknowledged (PUBACK)
	PublishFailures uint64    `json:"publishFailures"` // telemetry messages that failed or timed out
}

// Client is the device-side client of one identity. Build it with New,
// run it with Run; the request methods are safe for concurrent use.
type Client struct {
	o    Options
	log  *slog.Logger
	user string
	rnd  func(int64) int64

	running atomic.Bool
	rid     atomic.Uint64
	ev      *events
	methods chan methodCall
	nudges  chan time.Duration // from Group: stop waiting out a backoff (cap 1)
	reqWG   sync.WaitGroup     // request publishes in flight; waited for by Run
	runCtx  context.Context
	workWG  sync.WaitGroup // method workers; waited for by Run

	mu      sync.Mutex
	cur     *conn         // the live connection (subscribed), nil when offline
	up      chan struct{} // closed while cur != nil
	pending map[string]*pending
	stats   Stats
	workers int  // method workers running
	stopped bool // Run is returning: no new workers
}

// conn is one MQTT connection (one paho client, one SAS token).
type conn struct {
	pc          mqtt.Client
	ctx         context.Context // ends with the connection
	cancel      context.CancelFunc
	lost        chan error // paho saw the connection drop (cap 1)
	kick        chan error // the client wants it dropped (cap 1)
	expiry      time.Time
	connectedAt time.Time

	// Guarded by Client.mu.
	live     bool    // reached Handler.Connected and not yet down
	early    []event // desired notifications that came before it was live
	draining bool    // a planned reconnect refuses new requests
	inflight int
	drained  chan struct{} // closed when inflight reaches 0 while draining
}

// pending is a twin request awaiting its reply.
type pending struct {
	cn   *conn
	done chan reply // cap 1
}

type reply struct {
	status  int
	version int64
	body    []byte
	err     error
}

// New checks the options and builds a client. It starts nothing.
func New(o Options) (*Client, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		o:       o,
		log:     o.Logger.With("device", o.DeviceID),
		user:    username(o.HostName, o.DeviceID, o.Version),
		rnd:     rand.Int64N,
		ev:      newEvents(),
		methods: make(chan methodCall, o.MethodWorkers),
		nudges:  make(chan time.Duration, 1),
		up:      make(chan struct{}),
		pending: map[string]*pending{},
	}
	return c, nil
}

// Run connects and keeps the connection up until ctx ends, reconnecting with
// backoff after failures and with a fresh token before each one expires. It
// returns nil when ctx ends, after every Handler call has returned, or
// ErrAlreadyRunning when called a second time. Authentication failures are
// retried, not returned: the identity may be enabled or provisioned later.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	if g := c.o.Group; g != nil {
		g.join(c)
		defer g.leave(c)
	}
	c.runCtx = ctx
	var wg sync.WaitGroup
	wg.Go(func() { c.ev.run(c.deliver) })
	c.loop(ctx)
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.ev.close()
	wg.Wait()
	c.workWG.Wait()
	c.reqWG.Wait()
	return nil
}

// loop is the connect loop; it returns when ctx ends.
func (c *Client) loop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		cn, err := c.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			delay := backoff(failures, c.o.BackoffMin, c.o.BackoffMax, c.rnd)
			c.connectFailed(err, delay)
			if !c.wait(ctx, delay) {
				return
			}
			continue
		}
		planned := c.serve(ctx, cn)
		if ctx.Err() != nil {
			return
		}
		if planned {
			failures = 0
			continue
		}
		if time.Since(cn.connectedAt) >= stableConnection {
			failures = 0
		}
		failures++
		delay := backoff(failures, c.o.BackoffMin, c.o.BackoffMax, c.rnd)
		c.log.Info("upstream reconnecting", "retry_in", delay.Round(time.Millisecond))
		if !c.wait(ctx, delay) {
			return
		}
	}
}

// wait sleeps out a reconnect backoff of d, cut short by a nudge from the
// group (then it waits a random part of the nudge's spread instead). It
// returns false when ctx ends.
func (c *Client) wait(ctx context.Context, d time.Duration) bool {
	// A nudge that came during the failed attempt still counts: members are
	// nudged only while they are not connected.
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case spread := <-c.nudges:
		c.log.Debug("upstream reconnect nudged: the hub answers another identity")
		return clock.Sleep(ctx, time.Duration(c.rnd(int64(max(spread, 1)))))
	case <-ctx.Done():
		return false
	}
}

// nudge asks the connect loop to end its backoff within spread.
func (c *Client) nudge(spread time.Duration) {
	select {
	case c.nudges <- spread:
	default:
	}
}

func (c *Client) connectFailed(err error, delay time.Duration) {
	c.mu.Lock()
	c.stats.ConnectFailures++
	c.stats.LastError, c.stats.LastErrorAt = err.Error(), time.Now()
	c.mu.Unlock()
	msg := "upstream connect failed"
	if errors.Is(err, ErrUnauthorized) {
		msg = "upstream connect refused: identity unknown, disabled or wrong key"
	}
	c.log.Warn(msg, "address", c.o.Address, "error", err, "retry_in", delay.Round(time.Millisecond))
}

// serve waits for the live connection cn to end and returns whether the end
// was a planned token renewal (reconnect at once). cn is down on return.
func (c *Client) serve(ctx context.Context, cn *conn) (planned bool) {
	// Renew RenewBefore ahead of expiry; if the connect itself ate into that,
	// wait at least a moment (no tight loop) but never past half the life left.
	left := cn.expiry.Sub(c.o.Now())
	renewIn := max(left-c.o.RenewBefore, min(minRenewIn, left/2))
	renew := time.NewTimer(renewIn)
	defer renew.Stop()
	select {
	case err := <-cn.lost:
		c.down(cn, fmt.Errorf("connection lost: %w", err))
		return false
	case err := <-cn.kick:
		c.down(cn, err)
		cn.pc.Disconnect(quiesce)
		return false
	case <-ctx.Done():
		c.down(cn, ctx.Err())
		cn.pc.Disconnect(quiesce)
		return false
	case <-renew.C:
	}

	c.log.Debug("renewing upstream token", "expiry", cn.expiry)
	drained := c.startDrain(cn)
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-drained:
	case <-t.C:
		c.log.Debug("requests still in flight at token renewal")
	case err := <-cn.lost:
		c.down(cn, fmt.Errorf("connection lost: %w", err))
		return false
	case err := <-cn.kick:
		c.down(cn, err)
		cn.pc.Disconnect(quiesce)
		return false
	case <-ctx.Done():
		c.down(cn, ctx.Err())
		cn.pc.Disconnect(quiesce)
		return false
	}
	c.down(cn, ErrTokenRenewal)
	cn.pc.Disconnect(quiesce)
	return true
}

// goUp makes cn the live connection and queues Connected, then any desired
// notification that arrived between SUBACK and now.
func (c *Client) goUp(cn *conn) {
	c.mu.Lock()
	cn.live = true
	cn.connectedAt = time.Now()
	c.cur = cn
	close(c.up)
	c.stats.Connected = true
	c.stats.Connects++
	c.stats.ConnectedSince = cn.connectedAt
	c.stats.TokenExpiry = cn.expiry
	c.ev.push(event{kind: evConnected, ctx: cn.ctx})
	for _, ev := range cn.early {
		if !c.ev.push(ev) {
			c.kickLocked(cn, fmt.Errorf("%w: desired notification queue full", ErrResync))
		}
	}
	cn.early = nil
	c.mu.Unlock()
	if g := c.o.Group; g != nil {
		g.up(c)
	}
	c.log.Info("upstream connected", "address", c.o.Address, "token_expiry", cn.expiry)
}

// down ends cn once: requests waiting on it fail with ErrNotConnected and
// Handler.Disconnected is queued.
func (c *Client) down(cn *conn, why error) {
	c.mu.Lock()
	if !cn.live {
		c.mu.Unlock()
		cn.cancel()
		return
	}
	cn.live = false
	if c.cur == cn {
		c.cur = nil
		c.up = make(chan struct{})
	}
	for rid, p := range c.pending {
		if p.cn == cn {
			delete(c.pending, rid)
			p.done <- reply{err: ErrNotConnected}
		}
	}
	c.stats.Connected = false
	c.stats.Disconnects++
	if !errors.Is(why, ErrTokenRenewal) && !errors.Is(why, context.Canceled) {
		c.stats.LastError, c.stats.LastErrorAt = why.Error(), time.Now()
	}
	c.ev.push(event{kind: evDisconnected, err: why})
	c.mu.Unlock()
	if g := c.o.Group; g != nil {
		g.down()
	}
	cn.cancel()
	if errors.Is(why, ErrTokenRenewal) || errors.Is(why, context.Canceled) {
		c.log.Debug("upstream disconnected", "reason", why)
	} else {
		c.log.Warn("upstream disconnected", "error", why)
	}
}

// kickLocked asks serve to drop cn (c.mu held).
func (c *Client) kickLocked(cn *conn, why error) {
	select {
	case cn.kick <- why:
	default:
	}
}

// resync drops the live connection so the next Connected re-reads the twin.
func (c *Client) resync(why error) {
	c.mu.Lock()
	if c.cur != nil {
		c.kickLocked(c.cur, why)
	}
	c.mu.Unlock()
}

// startDrain stops new requests on cn and returns a channel closed once the
// ones in flight are done.
func (c *Client) startDrain(cn *conn) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	cn.draining = true
	ch := make(chan struct{})
	if cn.inflight == 0 {
		close(ch)
	} else {
		cn.drained = ch
	}
	return ch
}

// acquire returns the live connection for one request and counts it in flight.
func (c *Client) acquire() (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cn := c.cur
	if cn == nil || cn.draining {
		return nil, ErrNotConnected
	}
	cn.inflight++
	c.reqWG.Add(1)
	return cn, nil
}

func (c *Client) release(cn *conn) {
	c.mu.Lock()
	cn.inflight--
	if cn.inflight == 0 && cn.drained != nil {
		close(cn.drained)
		cn.drained = nil
	}
	c.mu.Unlock()
	c.reqWG.Done()
}

// Connected reports whether a connection is live (subscribed).
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// WaitConnected returns nil once a connection is live, or ctx's error.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		if c.cur != nil {
			c.mu.Unlock()
			return nil
		}
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return fmt.Errorf("wait for upstream connection: %w", ctx.Err())
		}
	}
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// deliver makes one Handler call on the event goroutine; a panic is logged
// and, for a desired patch, answered with a resync.
func (c *Client) deliver(ev event) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("upstream handler panicked", "event", ev.kind.String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if ev.kind == evDesired {
				c.resync(fmt.Errorf("%w: desired handler panicked", ErrResync))
			}
		}
	}()
	switch ev.kind {
	case evConnected:
		c.o.Handler.Connected(ev.ctx)
	case evDisconnected:
		c.o.Handler.Disconnected(ev.err)
	case evDesired:
		c.o.Handler.DesiredPatch(ev.patch, ev.version)
	}
}

func clip(s string) string {
	if len(s) > maxLogTopic {
		return s[:maxLogTopic] + "…"
	}
	return s
}
