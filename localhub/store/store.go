// Package store keeps localhub's state in SQLite (WAL): shared access
// policies, the identity registry with each device's twin, and a bounded
// telemetry log.
//
// Every write goes through one writer goroutine that groups concurrent
// operations into a single transaction (group commit) with a savepoint per
// operation, so one failing operation never undoes another and callers get
// their answer only after the commit. Reads use a separate connection pool.
package store

import (
	"context"
	"database/sql"
	_ "embed" // schema.sql
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"
)

//go:embed schema.sql
var schema string

// Errors returned by the store. Compare with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrPrecondition = errors.New("precondition failed: etag does not match")
	ErrClosed       = errors.New("store closed")
)

// Store is localhub's database.
type Store struct {
	rd  *sql.DB
	wr  *sql.DB
	log *slog.Logger
	now func() time.Time

	ops     chan *op
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.RWMutex // write holds it shared while queueing; Close exclusively to set closed
	closed  bool

	// MaxTelemetry bounds the telemetry table (rows); older rows are pruned.
	maxTelemetry int64
	telSince     int64 // inserts since the last prune (writer goroutine only)
	commitObs    func(time.Duration)
}

type op struct {
	fn   func(tx *sql.Tx) error
	err  chan error
	name string
}

// Options configure Open.
type Options struct {
	Logger       *slog.Logger
	Now          func() time.Time
	MaxTelemetry int64 // default 100000 rows
	// CommitObserved, when set, is told how long each write transaction's
	// commit took (the metrics' SQLite commit latency). It runs on the writer
	// goroutine and must be quick.
	CommitObserved func(time.Duration)
}

// Open opens (creating when needed) the database at path and starts its writer.
// Close stops it.
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxTelemetry <= 0 {
		opts.MaxTelemetry = 100000
	}
	dsn := "file:" + path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_foreign_keys=on"
	wr, err := sql.Open("sqlite3", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	wr.SetMaxOpenConns(1)
	if _, err := wr.Exec(schema); err != nil {
		wr.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	rd, err := sql.Open("sqlite3", dsn+"&mode=ro")
	if err != nil {
		wr.Close()
		return nil, fmt.Errorf("open database %s for reading: %w", path, err)
	}
	rd.SetMaxOpenConns(8)
	s := &Store{
		rd: rd, wr: wr, log: opts.Logger, now: opts.Now,
		ops: make(chan *op, 1024), stop: make(chan struct{}), done: make(chan struct{}),
		maxTelemetry: opts.MaxTelemetry, commitObs: opts.CommitObserved,
	}
	go s.writer()
	return s, nil
}

// Close stops the writer (after the operations already queued) and closes the database.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.closeMu.Unlock()
	<-s.done
	err1 := s.rd.Close()
	err2 := s.wr.Close()
	return errors.Join(err1, err2)
}

// write runs fn in the writer's current transaction and waits for the commit.
func (s *Store) write(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	o := &op{fn: fn, err: make(chan error, 1), name: name}
	// Queueing under the shared lock means Close cannot slip in between: every
	// queued operation is in the channel before stop closes, and the writer
	// drains the channel before it exits.
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	// Once queued the operation will run; wait for its result even if ctx ends,
	// so a caller never reports failure for something that was committed.
	return <-o.err
}

const maxBatch = 256

func (s *Store) writer() {
	defer close(s.done)
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.stop:
			// Drain what is queued, then stop.
			for {
				select {
				case o := <-s.ops:
					s.runBatch([]*op{o})
				default:
					return
				}
			}
		}
		batch := []*op{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.runBatch(batch)
	}
}

func (s *Store) runBatch(batch []*op) {
	tx, err := s.wr.Begin()
	if err != nil {
		for _, o := range batch {
			o.err <- fmt.Errorf("%s: begin transaction: %w", o.name, err)
		}
		return
	}
	results := make([]error, len(batch))
	for i, o := range batch {
		if len(batch) == 1 {
			results[i] = o.fn(tx)
			continue
		}
		if _, err := tx.Exec("SAVEPOINT op"); err != nil {
			results[i] = fmt.Errorf("%s: savepoint: %w", o.name, err)
			continue
		}
		if err := o.fn(tx); err != nil {
			results[i] = err
			if _, rerr := tx.Exec("ROLLBACK TO op"); rerr != nil {
				results[i] = errors.Join(err, rerr)
			}
		}
		if _, err := tx.Exec("RELEASE op"); err != nil && results[i] == nil {
			results[i] = fmt.Errorf("%s: release savepoint: %w", o.name, err)
		}
	}
	if len(batch) == 1 && results[0] != nil {
		_ = tx.Rollback()
		batch[0].err <- results[0]
		return
	}
	s.pruneTelemetry(tx)
	start := time.Now()
	err = tx.Commit()
	if s.commitObs != nil {
		s.commitObs(time.Since(start))
	}
	if err != nil {
		for _, o := range batch {
			o.err <- fmt.Errorf("%s: commit: %w", o.name, err)
		}
		return
	}
	for i, o := range batch {
		o.err <- results[i]
	}
}

// pruneTelemetry keeps the telemetry table bounded; it runs inside a batch
// every few hundred inserts so its cost is spread out.
func (s *Store) pruneTelemetry(tx *sql.Tx) {
	if s.telSince < 500 {
		return
	}
	s.telSince = 0
	if _, err := tx.Exec(`DELETE FROM telemetry WHERE seq <= (SELECT MAX(seq) FROM telemetry) - ?`, s.maxTelemetry); err != nil {
		s.log.Warn("prune telemetry", "error", err)
	}
}

// GetMeta reads a meta value ("" and ErrNotFound when unset).
func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.rd.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read meta %s: %w", key, err)
	}
	return v, nil
}

// SetMeta writes a meta value.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	return s.write(ctx, "set meta", func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
}

// ReadDB exposes the read pool to packages that compile their own SQL (the query engine).
func (s *Store) ReadDB() *sql.DB { return s.rd }

const timeLayout = "2006-01-02T15:04:05.0000000Z"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}
