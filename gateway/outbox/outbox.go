package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"

	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/twin"
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
}

// Receipt returns the receipt that acknowledges e.
func (e Entry) Receipt() Receipt { return Receipt{Seq: e.Seq, ID: e.ID} }

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
	Depth     int64         // queued rows
	Telemetry int64         // queued telemetry rows
	Reported  int64         // queued reported rows
	Bytes     int64         // accounted bytes queued (see MaxBytes)
	MaxBytes  int64         // the configured bound
	OldestAge time.Duration // age of the oldest queued row (0 when empty)

	Accepted int64 // messages accepted (each merged patch counts)
	Merged   int64 // reported patches merged into a queued row
	Acked    int64 // rows removed by Ack
	Rejected int64 // Accept calls refused with ErrFull (RejectNew)

	DroppedFull     int64 // rows evicted to make room (DropOldest)
	DroppedTTL      int64 // telemetry rows expired
	DroppedCorrupt  int64 // unreadable rows removed (bad kind, properties or body)
	DroppedRejected int64 // rows the hub refused for good (a Sender returned ErrUndeliverable)
}

// Sync is SQLite's synchronous setting for connections Open makes.
type Sync uint8

// Sync settings. See the package doc for what each survives.
const (
	SyncFull   Sync = iota // fsync the WAL on every commit: survives power loss
	SyncNormal             // fsync at checkpoints only: survives process crashes
)

func (s Sync) pragma() string {
	if s == SyncNormal {
		return "NORMAL"
	}
	return "FULL"
}

// DSN returns the go-sqlite3 data source name for the gateway database at
// path: WAL, the given synchronous mode, a busy timeout, and IMMEDIATE
// transactions (needed when several packages write to the same file).
func DSN(path string, s Sync) string {
	return "file:" + path + "?_journal_mode=WAL&_synchronous=" + s.pragma() + "&_busy_timeout=10000&_txlock=immediate"
}

