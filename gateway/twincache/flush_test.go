package twincache

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// onDisk reads the reported section of id through a connection of its own
// ("" when there is no row).
func onDisk(t *testing.T, path, id string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rep string
	err = db.QueryRow(`SELECT CAST(reported AS TEXT) FROM twincache_twin WHERE identity = ?`, id).Scan(&rep)
	if err == sql.ErrNoRows {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestFlushEvery checks that with FlushEvery reported patches are held in
// memory (reads see them, the file does not), written in one go by Flush,
// and written by Close; a Put replaces what is held.
func TestFlushEvery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	c, err := Open(path, Options{FlushEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`{"a":1}`, `{"b":{"c":2}}`, `{"a":null,"d":4}`} {
		if err := c.MergeReported(t.Context(), "dev-1", doc(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	if got := onDisk(t, path, "dev-1"); got != "" {
		t.Fatalf("held patches on disk before a flush: %s", got)
	}
	tw, err := c.Get(t.Context(), "dev-1")
	if err != nil || js(t, tw.Reported) != `{"b":{"c":2},"d":4}` {
		t.Fatalf("Get with held patches = %v, %v", tw.Reported, err)
	}
	if err := c.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(t, path, "dev-1"); got != `{"b":{"c":2},"d":4}` {
		t.Fatalf("after Flush on disk: %s", got)
	}
	if err := c.MergeReported(t.Context(), "dev-1", doc(t, `{"e":5}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.MergeReported(t.Context(), "dev-2", doc(t, `{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(t.Context(), "dev-2", map[string]any{}, doc(t, `{"y":2}`), 3); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(t, path, "dev-1"); got != `{"b":{"c":2},"d":4,"e":5}` {
		t.Fatalf("after Close on disk: %s", got)
	}
	if got := onDisk(t, path, "dev-2"); got != `{"y":2}` {
		t.Fatalf("a Put did not replace the held patch: %s", got)
	}
}
