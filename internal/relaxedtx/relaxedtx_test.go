package relaxedtx

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "x.db")+"?_journal_mode=WAL&_synchronous=FULL&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func level(t *testing.T, db *sql.DB) int {
	t.Helper()
	var l int
	if err := db.QueryRow(`PRAGMA synchronous`).Scan(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRun: the transaction runs at NORMAL, commits, and the shared
// connection is back at FULL afterwards; an error rolls back.
func TestRun(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	var inside int
	err := Run(ctx, db, func(tx *sql.Tx) error {
		if err := tx.QueryRow(`PRAGMA synchronous`).Scan(&inside); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO t VALUES (1)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != 1 {
		t.Errorf("synchronous inside = %d, want 1 (NORMAL)", inside)
	}
	if l := level(t, db); l != 2 {
		t.Errorf("synchronous after = %d, want 2 (FULL) restored", l)
	}
	boom := errors.New("boom")
	err = Run(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO t VALUES (2)`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows = %d (%v), want 1 (the failed one rolled back)", n, err)
	}
	if l := level(t, db); l != 2 {
		t.Errorf("synchronous after a failure = %d, want 2", l)
	}
}