// Options configure Open and New. Zero values take the defaults.
type Options struct {
	MaxBytes   int64         // bound on accounted bytes; default 256 MiB
	TTL        time.Duration // telemetry lifetime from accept; default 24h; negative disables
	OnFull     Policy        // default DropOldest
	SweepEvery time.Duration // period of the TTL sweep; default 1 min
	Sync       Sync          // synchronous mode for Open; default SyncFull
	Logger     *slog.Logger
	Now        func() time.Time
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
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// rowOverhead is added to every row's accounted size: the integers, the
// index entry and SQLite's record header, roughly.
const rowOverhead = 48

const schema = `
CREATE TABLE IF NOT EXISTS outbox_ident (
	id   INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS outbox_msg (
	seq      INTEGER PRIMARY KEY,
	ident    INTEGER NOT NULL,
	kind     INTEGER NOT NULL,
	accepted INTEGER NOT NULL,
	produced INTEGER NOT NULL,
	size     INTEGER NOT NULL,
	id       TEXT NOT NULL,
	props    TEXT NOT NULL,
	body     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_msg_ident ON outbox_msg(ident);
CREATE INDEX IF NOT EXISTS outbox_msg_reported ON outbox_msg(ident) WHERE kind = 2;
CREATE TABLE IF NOT EXISTS outbox_counters (
	one              INTEGER PRIMARY KEY CHECK (one = 1),
	accepted         INTEGER NOT NULL DEFAULT 0,
	merged           INTEGER NOT NULL DEFAULT 0,
	acked            INTEGER NOT NULL DEFAULT 0,
	rejected         INTEGER NOT NULL DEFAULT 0,
	dropped_full     INTEGER NOT NULL DEFAULT 0,
	dropped_ttl      INTEGER NOT NULL DEFAULT 0,
	dropped_corrupt  INTEGER NOT NULL DEFAULT 0,
	dropped_rejected INTEGER NOT NULL DEFAULT 0,
	last_accepted    INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO outbox_counters(one) VALUES (1);
`

// counters mirror the outbox_counters row.
type counters struct {
	accepted, merged, acked, rejected                      int64
	droppedFull, droppedTTL, droppedCorrupt, droppedReject int64
	lastAccepted                                           int64 // unix ns; accept times never go below it
}

// identStat is the in-memory depth of one identity.
type identStat struct {
	name      string
	telemetry int64
	reported  int64
	bytes     int64
}

// Outbox is the store-and-forward queue. Its methods are safe for concurrent use.
type Outbox struct {
	rd, wr  *sql.DB
	ownDB   bool
	opts    Options
	log     *slog.Logger
	ops     chan *op
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.RWMutex // held for reading while queueing an op, for writing by Close
	closed  bool
	notify  chan struct{} // poked after commits that accepted something

	mu     sync.Mutex // guards the fields below (written by the writer goroutine)
	idents map[string]int64
	per    map[int64]*identStat
	bytes  int64
	c      counters
	dirty  bool // memory may disagree with the database: reload after the batch
}

type op struct {
	fn   func(tx *sql.Tx) error
	err  chan error
	name string
}

// Open opens (creating when needed) the database at path with its own
// connections (DSN with opts.Sync) and starts the writer. Close stops it
// and closes the connections.
func Open(path string, opts Options) (*Outbox, error) {
	dsn := DSN(path, opts.Sync)
	wr, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open outbox database %s: %w", path, err)
	}
	wr.SetMaxOpenConns(1)
	// Keep the WAL file from staying large after a burst.
	if _, err := wr.Exec(`PRAGMA journal_size_limit = 16777216`); err != nil {
		wr.Close()
		return nil, fmt.Errorf("open outbox database %s: set journal size limit: %w", path, err)
	}
	rd, err := sql.Open("sqlite3", dsn+"&mode=ro")
	if err != nil {
		wr.Close()
		return nil, fmt.Errorf("open outbox database %s for reading: %w", path, err)
	}
	rd.SetMaxOpenConns(4)
	o, err := start(wr, rd, true, opts)
	if err != nil {
		wr.Close()
		rd.Close()
		return nil, fmt.Errorf("open outbox database %s: %w", path, err)
	}
	return o, nil
}

// New uses db, which the caller owns and closes after Close; open it with
// DSN so that transactions are IMMEDIATE and WAL is on. New creates the
// outbox's tables when missing and starts the writer.
func New(db *sql.DB, opts Options) (*Outbox, error) {
	return start(db, db, false, opts)
}

func start(wr, rd *sql.DB, own bool, opts Options) (*Outbox, error) {
	opts = opts.withDefaults()
	if _, err := wr.Exec(schema); err != nil {
		return nil, fmt.Errorf("create outbox tables: %w", err)
	}
	o := &Outbox{
		rd: rd, wr: wr, ownDB: own, opts: opts, log: opts.Logger,
		ops: make(chan *op, 1024), stop: make(chan struct{}), done: make(chan struct{}),
		notify: make(chan struct{}, 1),
	}
	if err := o.reload(); err != nil {
		return nil, err
	}
	go o.writer()
	return o, nil
}

// Close stops the writer after the operations already queued and, for
// Open, closes the database.
func (o *Outbox) Close() error {
	o.closeMu.Lock()
	if !o.closed {
		o.closed = true
		close(o.stop)
	}
	o.closeMu.Unlock()
	<-o.done
	if !o.ownDB {
		return nil
	}
	return errors.Join(o.rd.Close(), o.wr.Close())
}

