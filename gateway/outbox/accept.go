package outbox

// Accepting: validation, queueing and the merge of reported patches.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/drover-iot/drover/internal/twin"
)

// prepared is a validated message ready for the writer.
type prepared struct {
	Message
	props string
	patch map[string]any // Reported only
	size  int64
	seq   int64 // the sequence number to insert with (spilled entries); 0: the next one
}

func (o *Outbox) prepare(m Message) (prepared, error) {
	p := prepared{Message: m}
	if m.Identity == "" {
		return p, fmt.Errorf("accept message: %w: no identity", ErrInvalid)
	}
	switch m.Kind {
	case Telemetry:
		p.props = m.Props.Encode()
		if p.Body == nil {
			p.Body = []byte{}
		}
	case Reported:
		patch, err := twin.DecodeObject(m.Body)
		if err != nil {
			return p, fmt.Errorf("accept reported patch for %s: %w: %w", m.Identity, ErrInvalid, err)
		}
		p.patch = patch
		// Canonical form: sorted keys, so the stored size of a merge is stable.
		if p.Body, err = twin.AppendJSON(nil, patch); err != nil {
			return p, fmt.Errorf("accept reported patch for %s: %w: %w", m.Identity, ErrInvalid, err)
		}
	default:
		return p, fmt.Errorf("accept message for %s: %w: kind %d", m.Identity, ErrInvalid, m.Kind)
	}
	if p.ID == "" {
		p.ID = newID()
	}
	p.size = rowSize(len(p.Body), len(p.props), len(p.ID))
	if p.size > o.opts.MaxBytes {
		return p, fmt.Errorf("accept %s for %s: %w: %d bytes, bound %d", m.Kind, m.Identity, ErrTooLarge, p.size, o.opts.MaxBytes)
	}
	return p, nil
}

func rowSize(body, props, id int) int64 { return int64(body+props+id) + rowOverhead }

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Accept queues m and returns once it is committed; the returned id is the
// message's id (generated when m.ID is empty). A reported patch is merged
// into the identity's queued reported row when there is one.
func (o *Outbox) Accept(ctx context.Context, m Message) (string, error) {
	p, err := o.prepare(m)
	if err != nil {
		return "", err
	}
	if o.mem != nil {
		return p.ID, o.acceptMem(ctx, p)
	}
	err = o.write(ctx, "accept "+m.Kind.String(), func(tx *sql.Tx) error { return o.acceptTx(tx, p) })
	if err != nil {
		return "", err
	}
	return p.ID, nil
}

func (o *Outbox) acceptTx(tx *sql.Tx, p prepared) error {
	now := o.opts.Now().UnixNano()
	o.mu.Lock()
	if now < o.c.lastAccepted {
		now = o.c.lastAccepted // keep accept times in queue order (TTL sweep relies on it)
	}
	o.mu.Unlock()
	produced := now
	if !p.ProducedAt.IsZero() {
		produced = p.ProducedAt.UnixNano()
	}
	ident, err := o.identID(tx, p.Identity)
	if err != nil {
		return err
	}
	if p.Kind == Reported {
		merged, err := o.mergeReported(tx, ident, p, produced)
		if err != nil || merged {
			if err == nil {
				o.mu.Lock()
				o.c.accepted++
				o.c.merged++
				o.c.lastAccepted = now
				o.mu.Unlock()
			}
			return err
		}
	}
	if err := o.insertRow(tx, ident, p, now, produced); err != nil {
		return err
	}
	o.mu.Lock()
	o.c.accepted++
	o.c.lastAccepted = now
	o.mu.Unlock()
	return nil
}

