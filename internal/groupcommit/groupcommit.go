// Package groupcommit is the one writer of a SQLite database: a goroutine
// that takes the write operations queued by any number of callers, runs
// what is queued together in one transaction (group commit) with a savepoint
// per operation, commits, and only then answers each caller.
//
// A savepoint per operation means one failing operation is rolled back alone
// and never undoes another of the same batch. An answer after the commit
// means a nil error is a promise that the operation is in the database (as
// durable as the connection's synchronous setting makes a commit).
//
// localhub's store and the gateway's outbox both write through a Writer.
package groupcommit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is returned by Do after Close, unless Options.ErrClosed names
// the caller's own sentinel.
var ErrClosed = errors.New("writer closed")

// Func is one write operation; it runs inside the batch's transaction.
type Func func(tx *sql.Tx) error

// Options configure Start. Zero values take the defaults.
type Options struct {
	// MaxBatch bounds the operations in one transaction; default 256.
	MaxBatch int
	// Queue is the number of operations that can wait for the writer
	// before Do blocks; default 1024.
	Queue int
	// MinInterval spaces commits: after a commit the writer waits until
	// MinInterval has passed before it starts the next batch, collecting
	// what is queued meanwhile. 0 commits as soon as something is queued.
	MinInterval time.Duration
	// AlwaysSavepoint runs a batch of one operation in a savepoint too, and
	// commits the batch when that operation fails (what BeforeCommit wrote
	// is kept). Without it a lone operation runs without a savepoint and
	// its failure rolls the whole transaction back.
	AlwaysSavepoint bool
	// ErrClosed is what Do returns after Close; default ErrClosed.
	ErrClosed error

	// Every and Tick: when both are set, Tick runs as an operation of its
	// own every Every (the outbox's TTL sweep).
	Every time.Duration
	Tick  Func
	// TickName names the tick operation in errors.
	TickName string

	// BeforeBatch runs in the writer goroutine before a batch's transaction begins.
	BeforeBatch func()
	// OnError is told about every operation that failed (after its rollback).
	OnError func(err error)
	// BeforeCommit runs in the transaction after the batch's operations.
	BeforeCommit func(tx *sql.Tx)
	// CommitObserved, when set, is told how long each commit took (metrics).
	CommitObserved func(time.Duration)
	// AfterBatch runs after the commit (err nil) or a failed commit, before
	// the callers are answered. It is not called when the transaction
	// could not begin or a lone operation rolled back.
	AfterBatch func(err error)
}

// Writer is the single writer goroutine of one database.
type Writer struct {
	db   *sql.DB
	opts Options
	ops  chan *op
	stop chan struct{}
	done chan struct{}

	closeMu sync.RWMutex // held shared while queueing, exclusively by Close
	closed  bool
}

type op struct {
	fn   Func
	err  chan error
	name string
}

// Start starts the writer goroutine on db, which must be opened so that at
// most one connection writes (SetMaxOpenConns(1) or IMMEDIATE transactions).
// Close stops it.
func Start(db *sql.DB, opts Options) *Writer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Queue <= 0 {
		opts.Queue = 1024
	}
	if opts.ErrClosed == nil {
		opts.ErrClosed = ErrClosed
	}
	w := &Writer{
		db: db, opts: opts,
		ops: make(chan *op, opts.Queue), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go w.run()
	return w
}

// Do queues fn, waits until the batch holding it committed and returns fn's
// error (or the commit's). name says what fn does, for errors. When ctx ends
// before fn is queued, Do returns ctx's error; once queued, fn runs and Do
// waits for its result whatever ctx does, so a caller never reports failure
// for something that was committed.
func (w *Writer) Do(ctx context.Context, name string, fn Func) error {
	o := &op{fn: fn, err: make(chan error, 1), name: name}
	// Queue under the shared lock: Close cannot stop the writer between the
	// check and the send, so every queued operation is in the channel before
	// stop closes, and the writer drains the channel before it exits.
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return w.opts.ErrClosed
	}
	select {
	case w.ops <- o:
		w.closeMu.RUnlock()
	case <-ctx.Done():
		w.closeMu.RUnlock()
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	return <-o.err
}

// Close runs the operations already queued, then stops the writer and
// waits for it. It does not close the database.
func (w *Writer) Close() {
	w.closeMu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.closeMu.Unlock()
	<-w.done
}

func (w *Writer) run() {
	defer close(w.done)
	var tick <-chan time.Time
	if w.opts.Every > 0 && w.opts.Tick != nil {
		t := time.NewTicker(w.opts.Every)
		defer t.Stop()
		tick = t.C
	}
	var last time.Time
	for {
		var first *op
		select {
		case first = <-w.ops:
		case <-tick:
			first = &op{fn: w.opts.Tick, err: make(chan error, 1), name: w.opts.TickName}
		case <-w.stop:
			w.drain()
			return
		}
		if w.opts.MinInterval > 0 && !last.IsZero() {
			if wait := w.opts.MinInterval - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-w.stop:
					t.Stop()
				}
			}
		}
		w.runBatch(w.fill([]*op{first}))
		last = time.Now()
	}
}

// drain runs what is queued at Close, in batches, and returns when the
// queue is empty.
func (w *Writer) drain() {
	for {
		batch := w.fill(nil)
		if len(batch) == 0 {
			return
		}
		w.runBatch(batch)
	}
}

// fill adds what is queued to batch, up to MaxBatch, without waiting.
func (w *Writer) fill(batch []*op) []*op {
	for len(batch) < w.opts.MaxBatch {
		select {
		case o := <-w.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

func (w *Writer) runBatch(batch []*op) {
	if w.opts.BeforeBatch != nil {
		w.opts.BeforeBatch()
	}
	tx, err := w.db.Begin()
	if err != nil {
		for _, o := range batch {
			o.err <- fmt.Errorf("%s: begin transaction: %w", o.name, err)
		}
		return
	}
	lone := len(batch) == 1 && !w.opts.AlwaysSavepoint
	results := make([]error, len(batch))
	for i, o := range batch {
		if lone {
			results[i] = o.fn(tx)
			if results[i] != nil {
				w.failed(results[i])
			}
			continue
		}
		if _, err := tx.Exec("SAVEPOINT op"); err != nil {
			results[i] = fmt.Errorf("%s: savepoint: %w", o.name, err)
			w.failed(results[i])
			continue
		}
		if err := o.fn(tx); err != nil {
			results[i] = err
			if _, rerr := tx.Exec("ROLLBACK TO op"); rerr != nil {
				results[i] = errors.Join(err, rerr)
			}
			w.failed(err)
		}
		if _, err := tx.Exec("RELEASE op"); err != nil && results[i] == nil {
			results[i] = fmt.Errorf("%s: release savepoint: %w", o.name, err)
			w.failed(results[i])
		}
	}
	if lone && results[0] != nil {
		_ = tx.Rollback()
		batch[0].err <- results[0]
		return
	}
	if w.opts.BeforeCommit != nil {
		w.opts.BeforeCommit(tx)
	}
	start := time.Now()
	err = tx.Commit()
	if w.opts.CommitObserved != nil {
		w.opts.CommitObserved(time.Since(start))
	}
	if err != nil {
		_ = tx.Rollback()
		if w.opts.AfterBatch != nil {
			w.opts.AfterBatch(err)
		}
		for _, o := range batch {
			o.err <- fmt.Errorf("%s: commit: %w", o.name, err)
		}
		return
	}
	if w.opts.AfterBatch != nil {
		w.opts.AfterBatch(nil)
	}
	for i, o := range batch {
		o.err <- results[i]
	}
}

func (w *Writer) failed(err error) {
	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}