// reload rebuilds the in-memory state from the committed database.
func (o *Outbox) reload() error {
	idents := map[string]int64{}
	per := map[int64]*identStat{}
	rows, err := o.wr.Query(`SELECT id, name FROM outbox_ident`)
	if err != nil {
		return fmt.Errorf("load outbox identities: %w", err)
	}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			rows.Close()
			return fmt.Errorf("load outbox identities: %w", err)
		}
		idents[name] = id
		per[id] = &identStat{name: name}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load outbox identities: %w", err)
	}
	var total int64
	rows, err = o.wr.Query(`SELECT ident, kind, COUNT(*), COALESCE(SUM(size), 0) FROM outbox_msg GROUP BY ident, kind`)
	if err != nil {
		return fmt.Errorf("load outbox depth: %w", err)
	}
	for rows.Next() {
		var identV, kindV, sizeV any
		var n int64
		if err := rows.Scan(&identV, &kindV, &n, &sizeV); err != nil {
			rows.Close()
			return fmt.Errorf("load outbox depth: %w", err)
		}
		// Tolerate garbage: a row of an unknown identity or kind still counts
		// towards the depth until Next drops it as corrupt.
		id, _ := identV.(int64)
		kind, _ := kindV.(int64)
		size := asInt(sizeV)
		st := per[id]
		if st == nil {
			st = &identStat{} // rows of an unknown identity: Next drops them as corrupt
			per[id] = st
		}
		if Kind(kind) == Reported {
			st.reported += n
		} else {
			st.telemetry += n
		}
		st.bytes += size
		total += size
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load outbox depth: %w", err)
	}
	var c counters
	err = o.wr.QueryRow(`SELECT accepted, merged, acked, rejected, dropped_full, dropped_ttl, dropped_corrupt, dropped_rejected, last_accepted FROM outbox_counters WHERE one = 1`).
		Scan(&c.accepted, &c.merged, &c.acked, &c.rejected, &c.droppedFull, &c.droppedTTL, &c.droppedCorrupt, &c.droppedReject, &c.lastAccepted)
	if err != nil {
		return fmt.Errorf("load outbox counters: %w", err)
	}
	o.mu.Lock()
	o.idents, o.per, o.bytes, o.c, o.dirty = idents, per, total, c, false
	o.mu.Unlock()
	return nil
}

