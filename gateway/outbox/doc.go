// Package outbox is the gateway's store-and-forward queue: telemetry and
// reported-property patches for every identity the gateway speaks for, kept
// in SQLite (WAL) until the hub acknowledged them. Under Spill durability
// messages are held in memory and spilled, when the hub is slow or away,
// to an append-only spill log (Options.SpillDir, spillog.go) or, without
// one, to SQLite.
//
// # Durability
//
// Accept returns only after the message is committed; that return is the
// producer's acknowledgement. All writes go through one writer goroutine that
// groups concurrent operations into one transaction (group commit) with a
// savepoint per operation: internal/groupcommit, which localhub's store
// uses too. With Sync=SyncFull
// (the default for Open) a commit survives power loss; with SyncNormal it
// survives a crash of the process (kill -9) but the last commits may roll
// back on power loss (SQLite WAL semantics). An entry leaves the outbox only
// through Ack (after the PUBACK or the twin reply), a counted drop, or TTL
// expiry, so delivery is at least once: entries handed out but not acked
// before a crash are handed out again after the restart, with the same
// message id so the hub side can count the duplicates. Under Spill and
// Batched durability the deletes of acknowledged telemetry rows are
// deferred and committed together (ackdefer.go): an acknowledged row is
// hidden at once, and a crash before its delete hands it out again, so a
// crash adds at most Options.AckRows plus one Ack call per concurrent
// caller to the duplicates; a clean Close deletes them.
//
// # Ordering and merging
//
// Every row has a sequence number; Next returns rows in sequence order, so
// telemetry keeps FIFO order per identity. A reported patch for an identity
// is merged into that identity's latest queued reported row (see Compose:
// later values win per key, nulls are kept as deletes, key order is
// irrelevant) and the row is updated in place: it keeps its place in the
// queue and its accept time, and takes the new message's id and produced
// time. Because the id changes, an Ack for the version that was handed out
// before the merge removes nothing; the merged row is sent again, which is
// correct because a merge patch applied twice has the effect of applying it
// once. When two patches cannot be composed into one (RFC 7396 limitation,
// see Compose) a second row is queued for the identity.
//
// # Bounds
//
// The outbox is bounded by bytes (Options.MaxBytes, counting body, encoded
// properties and id of every row plus a fixed per-row overhead) and by age
// (Options.TTL, measured from the accept time, which the outbox assigns and
// keeps non-decreasing, so it is immune to producers' clocks). TTL applies
// to telemetry only: a reported row holds the latest state of an identity,
// is at most one row per identity in practice, and expiring it would leave
// the twin wrong. When a message does not fit, Options.OnFull decides:
// DropOldest evicts the oldest telemetry first (and reported rows only when
// no telemetry is left), RejectNew refuses the new message with ErrFull.
// Every drop is counted by reason in Stats and the counters are stored in
// the database, so they survive restarts. Expired telemetry is removed by a
// periodic sweep in the writer and whenever Next meets it.
//
// # Sharing the database
//
// Tables are prefixed "outbox_", so the outbox, the twin cache and the job
// queue can share one database file: Open gives the outbox its own
// connections, New uses a *sql.DB the caller owns (open it with DSN).
package outbox
