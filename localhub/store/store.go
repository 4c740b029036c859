// Package store keeps localhub's state in SQLite (WAL): shared access
// policies, the identity registry with each device's twin, and a bounded
// telemetry log.
//
// Every write goes through one writer goroutine (internal/groupcommit) that
// groups concurrent operations into a single transaction with a savepoint
// per operation, so one failing operation never undoes another and callers
// get their answer only after the commit. Reads use a separate connection pool.
package store

import (
	"context"
	"database/sql"
	_ "embed" // schema.sql
	"errors"
	"fmt"
	"log/slog"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"

	"github.com/drover-iot/drover/internal/groupcommit"
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

	w *groupcommit.Writer // the one writer goroutine

	// MaxTelemetry bounds the telemetry table (rows); older rows are pruned.
	maxTelemetry int64
	telSince     int64 // inserts since the last prune (writer goroutine only)
	commitObs    func(time.Duration)
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
	s := &Store{rd: rd, wr: wr, log: opts.Logger, now: opts.Now, maxTelemetry: opts.MaxTelemetry, commitObs: opts.CommitObserved}
	s.w = groupcommit.Start(wr, groupcommit.Options{ErrClosed: ErrClosed, BeforeCommit: s.pruneTelemetry, CommitObserved: s.commitObs})
	return s, nil
}

// Close stops the writer (after the operations already queued) and closes the database.
func (s *Store) Close() error {
	s.w.Close()
	err1 := s.rd.Close()
	err2 := s.wr.Close()
	return errors.Join(err1, err2)
}

// write runs fn in the writer's current transaction and waits for the commit.
func (s *Store) write(ctx context.Context, name string, fn func(tx *sql.Tx) error) error {
	return s.w.Do(ctx, name, fn)
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
