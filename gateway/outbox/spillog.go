package outbox

// The spill log: under Spill durability with Options.SpillDir, spilled
// entries go to an append-only log of segment files (internal/seglog)
// instead of SQLite.
//
// Why: a SQLite commit writes every new page twice (WAL frame, then the
// checkpoint copy) plus a fixed part (b-tree pages of the table tail, the
// counters row, index leaves), and a reported patch merged into a queued
// row rewrites an old page. With the uplink down that was 3–4× the stored
// size of the messages at 50–250 devices (docs/benchmarks.md, "Flash
// wear"). An append writes the records once, plus the partly filled last
// page again at the next spill.
//
// Layout. The log holds two kinds of records: an entry (a spilled message,
// with its sequence number) and a removal (sequence numbers acknowledged,
// expired, evicted or superseded). A spill is one append of its entries,
// then the removals gathered since the last append, followed by one
// fdatasync; removals alone are appended every AckEvery without a sync (a
// lost removal sends a message twice, never loses one). Segments are
// deleted oldest first once nothing in them is live, so a removal record is
// never deleted before the entry it removes.
//
// Memory. Logged entries stay in memory (memQueue, with seg set) so that
// Next and Ack need no reads: up to MemoryBytes of them. Beyond that the
// newest segments are unloaded (their telemetry leaves memory, counted per
// identity) and loaded again, oldest first, as acks make room. While a
// segment is unloaded Next hands out nothing at or above its first
// sequence number, which keeps every identity's order. Reported entries
// are always kept in memory (at most a few per identity): a spilled patch
// is composed with the identity's logged one, which is then removed.
//
// Restart. Open reads the log twice: the removals, then the entries that
// are still live; reported entries go to memory, telemetry is loaded
// segment by segment up to MemoryBytes.

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/seglog"
	"github.com/drover-iot/drover/internal/twin"
)

// Record types of the spill log.
const (
	recEntry    = 'E'
	recRemoval  = 'R'
	recCounters = 'C' // the counters after the append: they reach the database only now and then
)

// spillLog is the log and its accounting. Guarded by Outbox.mu, except
// log itself, which Outbox.spillMu serialises for appends, loads and
// segment removal.
type spillLog struct {
	log   *seglog.Log
	segs  map[uint64]*segState
	order []uint64 // live segments, oldest first

	live, liveBytes int64            // live logged entries (in memory or not) and their accounted bytes
	unloadedPer     map[string]int64 // telemetry of unloaded segments, per identity
	unloadedN       int64
	pendingRm       []int64       // removals not appended yet
	unsyncedRm      int           // removals appended since the last sync
	pokeC           chan struct{} // wakes the keeper
}

// segState is one segment's accounting.
type segState struct {
	live, liveBytes int64
	first           int64 // lowest sequence number of an entry written to it (0: none)
	loaded          bool  // its live telemetry is in memory
	unloaded        []int64
	unloadedPer     map[string]int64
	unloadedBytes   int64
}

// segmentBytes is the segment size for a memory bound: a quarter of it, so
// that memory holds several segments and unloading one frees a quarter.
func segmentBytes(memory int64) int64 { return max(memory/4, 1024) }

// openSpillLog opens the log in dir and replays it into the memory queue
// (o.mem, which must exist): live reported entries to memory, telemetry to
// unloaded segments, then loads the oldest segments up to MemoryBytes.
func (o *Outbox) openSpillLog(dir string) error {
	l, rep, err := seglog.Open(dir, seglog.Options{SegmentBytes: segmentBytes(o.opts.MemoryBytes), RetireDir: o.opts.SpillRetireDir})
	if err != nil {
		return fmt.Errorf("open outbox spill log: %w", err)
	}
	if rep.TruncatedBytes > 0 {
		o.log.Warn("outbox spill log: cut a torn tail (a write a crash interrupted)", "dir", dir, "bytes", rep.TruncatedBytes)
	}
	for _, f := range rep.SetAside {
		o.log.Warn("outbox spill log: segment with a bad header set aside", "file", f)
	}
	sl := &spillLog{log: l, segs: map[uint64]*segState{}, unloadedPer: map[string]int64{}, pokeC: make(chan struct{}, 1)}
	o.slog = sl
	removed, err := o.replayRemovals()
	if err != nil {
		l.Close()
		return err
	}
	if err := o.replayEntries(removed); err != nil {
		l.Close()
		return err
	}
	for {
		loaded, err := o.loadSegment(true)
		if err != nil {
			l.Close()
			return err
		}
		if !loaded {
			return nil
		}
	}
}

