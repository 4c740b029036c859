// Package twincache keeps, in the gateway's SQLite database (WAL), the last
// full twin of every identity the gateway speaks for and the desired
// $version it last applied, so that the gateway works offline and re-syncs
// exactly once after a reconnect.
//
// Conflict rule (issue 4, after Greengrass' shadow sync):
//
//   - desired — the hub wins. After every (re)connect the daemon fetches the
//     twin; Missed compares it with what was applied and says whether to
//     apply the fetched desired document. Nothing the gateway cached
//     overrides the hub's desired properties.
//   - reported — the gateway wins: it knows what the device really is.
//     MergeReported keeps the cache equal to everything the gateway reported
//     (sent or still queued in the outbox), and Diff gives the patch that
//     brings the hub's reported section back to the cache after a reconnect
//     (for example when the hub lost or reset the twin).
//
// Tables are prefixed "twincache_", so the cache can share a database file
// with the outbox and the job queue.
package twincache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"

	"github.com/drover-iot/drover/internal/relaxedtx"
	"github.com/drover-iot/drover/internal/twin"
)

// Errors returned by the cache. Compare with errors.Is.
var (
	// ErrNotFound is returned by Get for an identity with no cached twin.
	ErrNotFound = errors.New("twin not cached")
	// ErrCorrupt is returned by Get for a row that cannot be decoded.
	ErrCorrupt = errors.New("cached twin unreadable")
)

// Twin is one identity's cached twin.
type Twin struct {
	Identity       string
	Desired        map[string]any // without $version / $metadata
	Reported       map[string]any // without $version / $metadata
	DesiredVersion int64          // $version of Desired as last fetched or patched
	Applied        int64          // desired $version last applied to the device
	UpdatedAt      time.Time
}

// Options configure Open and New.
type Options struct {
	// SyncNormal makes Open use synchronous=NORMAL (survives process crashes,
	// may lose the last commits on power loss) instead of FULL.
	SyncNormal bool
	// FlushEvery, when positive, holds MergeReported patches in memory and
	// writes all of them every FlushEvery (and at Flush and Close) in one
	// transaction, instead of one commit per patch: fewer disk writes, and
	// a crash loses at most the last FlushEvery of cached reported changes
	// (after a restart the bridges report every point again). Reads see
	// the held patches.
	FlushEvery time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Cache is the twin cache. Its methods are safe for concurrent use.
type Cache struct {
	db  *sql.DB
	own bool
	log *slog.Logger
	now func() time.Time

	flushEvery time.Duration
	mu         sync.Mutex                  // guards pending
	pending    map[string][]map[string]any // reported patches not written yet, in order, by identity
	stop       chan struct{}               // closed by Close: the flusher writes what is held and returns
	done       chan struct{}               // closed when the flusher returned
	closeOnce  sync.Once
}

const schema = `
CREATE TABLE IF NOT EXISTS twincache_twin (
	identity        TEXT PRIMARY KEY,
	desired         BLOB NOT NULL,
	reported        BLOB NOT NULL,
	desired_version INTEGER NOT NULL DEFAULT 0,
	applied         INTEGER NOT NULL DEFAULT 0,
	updated         INTEGER NOT NULL DEFAULT 0
);
`

// Open opens (creating when needed) the database at path with its own
// connections. Close closes them.
func Open(path string, opts Options) (*Cache, error) {
	sync := "FULL"
	if opts.SyncNormal {
		sync = "NORMAL"
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous="+sync+"&_busy_timeout=10000&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open twin cache %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	c, err := New(db, opts)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open twin cache %s: %w", path, err)
	}
	c.own = true
	return c, nil
}

// New uses db, which the caller owns; open it with IMMEDIATE transactions
// and WAL (outbox.DSN gives such a name). New creates the cache's table when
// missing.
func New(db *sql.DB, opts Options) (*Cache, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if _, err := db.Exec(schema); err != nil {
		return nil, fmt.Errorf("create twin cache table: %w", err)
	}
	c := &Cache{db: db, log: opts.Logger, now: opts.Now, flushEvery: opts.FlushEvery}
	if c.flushEvery > 0 {
		c.pending = map[string][]map[string]any{}
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.flusher()
	}
	return c, nil
}

// Close writes the held reported patches and closes the database when
// Open opened it.
func (c *Cache) Close() error {
	var err error
	if c.stop != nil {
		c.closeOnce.Do(func() {
			close(c.stop)
			<-c.done
			err = c.Flush(context.Background())
		})
	}
	if !c.own {
		return err
	}
	return errors.Join(err, c.db.Close())
}

// flusher writes the held patches every FlushEvery until Close.
func (c *Cache) flusher() {
	defer close(c.done)
	t := time.NewTicker(c.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if err := c.Flush(context.Background()); err != nil {
				c.log.Warn("flush twin cache", "error", err)
			}
		}
	}
}

