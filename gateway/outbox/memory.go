package outbox

// Memory: under Spill durability, accepted messages are held here until the
// hub acknowledges them, and spilled in batches (to the spill log, or to
// SQLite without one) when they stay unacknowledged for SpillAfter, when
// more than MemoryBytes are held, and at Close.

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
)

// Durability says when an accepted message reaches the disk.
type Durability uint8

// Durability modes. The zero value is EveryMessage.
const (
	// EveryMessage commits every accept before Accept returns (concurrent
	// accepts still share a transaction).
	EveryMessage Durability = iota
	// Batched commits accepts in group commits at most every BatchEvery;
	// Accept returns after its batch committed.
	Batched
	// Spill holds accepted messages in memory while the hub acknowledges
	// them promptly; Accept returns at once. A message still unacknowledged
	// SpillAfter after its accept, a memory backlog over MemoryBytes and
	// Close move them to SQLite in one transaction per batch. A crash or a
	// power cut loses at most the messages accepted during the last
	// SpillAfter (plus those a spill transaction was committing).
	Spill
)

// ParseDurability reads the configuration spelling of a durability mode:
// "spill", "batched" or "every_message".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "spill":
		return Spill, nil
	case "batched":
		return Batched, nil
	case "every_message":
		return EveryMessage, nil
	}
	return 0, fmt.Errorf("outbox durability %q: want spill, batched or every_message", s)
}

// String returns the configuration spelling of the mode.
func (d Durability) String() string {
	switch d {
	case Spill:
		return "spill"
	case Batched:
		return "batched"
	}
	return "every_message"
}

// spillCommitEvery spaces the outbox's commits under Spill durability.
const spillCommitEvery = 100 * time.Millisecond

// memEntry is one message held in memory.
type memEntry struct {
	e        Entry
	props    string
	size     int64
	spilling bool   // a spill transaction holds a copy; an Ack must delete the row too
	acked    bool   // acked while spilling: the spill skips it if it has not inserted it yet
	gone     bool   // acked or spilled: skipped by the fifo
	seg      uint64 // the spill log segment holding it (0: held in memory only)
}

// memQueue is the in-memory part of the queue. Its fields are guarded by
// Outbox.mu.
type memQueue struct {
	bySeq map[int64]*memEntry
	per   map[string][]*memEntry // per identity, in seq order
	fifo  []*memEntry            // every entry in seq order (accept order); gone ones pruned from the head
	bytes int64                  // held entries (not on disk): their accounted bytes
	n     int64                  // and their number
	seq   int64                  // last sequence number given out (above every row in the database)

	logBytes int64 // logged entries kept in memory (spill log): accounted bytes
	logTel   int64 // how many of them are telemetry (reported entries stay in memory whatever the bound)
	poke     chan struct{}

	lastAck   time.Time     // when an Ack last removed a held entry (the uplink is alive)
	lastSpill time.Duration // how long the last spill took, queue wait and commit included
}

func newMemQueue() *memQueue {
	return &memQueue{bySeq: map[int64]*memEntry{}, per: map[string][]*memEntry{}, poke: make(chan struct{}, 1)}
}

func (q *memQueue) add(m *memEntry) {
	q.bySeq[m.e.Seq] = m
	q.per[m.e.Identity] = append(q.per[m.e.Identity], m)
	q.fifo = append(q.fifo, m)
	q.bytes += m.size
	q.n++
}

// addLogged adds an entry read from the spill log, in sequence order.
func (q *memQueue) addLogged(m *memEntry) {
	q.bySeq[m.e.Seq] = m
	l := q.per[m.e.Identity]
	i, _ := slices.BinarySearchFunc(l, m.e.Seq, func(x *memEntry, seq int64) int { return cmp.Compare(x.e.Seq, seq) })
	q.per[m.e.Identity] = slices.Insert(l, i, m)
	q.countLogged(m, 1)
}

// countLogged adds d entries like m to the logged-in-memory accounting.
func (q *memQueue) countLogged(m *memEntry, d int64) {
	q.logBytes += d * m.size
	if m.e.Kind == Telemetry {
		q.logTel += d
	}
}

// toLogged marks a held entry as written to segment seg.
func (q *memQueue) toLogged(m *memEntry, seg uint64) {
	m.seg = seg
	q.bytes -= m.size
	q.n--
	q.countLogged(m, 1)
	q.pruneFifo()
}

