package outbox

// Storage: the schema, opening, the writer's hooks, the in-memory depth
// rebuilt from the database, and row decoding.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"

	"github.com/drover-iot/drover/internal/groupcommit"
	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/twin"
)

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
	return "file:" + path + "?_journal_mode=" + journalMode + "&_synchronous=" + s.pragma() + "&_busy_timeout=10000&_txlock=immediate"
}

// journalMode is SQLite's journal mode for DSN. WAL was measured against
// the rollback journals (TRUNCATE, PERSIST) for flash wear: a rollback
// commit writes every page it changes that already existed twice (journal,
// then file) and fsyncs more often, which costs more than WAL's later
// checkpoint copy except at 250 or more identities with the uplink down
// (docs/benchmarks.md, "Journal mode"). A variable so that the wear
// benchmarks can compare modes (DROVER_BENCH_JOURNAL).
var journalMode = "WAL"

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
-- No index on ident alone (earlier versions had outbox_msg_ident): every
-- insert and delete touched one of its leaf pages per identity, which was
-- 40 % of what a spill wrote at 50 devices (BenchmarkWearPaced). A
-- per-identity Next scans the queue from its head instead; rows of the
-- identities are interleaved, so that is about Batch × identities rows per
-- turn (BenchmarkDrain: 19,000 -> 12,500 rows/s at 250 identities, far
-- above what an uplink acknowledges).
DROP INDEX IF EXISTS outbox_msg_ident;
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
	spilled                                                int64 // entries moved from memory to the database
	lostCrash                                              int64 // inMemory found at starts after a crash, summed
}

