package outbox

// This file holds the outbox's types and options; storage.go opens the
// database, accept.go queues, bounds.go evicts and expires, drain.go hands
// entries out and acks them.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/groupcommit"
	"github.com/drover-iot/drover/internal/iothubtopic"
)

// Errors returned by the outbox. Compare with errors.Is.
var (
	// ErrFull is returned by Accept under RejectNew when the message does not fit.
	ErrFull = errors.New("outbox full")
	// ErrTooLarge is returned by Accept for a message larger than MaxBytes on its own.
	ErrTooLarge = errors.New("message larger than the outbox")
	// ErrInvalid is returned by Accept for a message it cannot queue
	// (no identity, unknown kind, a reported body that is not a JSON object).
	ErrInvalid = errors.New("invalid message")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("outbox closed")
)

// Kind says what a message is and how the hub acknowledges it.
type Kind uint8

// Message kinds. The zero Kind is invalid.
const (
	Telemetry Kind = 1 // device-to-cloud message; FIFO per identity; acked by PUBACK
	Reported  Kind = 2 // reported-properties merge patch; merged per identity; acked by the twin reply
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Telemetry:
		return "telemetry"
	case Reported:
		return "reported"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Policy says what Accept does when a message does not fit under MaxBytes.
type Policy uint8

// Overflow policies.
const (
	DropOldest Policy = iota // evict the oldest telemetry (then reported rows) to make room
	RejectNew                // refuse the new message with ErrFull
)

// ParsePolicy reads the configuration spelling of a policy:
// "drop_oldest" or "reject_new".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "drop_oldest":
		return DropOldest, nil
	case "reject_new":
		return RejectNew, nil
	}
	return 0, fmt.Errorf("outbox policy %q: want drop_oldest or reject_new", s)
}

// String returns the configuration spelling of the policy.
func (p Policy) String() string {
	if p == RejectNew {
		return "reject_new"
	}
	return "drop_oldest"
}

// Message is what a producer hands to Accept.
type Message struct {
	Identity   string                 // device id in the hub (the gateway's own or a child's)
	Kind       Kind                   // Telemetry or Reported
	Body       []byte                 // telemetry payload as is; for Reported a JSON object (merge patch)
	Props      iothubtopic.Properties // telemetry application/system properties; ignored for Reported
	ProducedAt time.Time              // when the value was measured; zero means the accept time
	ID         string                 // unique message id; generated when empty
}

// Entry is a queued message handed out by Next.
type Entry struct {
	Message
	Seq        int64     // position in the queue
	AcceptedAt time.Time // when the outbox first accepted it (TTL and age count from here)
}

// Receipt identifies one handed-out entry for Ack: its position and the
// message id it had when handed out.
type Receipt struct {
	Seq int64
	ID  string

	// Set by Entry.Receipt: an acknowledged telemetry row's delete may be
	// deferred (see Options.AckEvery), which needs its kind and identity.
	kind     Kind
	identity string
}

// Receipt returns the receipt that acknowledges e.
func (e Entry) Receipt() Receipt {
	return Receipt{Seq: e.Seq, ID: e.ID, kind: e.Kind, identity: e.Identity}
}

// WireProps returns the properties to publish telemetry with: e.Props plus
// the message id ($.mid) and the produced time ($.ctime, RFC 3339 UTC) when
// the producer did not set them, so the hub can count duplicates and show
// when a value was measured.
func (e Entry) WireProps() iothubtopic.Properties {
	out := make(iothubtopic.Properties, 0, len(e.Props)+2)
	out = append(out, e.Props...)
	if _, ok := e.Props.Get(iothubtopic.SysMessageID); !ok {
		out = append(out, iothubtopic.Property{Name: iothubtopic.SysMessageID, Value: e.ID})
	}
	if _, ok := e.Props.Get(iothubtopic.SysCreationTime); !ok {
		out = append(out, iothubtopic.Property{Name: iothubtopic.SysCreationTime, Value: e.ProducedAt.UTC().Format(time.RFC3339Nano)})
	}
	return out
}