func (q *memQueue) drop(m *memEntry) {
	if m.gone {
		return
	}
	m.gone = true
	delete(q.bySeq, m.e.Seq)
	l := q.per[m.e.Identity]
	if i := slices.Index(l, m); i >= 0 {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		delete(q.per, m.e.Identity)
	} else {
		q.per[m.e.Identity] = l
	}
	if m.seg != 0 {
		q.countLogged(m, -1)
		return
	}
	q.bytes -= m.size
	q.n--
	q.pruneFifo()
}

// pruneFifo drops acked, spilled and logged entries from the fifo's head.
func (q *memQueue) pruneFifo() {
	for len(q.fifo) > 0 && (q.fifo[0].gone || q.fifo[0].seg != 0) {
		q.fifo[0] = nil
		q.fifo = q.fifo[1:]
	}
}

func (q *memQueue) wake() {
	select {
	case q.poke <- struct{}{}:
	default:
	}
}

// acceptMem holds p in memory (Spill durability). A reported patch is merged
// into the identity's latest reported entry held in memory when there is one
// that no spill is copying.
func (o *Outbox) acceptMem(ctx context.Context, p prepared) error {
	o.mu.Lock()
	now := max(o.opts.Now().UnixNano(), o.c.lastAccepted)
	produced := now
	if !p.ProducedAt.IsZero() {
		produced = p.ProducedAt.UnixNano()
	}
	q := o.mem
	if p.Kind == Reported {
		l := q.per[p.Identity]
		for i := len(l) - 1; i >= 0; i-- {
			m := l[i]
			if m.e.Kind != Reported {
				continue
			}
			if m.spilling || m.seg != 0 {
				break // a spill is copying it, or it is in the log: a new entry
			}
			prev, err := decodePatch(m.e.Body)
			if err != nil {
				break
			}
			merged, ok := Compose(prev, p.patch)
			if !ok {
				break
			}
			nb, err := encodePatch(merged)
			if err != nil {
				break
			}
			size := rowSize(len(nb), 0, len(p.ID))
			q.bytes += size - m.size
			m.size, m.e.Body, m.e.ID, m.e.ProducedAt = size, nb, p.ID, time.Unix(0, produced)
			o.c.accepted++
			o.c.merged++
			o.c.lastAccepted = now
			o.mu.Unlock()
			o.wakeDrainer()
			return nil
		}
	}
	q.seq++
	m := &memEntry{e: Entry{Message: p.Message, Seq: q.seq, AcceptedAt: time.Unix(0, now)}, props: p.props, size: p.size}
	m.e.ProducedAt = time.Unix(0, produced)
	q.add(m)
	o.recordHeld()
	o.c.accepted++
	o.c.lastAccepted = now
	over := q.bytes > o.opts.MemoryBytes
	first := q.n == 1
	o.mu.Unlock()
	o.wakeDrainer()
	if over {
		// Memory is bounded: the producer waits for the spill of the oldest
		// half, which is what makes the bound hold under a dead uplink.
		return o.spill(ctx, func(m *memEntry, _ time.Time) bool { return true }, o.opts.MemoryBytes/2)
	}
	if first {
		q.wake() // the spiller sleeps without a deadline while memory is empty
	}
	return nil
}