// insertTx writes an entry held in memory (already counted as accepted)
// into the database with its sequence number. A reported patch is merged
// into the identity's latest reported row when there is one (inserted
// reports false), as Accept does under the other modes: while the uplink
// is down each spill would otherwise add a row per identity, a new table
// and index entry each time, for a state that one row holds.
func (o *Outbox) insertTx(tx *sql.Tx, p prepared, accepted, produced int64) (inserted bool, err error) {
	ident, err := o.identID(tx, p.Identity)
	if err != nil {
		return false, err
	}
	if p.Kind == Reported {
		if p.patch, err = decodePatch(p.Body); err == nil {
			merged, err := o.mergeReported(tx, ident, p, produced)
			if err != nil || merged {
				return false, err
			}
		}
	}
	return true, o.insertRow(tx, ident, p, accepted, produced)
}

// insertRow makes room for p and inserts it, with p.seq when set.
func (o *Outbox) insertRow(tx *sql.Tx, ident int64, p prepared, accepted, produced int64) error {
	if err := o.makeRoom(tx, p.size); err != nil {
		return err
	}
	var seq any
	if p.seq != 0 {
		seq = p.seq
	}
	if _, err := tx.Exec(`INSERT INTO outbox_msg(seq, ident, kind, accepted, produced, size, id, props, body) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		seq, ident, int64(p.Kind), accepted, produced, p.size, p.ID, p.props, p.Body); err != nil {
		o.markDirty()
		return fmt.Errorf("queue %s for %s: %w", p.Kind, p.Identity, err)
	}
	o.mu.Lock()
	st := o.per[ident]
	if p.Kind == Reported {
		st.reported++
	} else {
		st.telemetry++
	}
	st.bytes += p.size
	o.bytes += p.size
	o.mu.Unlock()
	return nil
}

func decodePatch(b []byte) (map[string]any, error) { return twin.DecodeObject(b) }

func encodePatch(m map[string]any) ([]byte, error) { return twin.AppendJSON(nil, m) }

// mergeReported merges p into the identity's latest reported row. It returns
// false when there is no row to merge into or the patches do not compose.
func (o *Outbox) mergeReported(tx *sql.Tx, ident int64, p prepared, produced int64) (bool, error) {
	var seq, oldSize int64
	var body []byte
	err := tx.QueryRow(`SELECT seq, size, body FROM outbox_msg WHERE ident = ? AND kind = 2 ORDER BY seq DESC LIMIT 1`, ident).Scan(&seq, &oldSize, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		// An unreadable row (wrong column types): drop it and queue the patch fresh.
		if derr := o.deleteCorrupt(tx, ident, p.Identity); derr != nil {
			return false, derr
		}
		return false, nil
	}
	prev, err := twin.DecodeObject(body)
	if err != nil {
		o.log.Warn("drop corrupt reported row", "device", p.Identity, "seq", seq, "error", err)
		if err := o.removeRows(tx, []int64{seq}, dropCorrupt); err != nil {
			return false, err
		}
		return false, nil
	}
	merged, ok := Compose(prev, p.patch)
	if !ok {
		return false, nil
	}
	nb, err := twin.AppendJSON(nil, merged)
	if err != nil {
		return false, fmt.Errorf("merge reported patch for %s: %w", p.Identity, err)
	}
	newSize := rowSize(len(nb), 0, len(p.ID))
	if grow := newSize - oldSize; grow > 0 {
		if newSize > o.opts.MaxBytes {
			return false, fmt.Errorf("merge reported patch for %s: %w: merged patch of %d bytes, bound %d", p.Identity, ErrTooLarge, newSize, o.opts.MaxBytes)
		}
		if err := o.makeRoomExcept(tx, grow, seq); err != nil {
			return false, err
		}
	}
	if _, err := tx.Exec(`UPDATE outbox_msg SET body = ?, id = ?, produced = ?, size = ? WHERE seq = ?`, nb, p.ID, produced, newSize, seq); err != nil {
		o.markDirty()
		return false, fmt.Errorf("merge reported patch for %s: %w", p.Identity, err)
	}
	o.mu.Lock()
	o.per[ident].bytes += newSize - oldSize
	o.bytes += newSize - oldSize
	o.mu.Unlock()
	return true, nil
}
