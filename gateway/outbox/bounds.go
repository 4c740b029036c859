package outbox

// Bounds: eviction under MaxBytes, TTL expiry and counted removals.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

func (o *Outbox) makeRoom(tx *sql.Tx, need int64) error { return o.makeRoomExcept(tx, need, 0) }

// makeRoomExcept frees room for need more bytes as the policy says; keep is
// a row that must not be evicted (the one being merged into).
func (o *Outbox) makeRoomExcept(tx *sql.Tx, need, keep int64) error {
	o.mu.Lock()
	over := o.bytes + need - o.opts.MaxBytes
	o.mu.Unlock()
	if over <= 0 {
		return nil
	}
	if o.opts.OnFull == RejectNew {
		o.mu.Lock()
		o.c.rejected++
		queued := o.bytes
		o.mu.Unlock()
		return fmt.Errorf("accept message: %w: %d bytes queued, bound %d", ErrFull, queued, o.opts.MaxBytes)
	}
	// Oldest telemetry first; reported rows only when no telemetry is left.
	for _, kind := range []Kind{Telemetry, Reported} {
		var err error
		if over, err = o.evictKind(tx, kind, over, keep); err != nil {
			return err
		}
	}
	o.mu.Lock()
	over = o.bytes + need - o.opts.MaxBytes
	o.mu.Unlock()
	if over > 0 {
		o.markDirty() // the evictions roll back with the operation
		return fmt.Errorf("accept message: %w: nothing left to evict", ErrFull)
	}
	return nil
}

// evictKind removes rows of kind, oldest first, until over bytes are freed
// (keep is never removed), and returns what is left of over.
func (o *Outbox) evictKind(tx *sql.Tx, kind Kind, over, keep int64) (int64, error) {
	// A cursor, not the head again: acknowledged rows waiting for their
	// deferred delete stay where they are and are stepped over.
	after := int64(-1 << 63)
	for over > 0 {
		rows, err := tx.Query(`SELECT seq, size FROM outbox_msg WHERE kind = ? AND seq <> ? AND seq > ? ORDER BY seq LIMIT 64`, int64(kind), keep, after)
		if err != nil {
			return over, fmt.Errorf("evict from outbox: %w", err)
		}
		var seqs []int64
		n := 0
		for rows.Next() && over > 0 {
			n++
			var seq int64
			var sizeV any
			if err := rows.Scan(&seq, &sizeV); err != nil {
				continue // seq is the rowid: always an integer
			}
			after = seq
			size := asInt(sizeV)
			o.mu.Lock()
			acked := o.deferredLocked(seq)
			o.mu.Unlock()
			if acked {
				continue
			}
			seqs = append(seqs, seq)
			over -= max(size, 1)
		}
		rows.Close()
		if n == 0 {
			break
		}
		if err := o.removeRows(tx, seqs, dropFull); err != nil {
			return over, err
		}
	}
	return over, nil
}

// deleteCorrupt removes an identity's unreadable reported rows.
func (o *Outbox) deleteCorrupt(tx *sql.Tx, ident int64, name string) error {
	rows, err := tx.Query(`SELECT seq FROM outbox_msg WHERE ident = ? AND kind = 2`, ident)
	if err != nil {
		return fmt.Errorf("find corrupt reported rows of %s: %w", name, err)
	}
	var seqs []int64
	for rows.Next() {
		var s int64
		if rows.Scan(&s) == nil {
			seqs = append(seqs, s)
		}
	}
	rows.Close()
	o.log.Warn("drop corrupt reported rows", "device", name, "rows", len(seqs))
	return o.removeRows(tx, seqs, dropCorrupt)
}

type dropReason uint8

const (
	dropAcked dropReason = iota
	dropFull
	dropTTL
	dropCorrupt
	dropRejected
)

// removeRows deletes rows by seq and accounts for them under reason.
func (o *Outbox) removeRows(tx *sql.Tx, seqs []int64, reason dropReason) error {
	for _, seq := range seqs {
		o.mu.Lock()
		acked := o.deferredLocked(seq)
		o.mu.Unlock()
		if acked {
			continue // delivered: its deferred delete counts it as acked
		}
		var ident, kind, size int64
		err := tx.QueryRow(`DELETE FROM outbox_msg WHERE seq = ? RETURNING ident, kind, size`, seq).Scan(&ident, &kind, &size)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			// The row is gone or unreadable; let a reload recount.
			o.markDirty()
			if _, derr := tx.Exec(`DELETE FROM outbox_msg WHERE seq = ?`, seq); derr != nil {
				return fmt.Errorf("remove outbox row %d: %w", seq, derr)
			}
			o.count(reason)
			continue
		}
		o.forget(ident, Kind(kind), size)
		o.count(reason)
	}
	return nil
}

func (o *Outbox) forget(ident int64, kind Kind, size int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forgetLocked(ident, kind, size)
}

// forgetLocked is forget with o.mu held.
func (o *Outbox) forgetLocked(ident int64, kind Kind, size int64) {
	o.bytes -= size
	st := o.per[ident]
	if st == nil {
		o.dirty = true
		return
	}
	st.bytes -= size
	if kind == Reported {
		st.reported--
	} else {
		st.telemetry--
	}
}

func (o *Outbox) count(reason dropReason) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.countLocked(reason)
}

// countLocked is count with o.mu held.
func (o *Outbox) countLocked(reason dropReason) {
	switch reason {
	case dropAcked:
		o.c.acked++
	case dropFull:
		o.c.droppedFull++
	case dropTTL:
		o.c.droppedTTL++
	case dropCorrupt:
		o.c.droppedCorrupt++
	case dropRejected:
		o.c.droppedReject++
	}
}

// Sweep removes expired telemetry now. The writer also sweeps every
// SweepEvery, and Next removes the expired rows it meets.
func (o *Outbox) Sweep(ctx context.Context) error {
	return o.write(ctx, "sweep outbox", o.sweepTx)
}

func (o *Outbox) sweepTx(tx *sql.Tx) error {
	if o.opts.TTL < 0 {
		return nil
	}
	cutoff := o.opts.Now().Add(-o.opts.TTL).UnixNano()
	after := int64(-1 << 63)
	for {
		// Accept times never decrease along the queue, so the expired rows
		// are a prefix of the telemetry: scan from the head, stop at the first live one.
		rows, err := tx.Query(`SELECT seq, accepted FROM outbox_msg WHERE kind = 1 AND seq > ? ORDER BY seq LIMIT 256`, after)
		if err != nil {
			return fmt.Errorf("sweep outbox: %w", err)
		}
		var seqs []int64
		live, n := false, 0
		for rows.Next() {
			n++
			var seq int64
			var acc any
			if err := rows.Scan(&seq, &acc); err != nil {
				continue
			}
			after = seq
			a, ok := acc.(int64)
			if !ok {
				continue // unreadable: Next drops it as corrupt
			}
			if a >= cutoff {
				live = true
				break
			}
			seqs = append(seqs, seq)
		}
		rows.Close()
		if err := o.removeRows(tx, seqs, dropTTL); err != nil {
			return err
		}
		if live || n < 256 {
			return nil
		}
	}
}