// write runs fn in the writer's current transaction and waits for the commit.
func (o *Outbox) write(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	w := &op{fn: fn, err: make(chan error, 1), name: name}
	// Queue under the read lock: Close cannot stop the writer between the
	// check and the send, so a queued op is always run.
	o.closeMu.RLock()
	if o.closed {
		o.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case o.ops <- w:
		o.closeMu.RUnlock()
	case <-ctx.Done():
		o.closeMu.RUnlock()
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	// Once queued the operation runs; wait for its result even if ctx ends,
	// so a caller never reports failure for something that was committed.
	return <-w.err
}

const maxBatch = 256

func (o *Outbox) writer() {
	defer close(o.done)
	sweep := time.NewTicker(o.opts.SweepEvery)
	defer sweep.Stop()
	for {
		var first *op
		select {
		case first = <-o.ops:
		case <-sweep.C:
			first = &op{fn: o.sweepTx, err: make(chan error, 1), name: "sweep outbox"}
		case <-o.stop:
			for {
				select {
				case w := <-o.ops:
					o.runBatch([]*op{w})
				default:
					return
				}
			}
		}
		batch := []*op{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case w := <-o.ops:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		o.runBatch(batch)
	}
}

func (o *Outbox) runBatch(batch []*op) {
	o.mu.Lock()
	before := o.c
	o.mu.Unlock()
	tx, err := o.wr.Begin()
	if err != nil {
		for _, w := range batch {
			w.err <- fmt.Errorf("%s: begin transaction: %w", w.name, err)
		}
		return
	}
	results := make([]error, len(batch))
	for i, w := range batch {
		if _, err := tx.Exec("SAVEPOINT op"); err != nil {
			results[i] = fmt.Errorf("%s: savepoint: %w", w.name, err)
			o.markDirty()
			continue
		}
		if err := w.fn(tx); err != nil {
			results[i] = err
			if !errors.Is(err, ErrFull) && !errors.Is(err, ErrTooLarge) {
				o.markDirty() // the operation may have changed memory before failing
			}
			if _, rerr := tx.Exec("ROLLBACK TO op"); rerr != nil {
				results[i] = errors.Join(err, rerr)
			}
		}
		if _, err := tx.Exec("RELEASE op"); err != nil && results[i] == nil {
			results[i] = fmt.Errorf("%s: release savepoint: %w", w.name, err)
			o.markDirty()
		}
	}
	o.mu.Lock()
	c := o.c
	o.mu.Unlock()
	if c != before {
		if _, err := tx.Exec(`UPDATE outbox_counters SET accepted=?, merged=?, acked=?, rejected=?, dropped_full=?, dropped_ttl=?, dropped_corrupt=?, dropped_rejected=?, last_accepted=? WHERE one = 1`,
			c.accepted, c.merged, c.acked, c.rejected, c.droppedFull, c.droppedTTL, c.droppedCorrupt, c.droppedReject, c.lastAccepted); err != nil {
			o.log.Warn("save outbox counters", "error", err)
		}
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		for _, w := range batch {
			w.err <- fmt.Errorf("%s: commit: %w", w.name, err)
		}
		o.markDirty()
		o.reloadIfDirty()
		return
	}
	o.reloadIfDirty()
	if c.accepted != before.accepted {
		select {
		case o.notify <- struct{}{}:
		default:
		}
	}
	for i, w := range batch {
		w.err <- results[i]
	}
}

func (o *Outbox) markDirty() {
	o.mu.Lock()
	o.dirty = true
	o.mu.Unlock()
}

func (o *Outbox) reloadIfDirty() {
	o.mu.Lock()
	dirty := o.dirty
	o.mu.Unlock()
	if !dirty {
		return
	}
	if err := o.reload(); err != nil {
		o.log.Error("reload outbox state", "error", err)
	}
}

// prepared is a validated message ready for the writer.
type prepared struct {
	Message
	props string
	patch map[string]any // Reported only
	size  int64
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
	if err := o.makeRoom(tx, p.size); err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, ?, ?, ?, ?, ?, ?, ?)`,
		ident, int64(p.Kind), now, produced, p.size, p.ID, p.props, p.Body); err != nil {
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
	o.c.accepted++
	o.c.lastAccepted = now
	o.mu.Unlock()
	return nil
}

// identID returns the row id of an identity, creating it when new.
func (o *Outbox) identID(tx *sql.Tx, name string) (int64, error) {
	o.mu.Lock()
	id, ok := o.idents[name]
	o.mu.Unlock()
	if ok {
		return id, nil
	}
	res, err := tx.Exec(`INSERT INTO outbox_ident(name) VALUES(?)`, name)
	if err != nil {
		return 0, fmt.Errorf("register outbox identity %s: %w", name, err)
	}
	id, err = res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("register outbox identity %s: %w", name, err)
	}
	o.mu.Lock()
	o.idents[name] = id
	o.per[id] = &identStat{name: name}
	o.dirty = true // the insert may still roll back; reload after the batch
	o.mu.Unlock()
	return id, nil
}

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
		for over > 0 {
			rows, err := tx.Query(`SELECT seq, size FROM outbox_msg WHERE kind = ? AND seq <> ? ORDER BY seq LIMIT 64`, int64(kind), keep)
			if err != nil {
				return fmt.Errorf("evict from outbox: %w", err)
			}
			var seqs []int64
			for rows.Next() && over > 0 {
				var seq, size int64
				if err := rows.Scan(&seq, &size); err != nil {
					continue
				}
				seqs = append(seqs, seq)
				over -= max(size, 1)
			}
			rows.Close()
			if len(seqs) == 0 {
				break
			}
			if err := o.removeRows(tx, seqs, dropFull); err != nil {
				return err
			}
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

// Ack removes the entries the receipts name, once the hub acknowledged them.
// A receipt whose row was merged into since it was handed out (its id
// changed) or is gone already removes nothing.
func (o *Outbox) Ack(ctx context.Context, rs ...Receipt) error {
	return o.remove(ctx, rs, dropAcked)
}

func (o *Outbox) remove(ctx context.Context, rs []Receipt, reason dropReason) error {
	if len(rs) == 0 {
		return nil
	}
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

// Next returns up to limit queued entries in queue order, for one identity
// or for all when identity is "". Entries stay queued until acked; calling
// Next again returns them again. Unreadable rows are removed and counted
// (DroppedCorrupt), expired telemetry is swept; neither is returned.
func (o *Outbox) Next(ctx context.Context, identity string, limit int) ([]Entry, error) {
	return o.next(ctx, identity, 0, limit)
}

// next is Next restricted to one kind when kind is not 0.
func (o *Outbox) next(ctx context.Context, identity string, kind Kind, limit int) ([]Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
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
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit)
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
			return out, nil
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

// decode turns a row into an Entry, refusing anything a writer of this
// package would not have written.
func (o *Outbox) decode(seq int64, ident, kind, accepted, produced, size, id, props, body any) (Entry, bool) {
	e := Entry{Seq: seq}
	if _, ok := size.(int64); !ok {
		o.log.Warn("drop corrupt outbox row", "seq", seq, "error", "unexpected column types")
		return e, false
	}
	identN, ok1 := ident.(int64)
	kindN, ok2 := kind.(int64)
	acc, ok3 := accepted.(int64)
	prod, ok4 := produced.(int64)
	idS, ok5 := asString(id)
	propS, ok6 := asString(props)
	b, ok7 := asBytes(body)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || idS == "" {
		o.log.Warn("drop corrupt outbox row", "seq", seq, "error", "unexpected column types")
		return e, false
	}
	o.mu.Lock()
	st := o.per[identN]
	o.mu.Unlock()
	if st == nil || st.name == "" {
		o.log.Warn("drop corrupt outbox row", "seq", seq, "error", "unknown identity")
		return e, false
	}
	e.Identity, e.ID, e.Body = st.name, idS, b
	e.AcceptedAt, e.ProducedAt = time.Unix(0, acc), time.Unix(0, prod)
	switch Kind(kindN) {
	case Telemetry:
		ps, err := iothubtopic.DecodeProperties(propS)
		if err != nil {
			o.log.Warn("drop corrupt outbox row", "seq", seq, "device", st.name, "error", err)
			return e, false
		}
		e.Kind, e.Props = Telemetry, ps
	case Reported:
		if _, err := twin.DecodeObject(b); err != nil {
			o.log.Warn("drop corrupt outbox row", "seq", seq, "device", st.name, "error", err)
			return e, false
		}
		e.Kind = Reported
	default:
		o.log.Warn("drop corrupt outbox row", "seq", seq, "device", st.name, "error", "unknown kind")
		return e, false
	}
	return e, true
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return 0
}

func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

func asBytes(v any) ([]byte, bool) {
	switch x := v.(type) {
	case []byte:
		return x, true
	case string:
		return []byte(x), true
	}
	return nil, false
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
	o.mu.Unlock()
	s.Depth = s.Telemetry + s.Reported
	if s.Depth > 0 {
		var acc any
		err := o.rd.QueryRowContext(ctx, `SELECT accepted FROM outbox_msg ORDER BY seq LIMIT 1`).Scan(&acc)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return s, fmt.Errorf("read outbox age: %w", err)
		}
		if a, ok := acc.(int64); ok {
			s.OldestAge = max(o.opts.Now().Sub(time.Unix(0, a)), 0)
		}
	}
	return s, nil
}

// Pending returns the identities with queued entries and their depth.
func (o *Outbox) Pending() map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int64)
	for _, st := range o.per {
		if n := st.telemetry + st.reported; n > 0 && st.name != "" {
			out[st.name] = n
		}
	}
	return out
}
