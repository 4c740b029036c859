package jobs

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// schema creates the queue's tables in a database shared with other
// gateway packages; every name starts with jobs_. Times are Unix
// nanoseconds (UTC), 0 for none.
const schema = `
CREATE TABLE IF NOT EXISTS jobs_queue (
	seq              INTEGER PRIMARY KEY AUTOINCREMENT,
	id               TEXT NOT NULL UNIQUE,
	key              TEXT NOT NULL DEFAULT '',
	kind             TEXT NOT NULL,
	device           TEXT NOT NULL,
	bus              TEXT NOT NULL DEFAULT '',
	payload          TEXT NOT NULL DEFAULT 'null',
	source           TEXT NOT NULL DEFAULT '',
	disruptive       INTEGER NOT NULL DEFAULT 0,
	force            INTEGER NOT NULL DEFAULT 0,
	state            TEXT NOT NULL,
	reason           TEXT NOT NULL DEFAULT '',
	attempts         INTEGER NOT NULL DEFAULT 0,
	max_attempts     INTEGER NOT NULL DEFAULT 1,
	verify_attempts  INTEGER NOT NULL DEFAULT 0,
	resumes          INTEGER NOT NULL DEFAULT 0,
	progress         INTEGER NOT NULL DEFAULT 0,
	message          TEXT NOT NULL DEFAULT '',
	result           TEXT NOT NULL DEFAULT '',
	error            TEXT NOT NULL DEFAULT '',
	cancel_requested INTEGER NOT NULL DEFAULT 0,
	not_before       INTEGER NOT NULL DEFAULT 0,
	deadline         INTEGER NOT NULL DEFAULT 0,
	created          INTEGER NOT NULL DEFAULT 0,
	started          INTEGER NOT NULL DEFAULT 0,
	ended            INTEGER NOT NULL DEFAULT 0,
	updated          INTEGER NOT NULL DEFAULT 0,
	version          INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_queue_key ON jobs_queue(key) WHERE key != '';
CREATE INDEX IF NOT EXISTS jobs_queue_state ON jobs_queue(state, seq);
CREATE INDEX IF NOT EXISTS jobs_queue_device ON jobs_queue(device, seq);
`

const columns = `id, key, kind, device, bus, payload, source, disruptive, force, state, reason,
	attempts, max_attempts, verify_attempts, resumes, progress, message, result, error, cancel_requested,
	not_before, deadline, created, started, ended, updated, version`

// selectColumns reads columns with every integer cast, so a row written by
// something else with text in an integer column still scans (as 0).
const selectColumns = `CAST(id AS TEXT), CAST(key AS TEXT), CAST(kind AS TEXT), CAST(device AS TEXT), CAST(bus AS TEXT),
	CAST(payload AS TEXT), CAST(source AS TEXT), CAST(disruptive AS INTEGER), CAST(force AS INTEGER),
	CAST(state AS TEXT), CAST(reason AS TEXT), CAST(attempts AS INTEGER), CAST(max_attempts AS INTEGER),
	CAST(verify_attempts AS INTEGER), CAST(resumes AS INTEGER), CAST(progress AS INTEGER), CAST(message AS TEXT),
	CAST(result AS TEXT), CAST(error AS TEXT), CAST(cancel_requested AS INTEGER), CAST(not_before AS INTEGER),
	CAST(deadline AS INTEGER), CAST(created AS INTEGER), CAST(started AS INTEGER), CAST(ended AS INTEGER),
	CAST(updated AS INTEGER), CAST(version AS INTEGER)`

// pendingStates are the states the scheduler looks at.
const pendingStates = `('queued','waiting','interrupted')`

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n <= 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make job id: %w", err)
	}
	return "j" + hex.EncodeToString(b[:]), nil
}

type scanner interface{ Scan(dest ...any) error }