// replayRemovals collects the sequence numbers the log's removal records
// name, sorted.
func (o *Outbox) replayRemovals() ([]int64, error) {
	var removed []int64
	for _, seg := range o.slog.log.Segments() {
		bad, err := o.slog.log.Scan(seg, func(rec []byte) error {
			switch {
			case len(rec) > 0 && rec[0] == recRemoval:
				seqs, err := decodeRemoval(rec)
				if err != nil {
					o.log.Warn("outbox spill log: skip unreadable removal record", "segment", seg, "error", err)
					return nil
				}
				removed = append(removed, seqs...)
			case len(rec) > 0 && rec[0] == recCounters:
				if c, ok := decodeCounters(rec); ok {
					o.c = laterCounters(o.c, c)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("replay outbox spill log: %w", err)
		}
		if bad > 0 {
			o.log.Warn("outbox spill log: unreadable end of segment skipped", "segment", seg, "bytes", bad)
		}
	}
	slices.Sort(removed)
	return slices.Compact(removed), nil
}

// replayEntries accounts for the live entries of every segment.
func (o *Outbox) replayEntries(removed []int64) error {
	sl, q := o.slog, o.mem
	for _, seg := range sl.log.Segments() {
		st := &segState{unloadedPer: map[string]int64{}}
		sl.segs[seg] = st
		sl.order = append(sl.order, seg)
		_, err := sl.log.Scan(seg, func(rec []byte) error {
			if len(rec) == 0 || rec[0] != recEntry {
				return nil
			}
			m, err := decodeEntry(rec)
			if err != nil {
				o.log.Warn("outbox spill log: drop unreadable entry", "segment", seg, "error", err)
				o.c.droppedCorrupt++
				return nil
			}
			q.seq = max(q.seq, m.e.Seq)
			if st.first == 0 {
				st.first = m.e.Seq
			}
			if _, gone := slices.BinarySearch(removed, m.e.Seq); gone || q.bySeq[m.e.Seq] != nil {
				return nil
			}
			m.seg = seg
			st.live++
			st.liveBytes += m.size
			sl.live++
			sl.liveBytes += m.size
			if m.e.Kind == Reported {
				q.addLogged(m)
				return nil
			}
			sl.markUnloaded(st, m)
			return nil
		})
		if err != nil {
			return fmt.Errorf("replay outbox spill log: %w", err)
		}
		st.loaded = len(st.unloaded) == 0
	}
	// Loaded segments are a prefix of the order: an empty segment after an
	// unloaded one counts as unloaded, so new spills into it stay on disk.
	seenUnloaded := false
	for _, seg := range sl.order {
		st := sl.segs[seg]
		if !st.loaded {
			seenUnloaded = true
		}
		st.loaded = !seenUnloaded
	}
	if _, ok := sl.segs[sl.log.Current()]; !ok {
		sl.segs[sl.log.Current()] = &segState{loaded: !seenUnloaded, unloadedPer: map[string]int64{}}
		sl.order = append(sl.order, sl.log.Current())
	}
	return nil
}

// cutoffLocked is the lowest sequence number whose telemetry is not in
// memory (math.MaxInt64 when everything is loaded): Next hands out nothing
// at or above it, so an identity's entries go out in order.
func (sl *spillLog) cutoffLocked() int64 {
	for _, seg := range sl.order {
		st := sl.segs[seg]
		if !st.loaded && st.first != 0 {
			return st.first
		}
	}
	return math.MaxInt64
}

// firstUnloaded returns the oldest unloaded segment.
func (sl *spillLog) firstUnloaded() (uint64, *segState) {
	for _, seg := range sl.order {
		if st := sl.segs[seg]; !st.loaded {
			return seg, st
		}
	}
	return 0, nil
}

// loadSegment loads the oldest unloaded segment when memory has room for
// its telemetry, or when no logged telemetry is in memory at all, and
// reports whether it loaded one. Expired telemetry is removed as it is read.
//
// The second case keeps the drain going: with no logged telemetry in
// memory nothing below the cutoff can be handed out and acknowledged to
// make room, so a segment larger than the room left (memory_bytes lowered
// since it was written, or the logged reported patches kept in memory)
// would otherwise never load and the queue would stall.
func (o *Outbox) loadSegment(atOpen bool) (bool, error) {
	sl, q := o.slog, o.mem
	o.mu.Lock()
	seg, st := sl.firstUnloaded()
	if st == nil || (q.logTel > 0 && q.logBytes+st.unloadedBytes > o.opts.MemoryBytes) {
		o.mu.Unlock()
		return false, nil
	}
	want := slices.Clone(st.unloaded)
	o.mu.Unlock()
	var got []*memEntry
	if len(want) > 0 {
		_, err := sl.log.Scan(seg, func(rec []byte) error {
			if len(rec) == 0 || rec[0] != recEntry {
				return nil
			}
			m, err := decodeEntry(rec)
			if err != nil {
				return nil // counted at open
			}
			if _, ok := slices.BinarySearch(want, m.e.Seq); ok && m.e.Kind == Telemetry {
				m.seg = seg
				got = append(got, m)
			}
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("load outbox spill segment: %w", err)
		}
	}
	cutoff := int64(math.MinInt64)
	if o.opts.TTL > 0 {
		cutoff = o.opts.Now().Add(-o.opts.TTL).UnixNano()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	sl.clearUnloaded(st)
	for _, m := range got {
		if m.e.AcceptedAt.UnixNano() < cutoff {
			o.removeLoggedLocked(m, dropTTL)
			continue
		}
		q.addLogged(m)
	}
	if !atOpen {
		o.wakeDrainer()
	}
	return true, nil
}

// unloadLocked moves the telemetry of the newest loaded segments out of
// memory while more than MemoryBytes of logged entries are held there,
// keeping at least the oldest loaded segment.
func (o *Outbox) unloadLocked() {
	sl, q := o.slog, o.mem
	for q.logBytes > o.opts.MemoryBytes {
		var newest uint64
		loaded := 0
		for _, seg := range sl.order {
			if sl.segs[seg].loaded {
				newest = seg
				loaded++
			}
		}
		if loaded < 2 {
			return
		}
		st := sl.segs[newest]
		for _, m := range q.bySeq {
			if m.seg != newest || m.e.Kind != Telemetry {
				continue
			}
			q.drop(m)
			sl.markUnloaded(st, m)
		}
		slices.Sort(st.unloaded)
		st.loaded = false
	}
}

// removeLoggedLocked removes a logged entry held in memory: out of memory
// and the accounting, its removal queued for the log, counted under reason.
func (o *Outbox) removeLoggedLocked(m *memEntry, reason dropReason) {
	o.mem.drop(m)
	o.forgetLoggedLocked(m.seg, m.e.Seq, m.size)
	o.countLocked(reason)
}

// forgetLoggedLocked takes one live entry of seg out of the accounting and
// queues its removal record.
func (o *Outbox) forgetLoggedLocked(seg uint64, seq, size int64) {
	sl := o.slog
	sl.pendingRm = append(sl.pendingRm, seq)
	sl.live--
	sl.liveBytes -= size
	if st := sl.segs[seg]; st != nil {
		st.live--
		st.liveBytes -= size
	}
}

// deadSegments returns the segments that can be deleted: oldest first,
// nothing live, not the one being written. Called with o.mu held.
func (sl *spillLog) deadSegmentsLocked() []uint64 {
	var out []uint64
	for _, seg := range sl.order {
		st := sl.segs[seg]
		if st.live > 0 || seg == sl.log.Current() {
			break
		}
		out = append(out, seg)
	}
	return out
}

// maintainLog appends pending removals (without a sync), deletes dead
// segments and loads unloaded ones that fit. The spill log keeper calls it
// every AckEvery and when an ack made room.
func (o *Outbox) maintainLog(sync bool) error {
	o.spillMu.Lock()
	defer o.spillMu.Unlock()
	sl := o.slog
	o.mu.Lock()
	rm := sl.pendingRm
	sl.pendingRm = nil
	o.mu.Unlock()
	var errs []error
	if len(rm) > 0 {
		o.mu.Lock()
		c := o.c
		o.mu.Unlock()
		seg, err := sl.log.Append(encodeRemoval(nil, rm), encodeCounters(nil, c))
		o.mu.Lock()
		if err != nil {
			sl.pendingRm = append(rm, sl.pendingRm...)
			errs = append(errs, fmt.Errorf("append outbox removals: %w", err))
		} else {
			sl.segment(seg) // the append may have started a segment
			sl.unsyncedRm += len(rm)
		}
		o.mu.Unlock()
	}
	// Removals are not synced for their own sake (a lost one sends a
	// message twice), but not more than AckRows of them: that bounds the
	// duplicates after a power cut as the deferred deletes do.
	sync = sync || sl.unsyncedRm >= o.opts.AckRows
	errs = append(errs, o.removeDeadSegments())
	if sync {
		if err := sl.log.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sync outbox spill log: %w", err))
		} else {
			sl.unsyncedRm = 0
		}
	}
	for {
		loaded, err := o.loadSegment(false)
		if err != nil {
			errs = append(errs, err)
		}
		if !loaded || err != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// removeDeadSegments deletes the segments nothing live is left in. Called
// with spillMu held.
func (o *Outbox) removeDeadSegments() error {
	sl := o.slog
	o.mu.Lock()
	dead := sl.deadSegmentsLocked()
	o.mu.Unlock()
	for _, seg := range dead {
		if err := sl.log.Remove(seg); err != nil {
			return fmt.Errorf("delete outbox spill segment: %w", err)
		}
		o.mu.Lock()
		delete(sl.segs, seg)
		sl.order = slices.DeleteFunc(sl.order, func(s uint64) bool { return s == seg })
		o.mu.Unlock()
	}
	return nil
}

// spillKeeper runs maintainLog every AckEvery and when poked.
func (o *Outbox) spillKeeper(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(o.opts.AckEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-o.slog.pokeC:
		}
		if err := o.maintainLog(false); err != nil {
			o.log.Warn("maintain outbox spill log", "error", err)
		}
	}
}

// wake asks the keeper to run now (acks made room for a load).
func (sl *spillLog) wake() {
	select {
	case sl.pokeC <- struct{}{}:
	default:
	}
}

// encodeEntry appends the entry record of m to b.
func encodeEntry(b []byte, m *memEntry) []byte {
	b = append(b, recEntry)
	b = binary.AppendUvarint(b, uint64(m.e.Seq))
	b = append(b, byte(m.e.Kind))
	b = binary.AppendVarint(b, m.e.AcceptedAt.UnixNano())
	b = binary.AppendVarint(b, m.e.ProducedAt.UnixNano())
	for _, s := range []string{m.e.Identity, m.e.ID, m.props} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, m.e.Body...)
}

// errRecord says a record that passed its checksum does not decode: written
// by another version, or a bug.
var errRecord = errors.New("malformed record")

// decodeEntry reads an entry record, refusing anything encodeEntry would not
// have written.
func decodeEntry(rec []byte) (*memEntry, error) {
	r := rec[1:]
	seq, n := binary.Uvarint(r)
	if n <= 0 || seq == 0 || seq > math.MaxInt64 || len(r) < n+1 {
		return nil, fmt.Errorf("%w: sequence number", errRecord)
	}
	kind := Kind(r[n])
	r = r[n+1:]
	var times [2]int64
	for i := range times {
		v, n := binary.Varint(r)
		if n <= 0 {
			return nil, fmt.Errorf("%w: times", errRecord)
		}
		times[i], r = v, r[n:]
	}
	var strs [3]string
	for i := range strs {
		l, n := binary.Uvarint(r)
		if n <= 0 || l > uint64(len(r)-n) {
			return nil, fmt.Errorf("%w: field lengths", errRecord)
		}
		strs[i], r = string(r[n:n+int(l)]), r[n+int(l):]
	}
	m := &memEntry{props: strs[2]}
	m.e = Entry{Message: Message{Identity: strs[0], Kind: kind, ID: strs[1], Body: slices.Clone(r), ProducedAt: time.Unix(0, times[1])},
		Seq: int64(seq), AcceptedAt: time.Unix(0, times[0])}
	if m.e.Identity == "" || m.e.ID == "" {
		return nil, fmt.Errorf("%w: no identity or id", errRecord)
	}
	switch kind {
	case Telemetry:
		ps, err := iothubtopic.DecodeProperties(m.props)
		if err != nil {
			return nil, fmt.Errorf("%w: properties: %w", errRecord, err)
		}
		m.e.Props = ps
	case Reported:
		if _, err := twin.DecodeObject(m.e.Body); err != nil {
			return nil, fmt.Errorf("%w: reported patch: %w", errRecord, err)
		}
	default:
		return nil, fmt.Errorf("%w: kind %d", errRecord, kind)
	}
	m.size = rowSize(len(m.e.Body), len(m.props), len(m.e.ID))
	return m, nil
}

// encodeRemoval appends a removal record naming seqs (sorted in place) to b.
func encodeRemoval(b []byte, seqs []int64) []byte {
	slices.Sort(seqs)
	b = append(b, recRemoval)
	b = binary.AppendUvarint(b, uint64(len(seqs)))
	prev := int64(0)
	for _, s := range seqs {
		b = binary.AppendUvarint(b, uint64(s-prev))
		prev = s
	}
	return b
}

// decodeRemoval reads a removal record.
func decodeRemoval(rec []byte) ([]int64, error) {
	r := rec[1:]
	n, k := binary.Uvarint(r)
	if k <= 0 || n > uint64(len(r)) {
		return nil, fmt.Errorf("%w: removal count", errRecord)
	}
	r = r[k:]
	out := make([]int64, 0, n)
	prev := uint64(0)
	for range n {
		d, k := binary.Uvarint(r)
		if k <= 0 || prev+d > math.MaxInt64 {
			return nil, fmt.Errorf("%w: removal sequence numbers", errRecord)
		}
		prev += d
		out = append(out, int64(prev))
		r = r[k:]
	}
	return out, nil
}

// spillToLog is spill under the spill log: the picked entries are appended
// in one write with the removals gathered since the last append, then
// synced once; they stay in memory as logged entries.
func (o *Outbox) spillToLog(ctx context.Context, pick func(m *memEntry, now time.Time) bool, keep int64) error {
	o.spillMu.Lock()
	defer o.spillMu.Unlock()
	sl, q := o.slog, o.mem
	o.mu.Lock()
	now := o.opts.Now()
	var batch []*memEntry
	var need int64
	left := q.bytes
	for _, m := range q.fifo {
		if m.gone || m.spilling || m.seg != 0 {
			continue
		}
		if (keep < 0 || left <= keep) && !pick(m, now) {
			break
		}
		m.spilling = true
		left -= m.size
		need += m.size
		batch = append(batch, m)
	}
	o.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	began := time.Now()
	written := make([]bool, len(batch))
	var superseded []*memEntry
	var seg uint64
	err := o.logRoom(ctx, need)
	if err == nil {
		var recs [][]byte
		var rm []int64
		recs, rm, superseded = o.encodeSpill(batch, written)
		seg, err = sl.log.Append(recs...)
		if err == nil {
			err = sl.log.Sync()
		}
		if err == nil {
			sl.unsyncedRm = 0
		}
		if err != nil {
			o.mu.Lock()
			sl.pendingRm = append(rm, sl.pendingRm...)
			o.mu.Unlock()
			superseded = nil
		}
	}
	o.mu.Lock()
	q.lastSpill = time.Since(began)
	var st *segState
	if err == nil {
		st = sl.segment(seg)
	}
	for i, m := range batch {
		m.spilling = false
		switch {
		case err != nil:
		case m.acked:
			if written[i] {
				sl.pendingRm = append(sl.pendingRm, m.e.Seq) // acked while being written
			}
		case written[i]:
			o.logSpilledLocked(m, seg, st)
		}
	}
	for _, p := range superseded {
		if p.gone {
			continue // acked meanwhile: its ack accounted for it
		}
		q.drop(p)
		sl.live--
		sl.liveBytes -= p.size
		if pst := sl.segs[p.seg]; pst != nil {
			pst.live--
			pst.liveBytes -= p.size
		}
	}
	o.unloadLocked()
	o.recordHeld()
	o.mu.Unlock()
	if err != nil {
		return fmt.Errorf("spill outbox entries: %w", err)
	}
	if err := o.removeDeadSegments(); err != nil {
		o.log.Warn("spill outbox entries", "error", err)
	}
	return nil
}

// encodeSpill encodes the batch's entries that are not acked (marking them
// in written), composing a reported patch with the identity's logged one,
// which it returns in superseded; rm are the removals appended after them
// (the pending ones and the superseded entries): entries first, so a torn
// append never keeps the removal of a patch without the patch that holds it.
func (o *Outbox) encodeSpill(batch []*memEntry, written []bool) (recs [][]byte, rm []int64, superseded []*memEntry) {
	sl, q := o.slog, o.mem
	o.mu.Lock()
	defer o.mu.Unlock()
	var buf []byte
	for i, m := range batch {
		if m.acked {
			continue
		}
		if m.e.Kind == Reported {
			if prev := q.loggedReported(m.e.Identity); prev != nil {
				if nb, ok := composeBodies(prev.e.Body, m.e.Body); ok {
					size := rowSize(len(nb), 0, len(m.e.ID))
					q.bytes += size - m.size
					m.e.Body, m.size = nb, size
					superseded = append(superseded, prev)
				}
			}
		}
		start := len(buf)
		buf = encodeEntry(buf, m)
		recs = append(recs, buf[start:len(buf):len(buf)])
		written[i] = true
	}
	rm = sl.pendingRm
	sl.pendingRm = nil
	for _, p := range superseded {
		rm = append(rm, p.e.Seq)
	}
	if len(rm) > 0 {
		recs = append(recs, encodeRemoval(nil, slices.Clone(rm)))
	}
	// The counters as they will be once the entries are in: spilled grows
	// by those written (an entry acked meanwhile still counts, as in the database).
	c := o.c
	for _, w := range written {
		if w {
			c.spilled++
		}
	}
	recs = append(recs, encodeCounters(nil, c))
	return recs, rm, superseded
}

// composeBodies composes two reported patches (older first).
func composeBodies(older, newer []byte) ([]byte, bool) {
	p1, err1 := decodePatch(older)
	p2, err2 := decodePatch(newer)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	merged, ok := Compose(p1, p2)
	if !ok {
		return nil, false
	}
	nb, err := encodePatch(merged)
	return nb, err == nil
}

// loggedReported returns the identity's latest logged reported entry.
func (q *memQueue) loggedReported(identity string) *memEntry {
	l := q.per[identity]
	for i := len(l) - 1; i >= 0; i-- {
		if m := l[i]; m.e.Kind == Reported && m.seg != 0 && !m.gone {
			return m
		}
	}
	return nil
}

// segment returns the state of seg, adding it when the log just started it.
func (sl *spillLog) segment(seg uint64) *segState {
	st := sl.segs[seg]
	if st == nil {
		_, unloaded := sl.firstUnloaded()
		st = &segState{loaded: unloaded == nil, unloadedPer: map[string]int64{}}
		sl.segs[seg] = st
		sl.order = append(sl.order, seg)
	}
	return st
}

// logSpilledLocked accounts for a held entry now written to seg: logged in
// memory, or out of memory when seg is unloaded (telemetry).
func (o *Outbox) logSpilledLocked(m *memEntry, seg uint64, st *segState) {
	sl, q := o.slog, o.mem
	q.toLogged(m, seg)
	st.live++
	st.liveBytes += m.size
	if st.first == 0 {
		st.first = m.e.Seq
	}
	sl.live++
	sl.liveBytes += m.size
	o.c.spilled++
	if st.loaded || m.e.Kind != Telemetry {
		return
	}
	q.drop(m)
	sl.markUnloaded(st, m)
}

// markUnloaded counts a live telemetry entry of st that is not in memory.
func (sl *spillLog) markUnloaded(st *segState, m *memEntry) {
	st.unloaded = append(st.unloaded, m.e.Seq)
	st.unloadedPer[m.e.Identity]++
	st.unloadedBytes += m.size
	sl.unloadedPer[m.e.Identity]++
	sl.unloadedN++
}

// clearUnloaded forgets st's entries that are not in memory (loaded, or
// evicted) and marks it loaded.
func (sl *spillLog) clearUnloaded(st *segState) {
	for id, n := range st.unloadedPer {
		if sl.unloadedPer[id] -= n; sl.unloadedPer[id] <= 0 {
			delete(sl.unloadedPer, id)
		}
		sl.unloadedN -= n
	}
	st.unloaded, st.unloadedPer, st.unloadedBytes, st.loaded = nil, map[string]int64{}, 0, true
}

// logRoom makes room under MaxBytes for need more bytes in the log, as the
// policy says: the database's telemetry first (it is older than anything
// logged), then logged telemetry oldest first (in memory, then whole
// unloaded segments), then reported entries.
func (o *Outbox) logRoom(ctx context.Context, need int64) error {
	sl := o.slog
	over := func() int64 {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.bytes + sl.liveBytes + need - o.opts.MaxBytes
	}
	if over() <= 0 {
		return nil
	}
	if o.opts.OnFull == RejectNew {
		o.mu.Lock()
		o.c.rejected++
		queued := o.bytes + sl.liveBytes
		o.mu.Unlock()
		return fmt.Errorf("spill outbox entries: %w: %d bytes queued, bound %d", ErrFull, queued, o.opts.MaxBytes)
	}
	if o.dbTelemetry() > 0 {
		err := o.write(ctx, "evict from outbox", func(tx *sql.Tx) error {
			_, err := o.evictKind(tx, Telemetry, over(), 0)
			return err
		})
		if err != nil {
			return err
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	left := o.evictLoggedLocked(Telemetry, o.bytes+sl.liveBytes+need-o.opts.MaxBytes)
	for left > 0 {
		seg, st := sl.firstUnloaded()
		if st == nil {
			break
		}
		n := int64(len(st.unloaded))
		left -= st.unloadedBytes
		sl.pendingRm = append(sl.pendingRm, st.unloaded...)
		sl.live -= n
		sl.liveBytes -= st.unloadedBytes
		st.live -= n
		st.liveBytes -= st.unloadedBytes
		o.c.droppedFull += n
		sl.clearUnloaded(st)
		o.log.Debug("evicted an unloaded outbox spill segment", "segment", seg, "entries", n)
	}
	if left = o.evictLoggedLocked(Reported, left); left > 0 {
		return fmt.Errorf("spill outbox entries: %w: nothing left to evict", ErrFull)
	}
	return nil
}

// evictLoggedLocked removes logged entries of kind held in memory, oldest
// first, until over bytes are freed; it returns what is left of over.
func (o *Outbox) evictLoggedLocked(kind Kind, over int64) int64 {
	if over <= 0 {
		return over
	}
	for _, m := range o.mem.all() {
		if over <= 0 {
			break
		}
		if m.seg == 0 || m.e.Kind != kind {
			continue
		}
		over -= m.size
		o.removeLoggedLocked(m, dropFull)
	}
	return over
}

// dbTelemetry is the number of telemetry rows in the database.
func (o *Outbox) dbTelemetry() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var n int64
	for _, st := range o.per {
		n += st.telemetry
	}
	return n
}

// importSpillLog moves what a spill log in dir still holds into the
// database, then deletes the log: the durability mode was changed from
// spill since it was written. Entries whose sequence number is in the
// database already (a previous import that ended before the delete) are
// skipped; a reported patch is merged again, which changes nothing.
func (o *Outbox) importSpillLog(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	l, _, err := seglog.Open(dir, seglog.Options{})
	if err != nil {
		return fmt.Errorf("open outbox spill log to import it: %w", err)
	}
	defer l.Close()
	o.slog = &spillLog{log: l}
	removed, err := o.replayRemovals()
	o.slog = nil
	if err != nil {
		return err
	}
	var ms []*memEntry
	for _, seg := range l.Segments() {
		if _, err := l.Scan(seg, func(rec []byte) error {
			if len(rec) == 0 || rec[0] != recEntry {
				return nil
			}
			m, err := decodeEntry(rec)
			if err != nil {
				o.log.Warn("outbox spill log: drop unreadable entry", "segment", seg, "error", err)
				return nil
			}
			if _, gone := slices.BinarySearch(removed, m.e.Seq); !gone {
				ms = append(ms, m)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("import outbox spill log: %w", err)
		}
	}
	err = o.write(context.Background(), fmt.Sprintf("import %d entries of the outbox spill log", len(ms)), func(tx *sql.Tx) error {
		for _, m := range ms {
			var one int
			err := tx.QueryRow(`SELECT 1 FROM outbox_msg WHERE seq = ?`, m.e.Seq).Scan(&one)
			if err == nil {
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("import outbox spill log: %w", err)
			}
			p := prepared{Message: m.e.Message, props: m.props, size: m.size, seq: m.e.Seq}
			if _, err := o.insertTx(tx, p, m.e.AcceptedAt.UnixNano(), m.e.ProducedAt.UnixNano()); err != nil {
				return fmt.Errorf("import outbox spill log: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	o.log.Info("outbox spill log moved into the database", "dir", dir, "entries", len(ms))
	_ = l.Close()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete imported outbox spill log: %w", err)
	}
	return nil
}

// LoggedEntry is an entry record ReadSpillLog found.
type LoggedEntry struct {
	Entry
	Live bool // no removal record names it: still queued
}

// ReadSpillLog lists the entry records in the segment files of dirs (a
// spill log's directory, and the directory its retired segments went to),
// by sequence number, without opening the log: nothing is repaired or
// written. For tools and tests; a running outbox may be mid-append.
func ReadSpillLog(dirs ...string) ([]LoggedEntry, error) {
	var out []LoggedEntry
	var removed []int64
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.seg"))
		if err != nil {
			return nil, fmt.Errorf("read spill log %s: %w", dir, err)
		}
		for _, f := range files {
			_, err := seglog.ScanFile(f, func(rec []byte) error {
				switch {
				case len(rec) > 0 && rec[0] == recEntry:
					if m, err := decodeEntry(rec); err == nil {
						out = append(out, LoggedEntry{Entry: m.e, Live: true})
					}
				case len(rec) > 0 && rec[0] == recRemoval:
					if seqs, err := decodeRemoval(rec); err == nil {
						removed = append(removed, seqs...)
					}
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read spill log: %w", err)
			}
		}
	}
	slices.Sort(removed)
	slices.SortFunc(out, func(a, b LoggedEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	for i := range out {
		if _, gone := slices.BinarySearch(removed, out[i].Seq); gone {
			out[i].Live = false
		}
	}
	return out, nil
}

// counterFields lists the counters a counters record holds, in its order.
func counterFields(c *counters) []*int64 {
	return []*int64{&c.accepted, &c.merged, &c.acked, &c.rejected, &c.droppedFull, &c.droppedTTL,
		&c.droppedCorrupt, &c.droppedReject, &c.lastAccepted, &c.spilled, &c.lostCrash}
}

// encodeCounters appends a counters record of c to b.
func encodeCounters(b []byte, c counters) []byte {
	b = append(b, recCounters)
	for _, f := range counterFields(&c) {
		b = binary.AppendVarint(b, *f)
	}
	return b
}

// decodeCounters reads a counters record.
func decodeCounters(rec []byte) (counters, bool) {
	var c counters
	r := rec[1:]
	for _, f := range counterFields(&c) {
		v, n := binary.Varint(r)
		if n <= 0 {
			return counters{}, false
		}
		*f, r = v, r[n:]
	}
	return c, true
}

// laterCounters is the later of two readings of the counters, which only
// grow: field by field, the larger.
func laterCounters(a, b counters) counters {
	fa, fb := counterFields(&a), counterFields(&b)
	for i := range fa {
		*fa[i] = max(*fa[i], *fb[i])
	}
	return a
}
