package outbox

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is an injectable clock for TTL tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openAt opens an outbox at path and closes it when the test ends.
func openAt(t testing.TB, path string, opts Options) *Outbox {
	t.Helper()
	if opts.Sync == SyncFull {
		opts.Sync = SyncNormal // tests do not need power-loss durability; the crash test sets its own
	}
	o, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open outbox %s: %v", path, err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

func openTemp(t testing.TB, opts Options) (*Outbox, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.db")
	return openAt(t, path, opts), path
}

func accept(t testing.TB, o *Outbox, m Message) string {
	t.Helper()
	id, err := o.Accept(context.Background(), m)
	if err != nil {
		t.Fatalf("accept %+v: %v", m, err)
	}
	return id
}

func tel(identity, body string) Message {
	return Message{Identity: identity, Kind: Telemetry, Body: []byte(body)}
}

func rep(identity, body string) Message {
	return Message{Identity: identity, Kind: Reported, Body: []byte(body)}
}

func next(t testing.TB, o *Outbox, identity string, limit int) []Entry {
	t.Helper()
	es, err := o.Next(context.Background(), identity, limit)
	if err != nil {
		t.Fatalf("next %q: %v", identity, err)
	}
	return es
}

func stats(t testing.TB, o *Outbox) Stats {
	t.Helper()
	s, err := o.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return s
}

func receipts(es []Entry) []Receipt {
	out := make([]Receipt, len(es))
	for i, e := range es {
		out[i] = e.Receipt()
	}
	return out
}

func bodies(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = string(e.Body)
	}
	return out
}
