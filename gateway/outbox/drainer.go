package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUndeliverable is wrapped by a Sender's error when the hub refused an
// entry for good (for example a reported patch answered with a 4xx status):
// the Drainer removes the entry, counts it in Stats.DroppedRejected and goes
// on with the identity's next entry. Any other error keeps the entry queued
// and pauses the identity (with backoff) so that nothing overtakes it.
var ErrUndeliverable = errors.New("undeliverable")

// Sender delivers one entry and returns nil only once the hub acknowledged
// it (PUBACK for telemetry, the twin reply for a reported patch).
type Sender func(ctx context.Context, e Entry) error

// DrainerOptions configure NewDrainer.
type DrainerOptions struct {
	Telemetry Sender  // required
	Reported  Sender  // required
	Rate      float64 // messages per second over all identities (token bucket); 0 means unlimited
	Burst     int     // bucket size; default Rate/10, at least 1
	Workers   int     // identities sending at the same time; default 64
	Batch     int     // entries of each kind taken per identity per turn; default 32
	// Ready says whether an identity can send now (its upstream connection
	// is up); nil means always. Call Wake when it becomes ready again.
	Ready      func(identity string) bool
	MinBackoff time.Duration // first pause of an identity after a failed send; default 100ms
	MaxBackoff time.Duration // longest pause; default 30s
	Logger     *slog.Logger
}

// DrainerStats counts what a Drainer did since it was made.
type DrainerStats struct {
	Sent          int64 // entries acknowledged by the hub and acked in the outbox
	Failures      int64 // failed sends (the entry stayed queued)
	Undeliverable int64 // entries the hub refused for good (removed)
}

// Drainer sends the outbox's entries to the hub at a bounded rate.
//
// Policy. Work is split into turns; a turn serves one identity: first its
// queued reported rows (each the merged, latest state of the identity), then
// up to Batch of its telemetry rows, oldest first. Identities take turns in
// round-robin order and up to Workers of them send at the same time, each
// drawing one token per message from a bucket shared by all. So:
//
//   - telemetry of one identity leaves strictly in the order it was accepted
//     (one turn per identity at a time; a failed send ends the turn, and
//     later entries wait for the failed one);
//   - the freshest values are not starved behind a backlog: every identity's
//     reported state goes out in its first turn after a reconnect, ahead of
//     its own telemetry backlog, and an identity with only live telemetry
//     gets a turn in the first round instead of waiting for other
//     identities' backlogs (they share the rate, they do not queue ahead);
//   - the uplink never carries more than Rate messages per second.
//
// Newest-first for telemetry was rejected: it would break per-identity
// order, and the live value of every point already travels in the reported
// patch, which is served first.
//
// One Drainer per Outbox. Acks are handed to the outbox per turn, so after a
// crash at most Workers×(Batch+reported rows) entries in flight are sent
// twice; under Spill and Batched durability the outbox also defers the
// deletes of acknowledged telemetry (Options.AckRows), which a crash sends
// again too: at most AckRows + Workers×Batch more.
type Drainer struct {
	o     *Outbox
	opts  DrainerOptions
	log   *slog.Logger
	b     *bucket
	wake  chan struct{}
	stats struct{ sent, failures, undeliverable atomic.Int64 }
}