// identStat is the in-memory depth of one identity.
type identStat struct {
	name      string
	telemetry int64
	reported  int64
	bytes     int64
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

// migrate adds the columns later versions added to outbox_counters.
func migrate(db *sql.DB) error {
	for _, col := range []string{"spilled", "lost_crash"} {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('outbox_counters') WHERE name = ?`, col).Scan(&n); err != nil {
			return fmt.Errorf("migrate outbox counters: %w", err)
		}
		if n == 0 {
			if _, err := db.Exec(`ALTER TABLE outbox_counters ADD COLUMN ` + col + ` INTEGER NOT NULL DEFAULT 0`); err != nil {
				return fmt.Errorf("migrate outbox counters: add %s: %w", col, err)
			}
		}
	}
	return nil
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
	if err := migrate(wr); err != nil {
		return nil, err
	}
	o := &Outbox{
		rd: rd, wr: wr, ownDB: own, opts: opts, log: opts.Logger,
		notify: make(chan struct{}, 1),
	}
	if err := o.reload(); err != nil {
		return nil, err
	}
	if err := o.countLost(); err != nil {
		return nil, err
	}
	var minInterval time.Duration
	switch opts.Durability {
	case Batched:
		minInterval = opts.BatchEvery
	case Spill:
		// What is left to write (spills, acks of spilled rows while a
		// backlog drains) is not waited for by producers: gathering it
		// into fewer commits writes fewer pages.
		minInterval = spillCommitEvery
		o.mem = newMemQueue()
		if err := wr.QueryRow(`SELECT COALESCE(MAX(seq), 0) FROM outbox_msg`).Scan(&o.mem.seq); err != nil {
			return nil, fmt.Errorf("read outbox sequence: %w", err)
		}
		if opts.SpillDir != "" {
			if err := o.openSpillLog(opts.SpillDir); err != nil {
				return nil, err
			}
		}
	}
	o.w = groupcommit.Start(wr, groupcommit.Options{
		MinInterval:     minInterval,
		ErrClosed:       ErrClosed,
		AlwaysSavepoint: true, // a refused accept still commits its counted rejection
		Every:           opts.SweepEvery,
		Tick:            o.sweepTx,
		TickName:        "sweep outbox",
		BeforeBatch:     o.beginBatch,
		OnError:         o.opFailed,
		BeforeCommit:    o.saveCounters,
		AfterBatch:      o.endBatch,
	})
	if o.mem != nil {
		ctx, cancel := context.WithCancel(context.Background())
		o.stopSpill, o.spillDone = cancel, make(chan struct{})
		go o.spiller(ctx)
	}
	if o.slog != nil {
		o.keepStop, o.keepDone = make(chan struct{}), make(chan struct{})
		go o.spillKeeper(o.keepStop, o.keepDone)
	} else if opts.SpillDir != "" {
		if err := o.importSpillLog(opts.SpillDir); err != nil {
			o.w.Close()
			return nil, err
		}
	}
	if opts.Durability != EveryMessage {
		// every_message keeps its promise of one commit per operation,
		// acks included; the other modes defer the deletes of acked rows.
		o.acks = newAckDefer()
		ctx, cancel := context.WithCancel(context.Background())
		o.acks.stop = cancel
		go o.ackFlusher(ctx)
	}
	return o, nil
}

// Close stops the writer after the operations already queued and, for
// Open, closes the database.
func (o *Outbox) Close() error {
	o.closeOnce.Do(func() {
		if o.mem != nil {
			o.stopSpill()
			<-o.spillDone
			if o.slog != nil {
				close(o.keepStop)
				<-o.keepDone
			}
			// Stop path: whatever memory holds goes to the disk.
			if err := o.spillAll(context.Background()); err != nil {
				o.log.Error("spill outbox at close", "error", err)
			}
			if o.slog != nil {
				if err := o.maintainLog(true); err != nil {
					o.log.Error("write outbox removals at close", "error", err)
				}
				_ = o.slog.log.Close()
				if err := o.flushCounters(context.Background()); err != nil {
					o.log.Error("save outbox counters at close", "error", err)
				}
			}
		}
		if o.acks != nil {
			o.acks.stop()
			<-o.acks.done
			// A clean stop sends nothing twice: the deferred deletes commit now.
			if err := o.flushAcks(context.Background()); err != nil {
				o.log.Error("delete acked outbox entries at close", "error", err)
			}
		}
		if o.held != nil {
			_ = o.held.Close()
		}
	})
	o.w.Close()
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
	err = o.wr.QueryRow(`SELECT accepted, merged, acked, rejected, dropped_full, dropped_ttl, dropped_corrupt, dropped_rejected, last_accepted, spilled, lost_crash FROM outbox_counters WHERE one = 1`).
		Scan(&c.accepted, &c.merged, &c.acked, &c.rejected, &c.droppedFull, &c.droppedTTL, &c.droppedCorrupt, &c.droppedReject, &c.lastAccepted, &c.spilled, &c.lostCrash)
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
	return o.w.Do(ctx, name, fn)
}

// beginBatch remembers the counters, to know after the operations whether
// they changed.
func (o *Outbox) beginBatch() {
	o.mu.Lock()
	o.before = o.c
	o.mu.Unlock()
}

// opFailed marks memory for a reload after a failed operation, which may
// have changed it before failing; a refused accept changed only counters.
func (o *Outbox) opFailed(err error) {
	if !errors.Is(err, ErrFull) && !errors.Is(err, ErrTooLarge) {
		o.markDirty()
	}
}

// saveCounters writes the counters into the batch's transaction when its
// operations changed them.
func (o *Outbox) saveCounters(tx *sql.Tx) {
	o.mu.Lock()
	c, changed := o.c, o.c != o.before
	o.mu.Unlock()
	if !changed {
		return
	}
	if err := storeCounters(tx, c); err != nil {
		o.log.Warn("save outbox counters", "error", err)
	}
}

// flushCounters commits the counters now: under the spill log nothing else
// may write to the database for a minute (the sweep).
func (o *Outbox) flushCounters(ctx context.Context) error {
	return o.write(ctx, "save outbox counters", func(tx *sql.Tx) error {
		o.mu.Lock()
		c := o.c
		o.mu.Unlock()
		return storeCounters(tx, c)
	})
}

// storeCounters writes c into the counters row.
func storeCounters(tx *sql.Tx, c counters) error {
	_, err := tx.Exec(`UPDATE outbox_counters SET accepted=?, merged=?, acked=?, rejected=?, dropped_full=?, dropped_ttl=?, dropped_corrupt=?, dropped_rejected=?, last_accepted=?, spilled=?, lost_crash=? WHERE one = 1`,
		c.accepted, c.merged, c.acked, c.rejected, c.droppedFull, c.droppedTTL, c.droppedCorrupt, c.droppedReject, c.lastAccepted, c.spilled, c.lostCrash)
	if err != nil {
		return fmt.Errorf("save outbox counters: %w", err)
	}
	return nil
}

// endBatch reloads memory when the batch failed to commit or left it in
// doubt, and wakes the Drainer when something was accepted.
func (o *Outbox) endBatch(err error) {
	if err != nil {
		o.markDirty()
	}
	o.reloadIfDirty()
	o.mu.Lock()
	accepted := o.c.accepted != o.before.accepted
	o.mu.Unlock()
	if err == nil && accepted {
		select {
		case o.notify <- struct{}{}:
		default:
		}
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