func (o *Outbox) wakeDrainer() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// spill moves held entries to the database in one transaction: from the
// oldest, those pick accepts, until at most keep bytes stay in memory
// (keep < 0: no byte limit). Entries acknowledged while the transaction runs
// are deleted again by their Ack.
func (o *Outbox) spill(ctx context.Context, pick func(m *memEntry, now time.Time) bool, keep int64) error {
	if o.slog != nil {
		return o.spillToLog(ctx, pick, keep)
	}
	o.mu.Lock()
	q := o.mem
	now := o.opts.Now()
	var batch []*memEntry
	left := q.bytes
	for _, m := range q.fifo {
		if m.gone || m.spilling {
			continue
		}
		if (keep < 0 || left <= keep) && !pick(m, now) {
			break
		}
		m.spilling = true
		left -= m.size
		batch = append(batch, m)
	}
	o.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	began := time.Now()
	err := o.write(ctx, fmt.Sprintf("spill %d outbox entries", len(batch)), func(tx *sql.Tx) error {
		// Entries acked before this runs are not written; their Ack found no
		// row, so they are counted here. An Ack after this point deletes the row.
		var ins []*memEntry
		o.mu.Lock()
		for _, m := range batch {
			if m.acked {
				o.countLocked(dropAcked)
				continue
			}
			ins = append(ins, m)
		}
		o.mu.Unlock()
		rows := 0
		for _, m := range ins {
			p := prepared{Message: m.e.Message, props: m.props, size: m.size, seq: m.e.Seq}
			inserted, err := o.insertTx(tx, p, m.e.AcceptedAt.UnixNano(), m.e.ProducedAt.UnixNano())
			if err != nil {
				return err
			}
			if inserted {
				rows++
			}
		}
		o.mu.Lock()
		o.c.spilled += int64(rows)
		o.mu.Unlock()
		return nil
	})
	o.mu.Lock()
	q.lastSpill = time.Since(began)
	for _, m := range batch {
		if err != nil {
			m.spilling = false
			continue
		}
		q.drop(m)
	}
	o.recordHeld()
	o.mu.Unlock()
	if err != nil {
		return fmt.Errorf("spill outbox entries: %w", err)
	}
	return nil
}

// spiller spills entries that stayed unacknowledged. It wakes when the
// oldest held entry is SpillAfter minus a margin old, the margin being twice
// what the last spill took (at least an eighth of SpillAfter, at most half):
// the spill is committed before the entry is SpillAfter old, and as late
// as that allows, so each spill carries as many messages as the bound lets
// it (a spill costs a few pages whatever it holds: at one device that
// fixed part is most of the bytes written).
//
// What it spills depends on the uplink. When an Ack removed a held entry
// within the last half of SpillAfter, the uplink is alive but slow: only
// entries older than half of SpillAfter go, since younger ones are likely
// acknowledged before they would have to be on disk (a spilled entry costs
// its insert and its delete). Otherwise everything held goes, so the next
// spill is a whole SpillAfter away.
func (o *Outbox) spiller(ctx context.Context) {
	defer close(o.spillDone)
	bound := o.opts.SpillAfter
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		o.mu.Lock()
		wakeAge := bound - spillMargin(bound, o.mem.lastSpill)
		next := time.Duration(-1)
		for _, m := range o.mem.fifo {
			if !m.gone && !m.spilling && m.seg == 0 {
				next = max(time.Until(m.e.AcceptedAt.Add(wakeAge)), 0)
				break
			}
		}
		o.mu.Unlock()
		if next >= 0 {
			timer.Reset(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-o.mem.poke:
			timer.Stop()
			continue
		case <-timer.C:
		}
		o.mu.Lock()
		cutoff := time.Duration(0)
		if time.Since(o.mem.lastAck) < bound/2 {
			cutoff = bound / 2
		}
		o.mu.Unlock()
		if err := o.spill(ctx, func(m *memEntry, now time.Time) bool { return now.Sub(m.e.AcceptedAt) >= cutoff }, -1); err != nil {
			o.log.Warn("spill outbox", "error", err)
		}
	}
}

// spillMargin is how long before SpillAfter the spiller starts a spill:
// twice the last spill's duration, within [bound/8, bound/2].
func spillMargin(bound, last time.Duration) time.Duration {
	return min(max(2*last, bound/8), bound/2)
}

// recordHeld writes the number of entries held in memory into HeldFile, in
// place and without sync: a process crash leaves it in the page cache, so
// the next start reads what was held; a power cut may leave an older figure.
// Rewriting one page while it is dirty costs one page write per writeback
// period, not one per call. Called with o.mu held.
func (o *Outbox) recordHeld() {
	if o.held == nil {
		return
	}
	var b [16]byte
	copy(b[:8], heldMagic)
	binary.LittleEndian.PutUint64(b[8:], uint64(o.mem.n))
	if _, err := o.held.WriteAt(b[:], 0); err != nil {
		o.log.Warn("record outbox entries held in memory", "error", err)
	}
}

const heldMagic = "drvheld1"

