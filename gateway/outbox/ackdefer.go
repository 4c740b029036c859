package outbox

// Deferred deletes: under Spill and Batched durability an acknowledged
// telemetry row is hidden at once and deleted later, together with the
// other acknowledged rows, in one transaction sorted by sequence.
//
// Why: rows of many identities are interleaved in the table (they were
// accepted together), and the drainer acknowledges one identity's rows per
// turn, so deleting per turn rewrote a 4 KiB page (in the WAL, then again
// at the checkpoint) for almost every row (BenchmarkWearDrain: 1.5–2.5 KB
// per drained row, 2.5–4.8 KB in BenchmarkFlashWear).
//
// Which rows a periodic delete takes matters as much: the drainer's
// identities advance at different paces, so the acknowledged rows of any
// one second are scattered over the whole backlog. The periodic delete
// therefore takes only the acknowledged prefix of the queue (every row up
// to the oldest one not acknowledged), whose pages are emptied and freed
// together; rows acknowledged beyond it wait, hidden, for the prefix to
// reach them. Everything is deleted at once every fullAckEvery periods,
// when AckRows are deferred, and at Close.
//
// The price is duplicates after a crash, never a loss: a deferred row is
// still in the database, so a restart hands it out again (with its message
// id, so the hub side can count it). Ack waits for the deletes once
// AckRows are deferred, which bounds how many a crash can re-send.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// DefaultAckRows is the default of Options.AckRows: at most this many
// acknowledged rows (plus the acks being added while the set is full) are
// sent again after a crash. It is large enough to hold the drain front of
// 250 identities (Batch × identities = 8,000 rows) so that the periodic
// delete finds a prefix, and small enough that a crash re-sends about
// half a minute of a 250-device gateway's production.
const DefaultAckRows = 16384

// ackDefer is the set of acknowledged telemetry rows not deleted yet. Its
// maps are guarded by Outbox.mu.
type ackDefer struct {
	rows map[int64]deferredRow // by seq
	per  map[string]int        // identity → deferred rows
	poke chan struct{}         // the first row of an empty set was deferred
	stop context.CancelFunc
	done chan struct{}
}

// deferredRow is what an ack named: the message id (a merged row has a
// new one) and the identity.
type deferredRow struct{ id, identity string }

func newAckDefer() *ackDefer {
	return &ackDefer{rows: map[int64]deferredRow{}, per: map[string]int{}, poke: make(chan struct{}, 1), done: make(chan struct{})}
}

// deferAcks defers the receipts that name telemetry rows and returns the
// others (reported rows can be merged into, so their delete stays in the
// ack's commit). full says the set reached AckRows.
func (o *Outbox) deferAcks(rs []Receipt) (rest []Receipt, full bool) {
	a := o.acks
	o.mu.Lock()
	defer o.mu.Unlock()
	wasEmpty := len(a.rows) == 0
	for _, r := range rs {
		if r.kind != Telemetry || r.identity == "" {
			rest = append(rest, r)
			continue
		}
		if _, ok := a.rows[r.Seq]; ok {
			continue // acked twice
		}
		a.rows[r.Seq] = deferredRow{id: r.ID, identity: r.identity}
		a.per[r.identity]++
	}
	if wasEmpty && len(a.rows) > 0 {
		select {
		case a.poke <- struct{}{}:
		default:
		}
	}
	return rest, len(a.rows) >= o.opts.AckRows
}

// deferred reports whether seq is an acknowledged row waiting for its delete.
// Called with o.mu held.
func (o *Outbox) deferredLocked(seq int64) bool {
	if o.acks == nil {
		return false
	}
	_, ok := o.acks.rows[seq]
	return ok
}

