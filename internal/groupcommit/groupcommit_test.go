package groupcommit

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "g.db")+"?_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var errBoom = errors.New("boom")

// TestBatch checks that concurrent operations share transactions, that a
// failing one is rolled back alone, and that every caller gets its own result.
func TestBatch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		savepoint bool
	}{{"lone op without savepoint", false}, {"always savepoint", true}} {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t)
			var mu sync.Mutex
			commits := 0
			w := Start(db, Options{AlwaysSavepoint: tc.savepoint, AfterBatch: func(err error) {
				if err != nil {
					t.Errorf("commit: %v", err)
				}
				mu.Lock()
				commits++
				mu.Unlock()
			}})
			defer w.Close()
			const n = 200
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					errs[i] = w.Do(t.Context(), "insert", func(tx *sql.Tx) error {
						if _, err := tx.Exec(`INSERT INTO t VALUES (?)`, string(rune('a'+i%26))+string(rune('0'+i/26))); err != nil {
							return err
						}
						if i%10 == 0 {
							return errBoom // rolled back alone
						}
						return nil
					})
				})
			}
			wg.Wait()
			for i, err := range errs {
				if want := i%10 == 0; want != errors.Is(err, errBoom) || (!want && err != nil) {
					t.Fatalf("op %d: %v", i, err)
				}
			}
			if got := count(t, db); got != n-n/10 {
				t.Fatalf("%d rows, want %d", got, n-n/10)
			}
			mu.Lock()
			defer mu.Unlock()
			if commits == 0 || commits > n {
				t.Fatalf("%d commits for %d operations", commits, n)
			}
		})
	}
}

// TestCloseRunsQueued checks that an operation Do accepted before Close is
// committed (every nil answer is a row), and that Do then reports the
// configured sentinel.
func TestCloseRunsQueued(t *testing.T) {
	db := openDB(t)
	sentinel := errors.New("my store closed")
	release := make(chan struct{})
	w := Start(db, Options{ErrClosed: sentinel})
	// Hold the writer in a first operation so the next ones queue behind it.
	started, held := make(chan struct{}), make(chan error, 1)
	go func() {
		held <- w.Do(context.Background(), "hold", func(*sql.Tx) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	const n = 5
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = w.Do(context.Background(), "insert", func(tx *sql.Tx) error {
				_, err := tx.Exec(`INSERT INTO t VALUES (?)`, string(rune('a'+i)))
				return err
			})
		})
	}
	close(release)
	w.Close()
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatalf("hold: %v", err)
	}
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, sentinel):
			t.Fatalf("insert %d: %v, want nil or the closed sentinel", i, err)
		}
	}
	if got := count(t, db); got != ok {
		t.Fatalf("%d rows, %d inserts answered nil", got, ok)
	}
	if err := w.Do(context.Background(), "late", func(*sql.Tx) error { return nil }); !errors.Is(err, sentinel) {
		t.Fatalf("Do after Close: %v, want %v", err, sentinel)
	}
}

// TestMinInterval checks that commits are spaced and that what is queued
// meanwhile shares one commit.
func TestMinInterval(t *testing.T) {
	db := openDB(t)
	var mu sync.Mutex
	var commits []time.Time
	const interval = 50 * time.Millisecond
	w := Start(db, Options{MinInterval: interval, AfterBatch: func(error) {
		mu.Lock()
		commits = append(commits, time.Now())
		mu.Unlock()
	}})
	defer w.Close()
	if err := w.Do(t.Context(), "first", func(*sql.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := w.Do(t.Context(), "next", func(*sql.Tx) error { return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	// Twenty operations queued at once after the first commit: the interval
	// gathers them, so far fewer than twenty commits follow.
	if len(commits) >= 10 {
		t.Fatalf("%d commits for 21 operations", len(commits))
	}
	for i := 1; i < len(commits); i++ {
		if gap := commits[i].Sub(commits[i-1]); gap < interval-time.Millisecond {
			t.Fatalf("commit %d only %v after the previous one, interval %v", i, gap, interval)
		}
	}
}

// TestTick checks the periodic operation runs in the writer.
func TestTick(t *testing.T) {
	db := openDB(t)
	ticked := make(chan struct{}, 1)
	w := Start(db, Options{Every: time.Millisecond, TickName: "tick", Tick: func(tx *sql.Tx) error {
		select {
		case ticked <- struct{}{}:
		default:
		}
		return nil
	}})
	defer w.Close()
	<-ticked
}