// Stats is a snapshot of the outbox. Counters are kept in the database and
// survive restarts.
type Stats struct {
	Depth     int64         // queued rows still to send (acknowledged rows whose delete is deferred are not counted)
	Telemetry int64         // queued telemetry rows still to send
	Reported  int64         // queued reported rows
	Bytes     int64         // accounted bytes in the database (see MaxBytes), deferred deletes included
	MaxBytes  int64         // the configured bound
	OldestAge time.Duration // age of the oldest queued row (0 when empty)

	Accepted int64 // messages accepted (each merged patch counts)
	Merged   int64 // reported patches merged into a queued row
	Acked    int64 // rows removed by Ack (a deferred delete counts when it is committed)
	Rejected int64 // Accept calls refused with ErrFull (RejectNew)

	DroppedFull     int64 // rows evicted to make room (DropOldest)
	DroppedTTL      int64 // telemetry rows expired
	DroppedCorrupt  int64 // unreadable rows removed (bad kind, properties or body)
	DroppedRejected int64 // rows the hub refused for good (a Sender returned ErrUndeliverable)

	Durability   string // the durability mode
	Memory       int64  // entries held in memory (Spill; included in Depth)
	MemoryBytes  int64  // their accounted bytes (not included in Bytes, a disk figure)
	Spilled      int64  // rows the spills inserted (a reported patch merged into a queued row adds none)
	Logged       int64  // entries in the spill log (Options.SpillDir), in memory or not; included in Depth
	AckDeferred  int64  // acknowledged telemetry rows whose delete is not committed yet
	LostInMemory int64  // entries held in memory when a previous run ended without Close (a crash), summed over restarts; needs Options.HeldFile
}