// deferredCount is the number of deferred rows of identity (all when "").
func (o *Outbox) deferredCount(identity string) int {
	if o.acks == nil {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if identity == "" {
		return len(o.acks.rows)
	}
	return o.acks.per[identity]
}

// flushAcks deletes the deferred rows in one transaction, in sequence order
// so that each page is rewritten once. A row is taken out of the set in the
// same step that removes it from the accounting: if the transaction then
// fails, a reload recounts it and Next hands it out again (a duplicate,
// never a loss).
func (o *Outbox) flushAcks(ctx context.Context) error {
	o.mu.Lock()
	n := len(o.acks.rows)
	o.mu.Unlock()
	if n == 0 {
		return nil
	}
	return o.write(ctx, "delete acked outbox entries", func(tx *sql.Tx) error { return o.flushAcksTx(tx, false) })
}

// flushAckPrefix deletes the deferred rows that form the acknowledged
// prefix of the queue (the periodic delete).
func (o *Outbox) flushAckPrefix(ctx context.Context) error {
	return o.write(ctx, "delete acked outbox entries", func(tx *sql.Tx) error { return o.flushAcksTx(tx, true) })
}

func (o *Outbox) flushAcksTx(tx *sql.Tx, prefixOnly bool) error {
	a := o.acks
	o.mu.Lock()
	seqs := make([]int64, 0, len(a.rows))
	for seq := range a.rows {
		seqs = append(seqs, seq)
	}
	o.mu.Unlock()
	slices.Sort(seqs)
	if prefixOnly {
		end, err := o.ackedPrefix(tx, seqs)
		if err != nil {
			return err
		}
		seqs = seqs[:end]
	}
	for _, seq := range seqs {
		o.mu.Lock()
		d, ok := a.rows[seq]
		o.mu.Unlock()
		if !ok {
			continue
		}
		var ident, kind, size int64
		err := tx.QueryRow(`DELETE FROM outbox_msg WHERE seq = ? AND id = ? RETURNING ident, kind, size`, seq, d.id).Scan(&ident, &kind, &size)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			o.markDirty()
			return fmt.Errorf("delete acked outbox entry %d: %w", seq, err)
		}
		o.mu.Lock()
		delete(a.rows, seq)
		if a.per[d.identity] <= 1 {
			delete(a.per, d.identity)
		} else {
			a.per[d.identity]--
		}
		// No row: gone already (a second ack after the delete, or the spill
		// that held the entry skipped it and counted it): nothing to account.
		if err == nil {
			o.forgetLocked(ident, Kind(kind), size)
			o.countLocked(dropAcked)
		}
		o.mu.Unlock()
	}
	return nil
}

// ackedPrefix returns how many of the deferred seqs (sorted) can go
// without rewriting pages that rows still queued live on: those below the
// oldest database row that is not deferred. A deferred seq with no row
// (acked again after its delete) counts too, when below it.
func (o *Outbox) ackedPrefix(tx *sql.Tx, seqs []int64) (int, error) {
	rows, err := tx.Query(`SELECT seq FROM outbox_msg ORDER BY seq LIMIT ?`, len(seqs)+1)
	if err != nil {
		return 0, fmt.Errorf("find acked outbox prefix: %w", err)
	}
	defer rows.Close()
	k := 0
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return 0, fmt.Errorf("find acked outbox prefix: %w", err)
		}
		for k < len(seqs) && seqs[k] < seq {
			k++ // no such row
		}
		if k == len(seqs) || seqs[k] != seq {
			return k, nil // seq is queued and not acknowledged: the prefix ends here
		}
		k++
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find acked outbox prefix: %w", err)
	}
	return len(seqs), nil // every row scanned was deferred, and nothing lies beyond
}

// fullAckEvery: every this many periodic deletes, the ackFlusher deletes
// every deferred row, not only the prefix. It bounds how long rows stay
// deferred behind an identity that does not drain (its oldest row holds
// the prefix back), and how long a deferred receipt whose row is gone
// (acked again after its delete) keeps a row's worth of its identity's
// depth hidden from Pending.
const fullAckEvery = 30

// ackFlusher commits the deferred deletes AckEvery after the first one.
func (o *Outbox) ackFlusher(ctx context.Context) {
	defer close(o.acks.done)
	for round := 1; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-o.acks.poke:
		}
		t := time.NewTimer(o.opts.AckEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		flush := o.flushAckPrefix
		if round%fullAckEvery == 0 {
			flush = o.flushAcks
		}
		if err := flush(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("delete acked outbox entries", "error", err)
		}
		o.mu.Lock()
		more := len(o.acks.rows) > 0
		o.mu.Unlock()
		if more {
			select {
			case o.acks.poke <- struct{}{}:
			default:
			}
		}
	}
}

// oldestAccepted returns the accept time (unix ns) of the oldest database
// row that is not an acknowledged one waiting for its delete; 0 for none.
func (o *Outbox) oldestAccepted(ctx context.Context) (int64, error) {
	rows, err := o.rd.QueryContext(ctx, `SELECT seq, accepted FROM outbox_msg ORDER BY seq LIMIT ?`, o.deferredCount("")+1)
	if err != nil {
		return 0, fmt.Errorf("read outbox age: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var acc any
		if err := rows.Scan(&seq, &acc); err != nil {
			return 0, fmt.Errorf("read outbox age: %w", err)
		}
		o.mu.Lock()
		skip := o.deferredLocked(seq)
		o.mu.Unlock()
		if a, ok := acc.(int64); ok && !skip {
			return a, nil
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read outbox age: %w", err)
	}
	return 0, nil
}