// NewDrainer returns a Drainer for o. It starts nothing; call Run.
func NewDrainer(o *Outbox, opts DrainerOptions) (*Drainer, error) {
	if opts.Telemetry == nil || opts.Reported == nil {
		return nil, errors.New("new outbox drainer: a telemetry and a reported sender are required")
	}
	if opts.Rate < 0 {
		return nil, fmt.Errorf("new outbox drainer: negative rate %v", opts.Rate)
	}
	if opts.Burst <= 0 {
		opts.Burst = max(1, int(opts.Rate/10))
	}
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	if opts.Batch <= 0 {
		opts.Batch = 32
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(30*time.Second, opts.MinBackoff)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Drainer{
		o: o, opts: opts, log: opts.Logger,
		b:    &bucket{rate: opts.Rate, burst: float64(opts.Burst), tokens: float64(opts.Burst), last: time.Now()},
		wake: make(chan struct{}, 1),
	}, nil
}

// Wake makes the Drainer look at every identity again at once, forgetting
// backoffs; call it after an upstream connection came up.
func (d *Drainer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Stats returns the Drainer's counters.
func (d *Drainer) Stats() DrainerStats {
	return DrainerStats{Sent: d.stats.sent.Load(), Failures: d.stats.failures.Load(), Undeliverable: d.stats.undeliverable.Load()}
}

type turnResult struct {
	id    string
	found int // entries the turn found to send
	err   error
}

// notReadyPoll is how often identities that were not Ready are looked at
// again when nobody calls Wake.
const notReadyPoll = time.Second

// Run drains until ctx ends, then waits for the turns in progress (their
// successful sends are still acked) and returns nil.
func (d *Drainer) Run(ctx context.Context) error {
	results := make(chan turnResult, d.opts.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	busy := map[string]bool{}
	fails := map[string]int{}
	retryAt := map[string]time.Time{}
	cursor := ""
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		var next time.Time
		ids := keysSorted(d.o.Pending())
		// Round robin: start after the identity dispatched last.
		start, _ := slices.BinarySearch(ids, cursor)
		if start < len(ids) && ids[start] == cursor {
			start++
		}
		ids = append(ids[start:], ids[:start]...)
		for _, id := range ids {
			if len(busy) >= d.opts.Workers {
				break
			}
			if busy[id] {
				continue
			}
			if t, ok := retryAt[id]; ok && now.Before(t) {
				if next.IsZero() || t.Before(next) {
					next = t
				}
				continue
			}
			if d.opts.Ready != nil && !d.opts.Ready(id) {
				if t := now.Add(notReadyPoll); next.IsZero() || t.Before(next) {
					next = t
				}
				continue
			}
			busy[id] = true
			cursor = id
			wg.Go(func() {
				n, err := d.turn(ctx, id)
				results <- turnResult{id: id, found: n, err: err}
			})
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			delete(busy, r.id)
			if (r.err == nil && r.found > 0) || ctx.Err() != nil {
				delete(fails, r.id)
				delete(retryAt, r.id)
				continue
			}
			// A failed send, or an identity counted as pending that had
			// nothing readable: pause it rather than spin.
			fails[r.id]++
			retryAt[r.id] = time.Now().Add(d.backoff(fails[r.id]))
			if r.err != nil {
				d.log.Debug("outbox send failed", "device", r.id, "failures", fails[r.id], "error", r.err)
			}
		case <-d.o.notify:
		case <-d.wake:
			clear(fails)
			clear(retryAt)
		case <-timer.C:
		}
	}
}

func (d *Drainer) backoff(failures int) time.Duration {
	b := d.opts.MinBackoff
	for i := 1; i < failures && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.opts.MaxBackoff)
	// ±20% jitter so identities that failed together do not retry together.
	return b - b/5 + time.Duration(rand.Int64N(int64(b/5)*2+1))
}

// turn sends one identity's reported rows, then up to Batch telemetry rows,
// and acks what the hub acknowledged. It stops at the first failed send.
func (d *Drainer) turn(ctx context.Context, id string) (found int, err error) {
	var acks, refused []Receipt
	defer func() {
		// Ack even when ctx ended: these were delivered.
		actx := context.WithoutCancel(ctx)
		if err := d.o.Ack(actx, acks...); err != nil {
			d.log.Warn("ack outbox entries", "device", id, "error", err)
		}
		if err := d.o.remove(actx, refused, dropRejected); err != nil {
			d.log.Warn("drop refused outbox entries", "device", id, "error", err)
		}
	}()
	for _, kind := range []Kind{Reported, Telemetry} {
		entries, err := d.o.next(ctx, id, kind, d.opts.Batch)
		if err != nil {
			return found, err
		}
		found += len(entries)
		send := d.opts.Telemetry
		if kind == Reported {
			send = d.opts.Reported
		}
		for _, e := range entries {
			if err := d.b.wait(ctx); err != nil {
				return found, err
			}
			err := send(ctx, e)
			switch {
			case err == nil:
				acks = append(acks, e.Receipt())
				d.stats.sent.Add(1)
			case errors.Is(err, ErrUndeliverable):
				d.log.Warn("hub refused outbox entry; dropping it", "device", id, "kind", kind.String(), "id", e.ID, "error", err)
				refused = append(refused, e.Receipt())
				d.stats.undeliverable.Add(1)
			default:
				d.stats.failures.Add(1)
				return found, fmt.Errorf("send %s %s of %s: %w", kind, e.ID, id, err)
			}
		}
	}
	return found, nil
}

func keysSorted(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// bucket is a token bucket that hands out reservations in call order, so
// concurrent waiters share the rate fairly.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; <= 0 means unlimited
	burst  float64
	tokens float64
	last   time.Time
}

func (b *bucket) wait(ctx context.Context) error {
	if b.rate <= 0 {
		return ctx.Err()
	}
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens--
	var delay time.Duration
	if b.tokens < 0 {
		delay = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if delay <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