// scanJob reads one row. Garbage in a row never fails the scan: a value
// that cannot be used marks the job corrupt (it is never executed, and the
// scheduler fails it), so one bad row cannot stop the queue.
func scanJob(sc scanner) (Job, error) {
	var (
		j                                              Job
		key, kind, device, bus, payload, source, state sql.NullString
		reason, message, result, errText, id           sql.NullString
		disruptive, force, cancelReq                   sql.NullInt64
		attempts, maxAttempts, verifyAttempts, resumes sql.NullInt64
		progress                                       sql.NullInt64
		notBefore, deadline, created, started, ended   sql.NullInt64
		updated, version                               sql.NullInt64
	)
	if err := sc.Scan(&id, &key, &kind, &device, &bus, &payload, &source, &disruptive, &force, &state, &reason,
		&attempts, &maxAttempts, &verifyAttempts, &resumes, &progress, &message, &result, &errText, &cancelReq,
		&notBefore, &deadline, &created, &started, &ended, &updated, &version); err != nil {
		return Job{}, err
	}
	j.ID, j.Key, j.Kind, j.Device, j.Bus = id.String, key.String, kind.String, device.String, bus.String
	j.Source, j.State, j.Reason = Source(source.String), State(state.String), Reason(reason.String)
	j.Disruptive, j.Force, j.CancelRequested = disruptive.Int64 != 0, force.Int64 != 0, cancelReq.Int64 != 0
	j.Attempts, j.MaxAttempts = clampInt(attempts.Int64, 0, 1<<30), clampInt(maxAttempts.Int64, 0, MaxAttempts)
	j.verifyAttempts, j.Resumes = clampInt(verifyAttempts.Int64, 0, 1<<30), clampInt(resumes.Int64, 0, 1<<30)
	j.Progress = clampInt(progress.Int64, 0, 100)
	j.Message, j.Error, j.Version = message.String, errText.String, version.Int64
	j.NotBefore, j.Deadline = fromNanos(notBefore.Int64), fromNanos(deadline.Int64)
	j.Created, j.Started, j.Ended, j.Updated = fromNanos(created.Int64), fromNanos(started.Int64), fromNanos(ended.Int64), fromNanos(updated.Int64)
	var bad []string
	if p := strings.TrimSpace(payload.String); p != "" && json.Valid([]byte(p)) {
		j.Payload = json.RawMessage(p)
	} else {
		j.Payload = json.RawMessage("null")
		bad = append(bad, "payload is not valid JSON")
	}
	if r := strings.TrimSpace(result.String); r != "" {
		if json.Valid([]byte(r)) {
			j.Result = json.RawMessage(r)
		} else {
			bad = append(bad, "result is not valid JSON") // only shown; the job's outcome stands
		}
	}
	if j.ID == "" || j.Device == "" {
		bad = append(bad, "no id or device")
	}
	if !builtinKinds[j.Kind] && j.Method() == "" {
		bad = append(bad, fmt.Sprintf("unknown kind %q", j.Kind))
	}
	if j.MaxAttempts < 1 {
		j.MaxAttempts = 1
	}
	if len(bad) > 0 {
		j.corrupt = "stored job is corrupt: " + strings.Join(bad, "; ")
	}
	return j, nil
}

func clampInt(v, lo, hi int64) int {
	return int(min(max(v, lo), hi))
}

// dbGet loads one job.
func dbGet(ctx context.Context, db *sql.DB, id string) (Job, error) {
	j, err := scanJob(db.QueryRowContext(ctx, `SELECT `+selectColumns+` FROM jobs_queue WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Job{}, fmt.Errorf("get job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Job{}, fmt.Errorf("get job %s: %w", id, err)
	}
	return j, nil
}

// dbQuery loads the jobs matching where (with args), in seq order.
func dbQuery(ctx context.Context, db *sql.DB, what, where string, args ...any) ([]Job, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+selectColumns+` FROM jobs_queue `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: read row: %w", what, err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// dbInsert stores a new job.
func dbInsert(ctx context.Context, ex interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, j Job) error {
	_, err := ex.ExecContext(ctx, `INSERT INTO jobs_queue (`+columns+`) VALUES
		(?,?,?,?,?,?,?,?,?,?,?, ?,?,?,?,?,?,?,?,?, ?,?,?,?,?,?,?)`,
		j.ID, j.Key, j.Kind, j.Device, j.Bus, string(j.Payload), string(j.Source), b2i(j.Disruptive), b2i(j.Force),
		string(j.State), string(j.Reason),
		j.Attempts, j.MaxAttempts, j.verifyAttempts, j.Resumes, j.Progress, j.Message, string(j.Result), j.Error, b2i(j.CancelRequested),
		nanos(j.NotBefore), nanos(j.Deadline), nanos(j.Created), nanos(j.Started), nanos(j.Ended), nanos(j.Updated), j.Version)
	if err != nil {
		return fmt.Errorf("insert job %s: %w", j.ID, err)
	}
	return nil
}