// Flush writes the reported patches held in memory, all identities in one
// transaction. On failure they stay held for the next Flush.
func (c *Cache) Flush(ctx context.Context) error {
	c.mu.Lock()
	held := c.pending
	if len(held) == 0 {
		c.mu.Unlock()
		return nil
	}
	c.pending = map[string][]map[string]any{}
	c.mu.Unlock()
	// synchronous=NORMAL: a power cut may roll this commit back, which the
	// cache already allows for (a crash loses the held patches anyway, and
	// the bridges report every point again after a restart).
	err := relaxedtx.Run(ctx, c.db, func(tx *sql.Tx) error {
		for id, patches := range held {
			if err := c.updateTx(ctx, tx, id, "reported", func(doc map[string]any) {
				for _, p := range patches {
					apply(doc, p)
				}
			}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.mu.Lock()
		for id, patches := range held {
			c.pending[id] = append(patches, c.pending[id]...)
		}
		c.mu.Unlock()
		return fmt.Errorf("flush twin cache: %w", err)
	}
	return nil
}

// held returns the patches held for id (nil when none or not holding).
func (c *Cache) held(id string) []map[string]any {
	if c.pending == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pending[id])
}

// forget drops the patches held for id: what is written next replaces them.
func (c *Cache) forget(id string) {
	if c.pending == nil {
		return
	}
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// withHeld applies the patches held for t's identity to t.Reported.
func (c *Cache) withHeld(t Twin) Twin {
	ps := c.held(t.Identity)
	if len(ps) == 0 {
		return t
	}
	if t.Reported == nil {
		t.Reported = map[string]any{}
	}
	for _, p := range ps {
		apply(t.Reported, p)
	}
	return t
}

// Put stores a full twin (after a twin GET): desired and reported replace
// what was cached and desiredVersion becomes the cached desired $version.
// The applied version is kept. $version and $metadata members are dropped.
func (c *Cache) Put(ctx context.Context, id string, desired, reported map[string]any, desiredVersion int64) error {
	des, err := encode(desired)
	if err != nil {
		return fmt.Errorf("cache twin of %s: desired: %w", id, err)
	}
	rep, err := encode(reported)
	if err != nil {
		return fmt.Errorf("cache twin of %s: reported: %w", id, err)
	}
	c.forget(id) // reported replaces what is held
	_, err = c.db.ExecContext(ctx, `INSERT INTO twincache_twin(identity, desired, reported, desired_version, updated) VALUES(?, ?, ?, ?, ?)
		ON CONFLICT(identity) DO UPDATE SET desired = excluded.desired, reported = excluded.reported,
			desired_version = excluded.desired_version, updated = excluded.updated`,
		id, des, rep, desiredVersion, c.now().UnixNano())
	if err != nil {
		return fmt.Errorf("cache twin of %s: %w", id, err)
	}
	return nil
}

// Get returns the cached twin of id, ErrNotFound when there is none and
// ErrCorrupt when the row cannot be decoded.
func (c *Cache) Get(ctx context.Context, id string) (Twin, error) {
	row := c.db.QueryRowContext(ctx, `SELECT identity, desired, reported, desired_version, applied, updated FROM twincache_twin WHERE identity = ?`, id)
	t, err := scanTwin(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		if len(c.held(id)) > 0 {
			return c.withHeld(Twin{Identity: id, Desired: map[string]any{}}), nil
		}
		return Twin{}, fmt.Errorf("get cached twin of %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Twin{}, fmt.Errorf("get cached twin of %s: %w", id, err)
	}
	return c.withHeld(t), nil
}

// All returns every cached twin, by identity. Unreadable rows are skipped
// (and logged), never fatal.
func (c *Cache) All(ctx context.Context) ([]Twin, error) {
	if err := c.Flush(ctx); err != nil {
		return nil, fmt.Errorf("list cached twins: %w", err)
	}
	rows, err := c.db.QueryContext(ctx, `SELECT identity, desired, reported, desired_version, applied, updated FROM twincache_twin ORDER BY identity`)
	if err != nil {
		return nil, fmt.Errorf("list cached twins: %w", err)
	}
	defer rows.Close()
	var out []Twin
	for rows.Next() {
		t, err := scanTwin(rows.Scan)
		if err != nil {
			c.log.Warn("skip unreadable cached twin", "device", t.Identity, "error", err)
			continue
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list cached twins: %w", err)
	}
	return out, nil
}

// SetApplied records that the desired document at version was applied to
// the device. Call it only after the apply succeeded.
func (c *Cache) SetApplied(ctx context.Context, id string, version int64) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO twincache_twin(identity, desired, reported, applied, updated) VALUES(?, '{}', '{}', ?, ?)
		ON CONFLICT(identity) DO UPDATE SET applied = excluded.applied, updated = excluded.updated`, id, version, c.now().UnixNano())
	if err != nil {
		return fmt.Errorf("record applied desired version %d of %s: %w", version, id, err)
	}
	return nil
}

// Applied returns the desired $version last applied to id (0 when none).
func (c *Cache) Applied(ctx context.Context, id string) (int64, error) {
	var v any
	err := c.db.QueryRowContext(ctx, `SELECT applied FROM twincache_twin WHERE identity = ?`, id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read applied desired version of %s: %w", id, err)
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("read applied desired version of %s: %w", id, ErrCorrupt)
	}
	return n, nil
}

// MergeReported applies a reported-properties merge patch (RFC 7396: null
// deletes) to the cached reported section of id, creating the entry when
// needed. The gateway wins for reported: an unreadable cached section is
// replaced by the patch (nulls removed).
func (c *Cache) MergeReported(ctx context.Context, id string, patch map[string]any) error {
	if c.pending != nil {
		c.mu.Lock()
		c.pending[id] = append(c.pending[id], patch)
		c.mu.Unlock()
		return nil
	}
	return c.update(ctx, id, "reported", func(doc map[string]any) { apply(doc, patch) }, nil)
}

// MergeDesired applies a desired-properties patch notification of the
// given $version to the cached desired section. A patch at or below the
// cached version is ignored (it is already in a fetched twin) and reported
// as false.
func (c *Cache) MergeDesired(ctx context.Context, id string, patch map[string]any, version int64) (bool, error) {
	changed := false
	err := c.update(ctx, id, "desired", func(doc map[string]any) { apply(doc, patch) }, func(cached int64) (int64, bool) {
		if version <= cached {
			return cached, false
		}
		changed = true
		return version, true
	})
	return changed, err
}

// Delete forgets id's cached twin.
func (c *Cache) Delete(ctx context.Context, id string) error {
	c.forget(id)
	if _, err := c.db.ExecContext(ctx, `DELETE FROM twincache_twin WHERE identity = ?`, id); err != nil {
		return fmt.Errorf("forget cached twin of %s: %w", id, err)
	}
	return nil
}

// update reads, changes and writes one section of id's twin in one
// transaction. version, when not nil, decides on the desired version.
func (c *Cache) update(ctx context.Context, id, section string, change func(map[string]any), version func(int64) (int64, bool)) error {
	return c.inTx(ctx, func(tx *sql.Tx) error { return c.updateTx(ctx, tx, id, section, change, version) })
}

// inTx runs fn in a transaction and commits it.
func (c *Cache) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update twin cache: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update twin cache: commit: %w", err)
	}
	return nil
}

// updateTx is update inside tx.
func (c *Cache) updateTx(ctx context.Context, tx *sql.Tx, id, section string, change func(map[string]any), version func(int64) (int64, bool)) error {
	var raw, verV any
	err := tx.QueryRowContext(ctx, `SELECT `+section+`, desired_version FROM twincache_twin WHERE identity = ?`, id).Scan(&raw, &verV)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("update cached %s of %s: %w", section, id, err)
	}
	doc := map[string]any{}
	if raw != nil {
		if d, derr := decode(raw); derr == nil {
			doc = d
		} else {
			c.log.Warn("replace unreadable cached twin section", "device", id, "section", section, "error", derr)
		}
	}
	cur, _ := verV.(int64)
	next := cur
	if version != nil {
		var ok bool
		if next, ok = version(cur); !ok {
			return nil
		}
	}
	change(doc)
	b, err := encode(doc)
	if err != nil {
		return fmt.Errorf("update cached %s of %s: %w", section, id, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO twincache_twin(identity, desired, reported, desired_version, updated) VALUES(?, '{}', '{}', ?, ?)
		ON CONFLICT(identity) DO NOTHING`, id, next, c.now().UnixNano())
	if err == nil {
		_, err = tx.ExecContext(ctx, `UPDATE twincache_twin SET `+section+` = ?, desired_version = ?, updated = ? WHERE identity = ?`, b, next, c.now().UnixNano(), id)
	}
	if err != nil {
		return fmt.Errorf("update cached %s of %s: %w", section, id, err)
	}
	return nil
}

func scanTwin(scan func(...any) error) (Twin, error) {
	var id, des, rep, ver, applied, updated any
	if err := scan(&id, &des, &rep, &ver, &applied, &updated); err != nil {
		return Twin{}, err
	}
	t := Twin{}
	name, ok1 := id.(string)
	v, ok2 := ver.(int64)
	a, ok3 := applied.(int64)
	u, ok4 := updated.(int64)
	t.Identity = name
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return t, fmt.Errorf("%w: unexpected column types", ErrCorrupt)
	}
	var err error
	if t.Desired, err = decode(des); err != nil {
		return t, fmt.Errorf("%w: desired: %w", ErrCorrupt, err)
	}
	if t.Reported, err = decode(rep); err != nil {
		return t, fmt.Errorf("%w: reported: %w", ErrCorrupt, err)
	}
	t.DesiredVersion, t.Applied, t.UpdatedAt = v, a, time.Unix(0, u)
	return t, nil
}

func decode(v any) (map[string]any, error) {
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		return nil, errors.New("not a JSON column")
	}
	return twin.DecodeObject(b)
}

// encode writes a section without its $version and $metadata members.
func encode(doc map[string]any) ([]byte, error) {
	if doc == nil {
		return []byte("{}"), nil
	}
	return twin.AppendJSON(nil, strip(doc))
}

// strip returns doc without the members IoT Hub adds ($version, $metadata).
func strip(doc map[string]any) map[string]any {
	if _, v := doc[twin.KeyVersion]; !v {
		if _, m := doc[twin.KeyMetadata]; !m {
			return doc
		}
	}
	out := make(map[string]any, len(doc))
	for k, v := range doc {
		if k != twin.KeyVersion && k != twin.KeyMetadata {
			out[k] = v
		}
	}
	return out
}

// apply applies an RFC 7396 merge patch to doc in place: null deletes,
// objects merge, anything else replaces.
func apply(doc, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(doc, k)
			continue
		}
		pm, ok := v.(map[string]any)
		if !ok {
			doc[k] = v
			continue
		}
		dm, ok := doc[k].(map[string]any)
		if !ok {
			dm = map[string]any{}
			doc[k] = dm
		}
		apply(dm, pm)
	}
}
