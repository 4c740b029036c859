// Package relaxedtx runs a SQLite transaction with synchronous=NORMAL on a
// database whose connections use a stricter setting (the gateway's shared
// database is synchronous=FULL for the outbox and the job states).
//
// In WAL mode, NORMAL commits without an fsync: the commit survives a crash
// of the process but the last NORMAL commits may roll back on a power cut
// (until the next FULL commit or checkpoint syncs the WAL, which covers
// them too: it is one file). Each fsync makes an SD card or eMMC program a
// partly filled flash page, so sparing it where a lost last commit is
// harmless spares wear that /proc write_bytes does not even show. Callers
// say in a comment why their commit may be lost.
package relaxedtx

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// Run runs fn in a transaction on one connection of db with
// synchronous=NORMAL, commits, and sets the connection's level back. When
// the level cannot be set back, the connection is discarded, so no other
// writer ever commits at NORMAL by accident. fn's error rolls back.
func Run(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("relaxed transaction: %w", err)
	}
	var level int
	if err := conn.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&level); err != nil {
		return errors.Join(fmt.Errorf("relaxed transaction: read synchronous: %w", err), conn.Close())
	}
	const normal = 1 // SQLite's number for NORMAL; OFF is 0, FULL 2, EXTRA 3
	if level > normal {
		if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
			return errors.Join(fmt.Errorf("relaxed transaction: set synchronous: %w", err), conn.Close())
		}
	}
	defer func() {
		if level > normal {
			if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA synchronous = %d`, level)); rerr != nil {
				// ErrBadConn from Raw makes database/sql close the connection.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				err = errors.Join(err, fmt.Errorf("relaxed transaction: restore synchronous: %w", rerr))
			}
		}
		err = errors.Join(err, conn.Close())
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("relaxed transaction: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("relaxed transaction: commit: %w", err)
	}
	return nil
}