// countLost opens HeldFile and adds what a previous run left in it (entries
// held in memory when it crashed) to the lost count.
func (o *Outbox) countLost() error {
	if o.opts.HeldFile == "" || o.opts.Durability != Spill {
		return nil
	}
	f, err := os.OpenFile(o.opts.HeldFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open outbox held file: %w", err)
	}
	var b [16]byte
	if n, _ := f.ReadAt(b[:], 0); n == len(b) && string(b[:8]) == heldMagic {
		if lost := int64(binary.LittleEndian.Uint64(b[8:])); lost > 0 {
			o.log.Warn("outbox entries held in memory were lost in a crash", "entries", lost)
			o.c.lostCrash += lost
			if _, err := o.wr.Exec(`UPDATE outbox_counters SET lost_crash = ? WHERE one = 1`, o.c.lostCrash); err != nil {
				f.Close()
				return fmt.Errorf("count outbox entries lost in memory: %w", err)
			}
		}
	}
	o.held = f
	clear(b[:])
	copy(b[:8], heldMagic)
	if _, err := f.WriteAt(b[:], 0); err != nil {
		f.Close()
		return fmt.Errorf("reset outbox held file: %w", err)
	}
	return nil
}

// memNext returns up to limit held entries of one identity (all when
// identity is ""), of one kind when kind is not 0, in seq order.
func (o *Outbox) memNext(identity string, kind Kind, limit int) []Entry {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mem == nil {
		return nil
	}
	src := o.mem.fifo
	if identity != "" {
		src = o.mem.per[identity]
	} else if o.slog != nil {
		src = o.mem.all()
	}
	cut, expired := int64(math.MaxInt64), int64(math.MinInt64)
	if o.slog != nil {
		cut = o.slog.cutoffLocked()
		if o.opts.TTL > 0 {
			expired = o.opts.Now().Add(-o.opts.TTL).UnixNano()
		}
	}
	var out []Entry
	var old []*memEntry
	for _, m := range src {
		if len(out) >= limit || m.e.Seq >= cut {
			break
		}
		if m.gone || (kind != 0 && m.e.Kind != kind) {
			continue
		}
		if m.seg != 0 && m.e.Kind == Telemetry && m.e.AcceptedAt.UnixNano() < expired {
			old = append(old, m) // logged long ago: expired (held entries are younger than SpillAfter)
			continue
		}
		out = append(out, m.e)
	}
	for _, m := range old {
		o.removeLoggedLocked(m, dropTTL)
	}
	return out
}

// all returns every entry in memory, in sequence order.
func (q *memQueue) all() []*memEntry {
	out := make([]*memEntry, 0, len(q.bySeq))
	for _, m := range q.bySeq {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *memEntry) int { return cmp.Compare(a.e.Seq, b.e.Seq) })
	return out
}

// memAck removes the receipts that name held entries and returns the
// others, which name database rows (spilling entries are removed from
// memory and returned too: their row may be committed).
func (o *Outbox) memAck(rs []Receipt, reason dropReason) []Receipt {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mem == nil {
		return rs
	}
	var rest []Receipt
	for _, r := range rs {
		m := o.mem.bySeq[r.Seq]
		if m == nil || m.e.ID != r.ID {
			rest = append(rest, r)
			continue
		}
		o.mem.lastAck = time.Now()
		if m.seg != 0 {
			o.removeLoggedLocked(m, reason)
			if o.slog.unloadedN > 0 {
				o.slog.wake() // room for a segment to load, maybe
			}
			continue
		}
		o.mem.drop(m)
		if m.spilling && o.slog != nil {
			// The spill appending it records its removal if it wrote it.
			m.acked = true
			o.countLocked(reason)
			continue
		}
		if m.spilling {
			// The row may be committed: the database removal counts it if so,
			// and the spill counts it if it skipped the entry. Its delete is
			// not deferred (kind cleared): a deferred receipt whose row never
			// came would hide a row's worth of the identity's depth from
			// Pending until the next full delete.
			m.acked = true
			r.kind = 0
			rest = append(rest, r)
			continue
		}
		o.countLocked(reason)
	}
	o.recordHeld()
	return rest
}

// spillAll moves everything held to the database (Close).
func (o *Outbox) spillAll(ctx context.Context) error {
	return o.spill(ctx, func(*memEntry, time.Time) bool { return true }, -1)
}