// Options configure Open and New. Zero values take the defaults.
type Options struct {
	MaxBytes   int64         // bound on accounted bytes; default 256 MiB
	TTL        time.Duration // telemetry lifetime from accept; default 24h; negative disables
	OnFull     Policy        // default DropOldest
	SweepEvery time.Duration // period of the TTL sweep; default 1 min
	Sync       Sync          // synchronous mode for Open; default SyncFull
	// Durability says when an accepted message reaches the disk; default EveryMessage.
	Durability  Durability
	SpillAfter  time.Duration // Spill: an unacknowledged message is spilled after this; default 2s
	MemoryBytes int64         // Spill: bound on the accounted bytes held in memory; default 4 MiB
	// SpillDir, when set, is the directory of the spill log: under Spill
	// durability spilled entries are appended there (spillog.go) instead of
	// inserted into SQLite, and up to MemoryBytes more of them stay in
	// memory. Under the other modes, entries a spill log still holds are
	// moved into the database at Open.
	SpillDir string
	// SpillRetireDir, when set, receives the spill log's segments once
	// nothing in them is live, instead of their deletion: the soak test
	// reads them back (ReadSpillLog) to know every message that was spilled.
	SpillRetireDir string
	BatchEvery     time.Duration // Batched: commits at most this often; default 200ms
	// AckEvery and AckRows defer the deletes of acknowledged telemetry rows
	// (Spill and Batched only; EveryMessage deletes in the Ack's commit):
	// Ack hides the rows from Next at once and the deletes are committed
	// together, sorted by sequence: every AckEvery while some are deferred
	// (default 1s) those forming the acknowledged head of the queue, and
	// all of them every 30 periods, as soon as AckRows are deferred
	// (default DefaultAckRows; that Ack waits for the commit) and at
	// Close (see ackdefer.go). A crash
	// sends the deferred rows again: at most AckRows plus the acks of the
	// calls that were adding to a full set at the time.
	AckEvery time.Duration
	AckRows  int
	// HeldFile, when set, is a small file where the number of entries held in
	// memory is kept (rewritten in place, never synced): after a crash the
	// next start adds what it says to Stats.LostInMemory.
	HeldFile string
	Logger   *slog.Logger
	Now      func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 20
	}
	if o.TTL == 0 {
		o.TTL = 24 * time.Hour
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = time.Minute
	}
	if o.SpillAfter <= 0 {
		o.SpillAfter = 2 * time.Second
	}
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = 4 << 20
	}
	if o.BatchEvery <= 0 {
		o.BatchEvery = 200 * time.Millisecond
	}
	if o.AckEvery <= 0 {
		o.AckEvery = time.Second
	}
	if o.AckRows <= 0 {
		o.AckRows = DefaultAckRows
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Outbox is the store-and-forward queue. Its methods are safe for concurrent use.
type Outbox struct {
	rd, wr *sql.DB
	ownDB  bool
	opts   Options
	log    *slog.Logger
	w      *groupcommit.Writer // the one writer goroutine
	before counters            // counters when the current batch began (writer goroutine only)
	notify chan struct{}       // poked after commits that accepted something

	mem       *memQueue          // Spill only: entries held in memory (guarded by mu)
	slog      *spillLog          // Spill with SpillDir: the spill log (accounting guarded by mu)
	spillMu   sync.Mutex         // serialises the spill log's appends, loads and deletes
	keepStop  chan struct{}      // stops the spill log's keeper
	keepDone  chan struct{}      // closed when it returned
	stopSpill context.CancelFunc // Spill only: stops the spiller
	spillDone chan struct{}      // Spill only: closed when the spiller returned
	closeOnce sync.Once
	held      *os.File  // Options.HeldFile, open while the outbox is
	acks      *ackDefer // Spill and Batched: deferred deletes of acked telemetry (nil: delete at once)

	mu     sync.Mutex // guards the fields below (written by the writer goroutine)
	idents map[string]int64
	per    map[int64]*identStat
	bytes  int64
	c      counters
	dirty  bool // memory may disagree with the database: reload after the batch
}

// Stats returns a snapshot of depth, bytes, age and counters.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	o.mu.Lock()
	s := Stats{
		Bytes: o.bytes, MaxBytes: o.opts.MaxBytes,
		Accepted: o.c.accepted, Merged: o.c.merged, Acked: o.c.acked, Rejected: o.c.rejected,
		DroppedFull: o.c.droppedFull, DroppedTTL: o.c.droppedTTL, DroppedCorrupt: o.c.droppedCorrupt, DroppedRejected: o.c.droppedReject,
	}
	for _, st := range o.per {
		s.Telemetry += st.telemetry
		s.Reported += st.reported
	}
	s.Durability, s.Spilled, s.LostInMemory = o.opts.Durability.String(), o.c.spilled, o.c.lostCrash
	var oldestLogged int64
	if o.slog != nil {
		s.Bytes += o.slog.liveBytes
		s.Logged = o.slog.live
		s.Telemetry += o.slog.unloadedN
		for _, m := range o.mem.bySeq {
			if m.seg == 0 {
				continue
			}
			if m.e.Kind == Reported {
				s.Reported++
			} else {
				s.Telemetry++
			}
			if a := m.e.AcceptedAt.UnixNano(); oldestLogged == 0 || a < oldestLogged {
				oldestLogged = a
			}
		}
	}
	if o.acks != nil {
		s.AckDeferred = int64(len(o.acks.rows))
		s.Telemetry = max(s.Telemetry-s.AckDeferred, 0)
	}
	if o.mem != nil {
		s.Memory, s.MemoryBytes = o.mem.n, o.mem.bytes
		for _, m := range o.mem.fifo {
			if m.gone || m.seg != 0 {
				continue
			}
			if m.e.Kind == Reported {
				s.Reported++
			} else {
				s.Telemetry++
			}
		}
	}
	o.mu.Unlock()
	s.Depth = s.Telemetry + s.Reported
	if s.Depth > 0 {
		a, err := o.oldestAccepted(ctx)
		if err != nil {
			return s, err
		}
		if a == 0 || (oldestLogged != 0 && oldestLogged < a) {
			a = oldestLogged
		}
		if a != 0 {
			s.OldestAge = max(o.opts.Now().Sub(time.Unix(0, a)), 0)
		}
	}
	return s, nil
}

// Pending returns the identities with entries Next can hand out now, and
// how many. Entries of the spill log that wait on disk (and those queued
// after them) are not counted until their segment is loaded, so the
// Drainer does not poll identities that have nothing to send yet; the
// load wakes it.
func (o *Outbox) Pending() map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int64)
	for _, st := range o.per {
		n := st.telemetry + st.reported
		if o.acks != nil {
			n -= int64(o.acks.per[st.name])
		}
		if n > 0 && st.name != "" {
			out[st.name] = n
		}
	}
	if o.mem != nil {
		cut := int64(math.MaxInt64)
		if o.slog != nil {
			cut = o.slog.cutoffLocked()
		}
		for id, l := range o.mem.per {
			// l is in sequence order: the entries before the cutoff.
			if n := sort.Search(len(l), func(i int) bool { return l[i].e.Seq >= cut }); n > 0 {
				out[id] += int64(n)
			}
		}
	}
	return out
}
