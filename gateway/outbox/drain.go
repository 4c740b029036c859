package outbox

// Draining: entries handed out in queue order and removed by Ack (the
// Drainer that calls these is in drainer.go).

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// Ack removes the entries the receipts name, once the hub acknowledged them.
// A receipt whose row was merged into since it was handed out (its id
// changed) or is gone already removes nothing.
func (o *Outbox) Ack(ctx context.Context, rs ...Receipt) error {
	return o.remove(ctx, rs, dropAcked)
}

func (o *Outbox) remove(ctx context.Context, rs []Receipt, reason dropReason) error {
	if rs = o.memAck(rs, reason); len(rs) == 0 {
		return nil // all held in memory: nothing to write
	}
	full := false
	if reason == dropAcked && o.acks != nil {
		rs, full = o.deferAcks(rs)
	}
	var err error
	if len(rs) > 0 {
		err = o.removeNow(ctx, rs, reason)
	}
	if full {
		// The set is full: this Ack waits for the deletes, which is what
		// bounds the rows a crash sends again.
		err = errors.Join(err, o.flushAcks(ctx))
	}
	return err
}

// removeNow deletes the receipts' rows in one commit and waits for it.
func (o *Outbox) removeNow(ctx context.Context, rs []Receipt, reason dropReason) error {
	return o.write(ctx, "ack outbox entries", func(tx *sql.Tx) error {
		for _, r := range rs {
			var ident, kind, size int64
			err := tx.QueryRow(`DELETE FROM outbox_msg WHERE seq = ? AND id = ? RETURNING ident, kind, size`, r.Seq, r.ID).Scan(&ident, &kind, &size)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				o.markDirty()
				return fmt.Errorf("ack outbox entry %d: %w", r.Seq, err)
			}
			o.forget(ident, Kind(kind), size)
			o.count(reason)
		}
		return nil
	})
}

// Next returns up to limit queued entries in queue order, for one identity
// or for all when identity is "". Entries stay queued until acked; calling
// Next again returns them again. Unreadable rows are removed and counted
// (DroppedCorrupt), expired telemetry is swept; neither is returned.
func (o *Outbox) Next(ctx context.Context, identity string, limit int) ([]Entry, error) {
	return o.next(ctx, identity, 0, limit)
}

// next is Next restricted to one kind when kind is not 0. Entries held in
// memory (Spill) are merged in by sequence number; memory is read first, so
// an entry a spill moves meanwhile is found in the database.
func (o *Outbox) next(ctx context.Context, identity string, kind Kind, limit int) ([]Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	mem := o.memNext(identity, kind, limit)
	out, err := o.nextDB(ctx, identity, kind, limit)
	if err != nil || len(mem) == 0 {
		return out, err
	}
	seen := make(map[int64]bool, len(out))
	for _, e := range out {
		seen[e.Seq] = true
	}
	for _, e := range mem {
		if !seen[e.Seq] {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	return out[:min(len(out), limit)], nil
}

// nextDB is next over the database rows only.
func (o *Outbox) nextDB(ctx context.Context, identity string, kind Kind, limit int) ([]Entry, error) {
	q := `SELECT seq, ident, kind, accepted, produced, size, id, props, body FROM outbox_msg`
	var args []any
	if identity != "" {
		o.mu.Lock()
		id, ok := o.idents[identity]
		o.mu.Unlock()
		if !ok {
			return nil, nil
		}
		q += ` WHERE ident = ?`
		args = append(args, id)
		if kind != 0 {
			// A literal, not a parameter, so SQLite can use the partial index for kind 2.
			q += fmt.Sprintf(` AND kind = %d`, kind)
		}
	} else if kind != 0 {
		q += fmt.Sprintf(` WHERE kind = %d`, kind)
	}
	// Acknowledged rows waiting for their deferred delete are still there
	// and are skipped by read: ask for that many more.
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit+o.deferredCount(identity))
	for attempt := 0; ; attempt++ {
		out, bad, expired, err := o.read(ctx, q, args)
		if err != nil {
			return nil, err
		}
		if len(bad) > 0 || len(expired) > 0 {
			err := o.write(ctx, "drop outbox rows", func(tx *sql.Tx) error {
				return errors.Join(o.removeRows(tx, bad, dropCorrupt), o.removeRows(tx, expired, dropTTL))
			})
			if err != nil {
				return nil, err
			}
		}
		if len(out) > 0 || (len(bad) == 0 && len(expired) == 0) || attempt == 2 {
			return out[:min(len(out), limit)], nil
		}
	}
}

// read runs a Next query and decodes the rows; rows that cannot be decoded
// come back in bad, expired telemetry in expired.
func (o *Outbox) read(ctx context.Context, q string, args []any) (out []Entry, bad, expired []int64, err error) {
	rows, err := o.rd.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	cutoff := int64(-1 << 63)
	if o.opts.TTL > 0 {
		cutoff = o.opts.Now().Add(-o.opts.TTL).UnixNano()
	}
	for rows.Next() {
		var seq int64
		var ident, kind, accepted, produced, size, id, props, body any
		if err := rows.Scan(&seq, &ident, &kind, &accepted, &produced, &size, &id, &props, &body); err != nil {
			return nil, nil, nil, fmt.Errorf("read outbox: %w", err)
		}
		o.mu.Lock()
		acked := o.deferredLocked(seq)
		o.mu.Unlock()
		if acked {
			continue // delivered; its delete is deferred
		}
		e, ok := o.decode(seq, ident, kind, accepted, produced, size, id, props, body)
		if !ok {
			bad = append(bad, seq)
			continue
		}
		if e.Kind == Telemetry && e.AcceptedAt.UnixNano() < cutoff {
			expired = append(expired, seq)
			continue
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, bad, expired, nil
}
