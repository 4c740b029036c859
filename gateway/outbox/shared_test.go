package outbox

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"

	"github.com/drover-iot/drover/gateway/twincache"
)

// TestSharedDatabase runs the outbox and the twin cache on one *sql.DB and
// one file, writing concurrently, as the daemon does.
func TestSharedDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	db, err := sql.Open("sqlite3", DSN(path, SyncNormal))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o, err := New(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := twincache.New(db, twincache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := o.Accept(ctx, rep("dev", `{"points":{"t":1}}`)); err != nil {
					t.Error(err)
					return
				}
				if err := c.MergeReported(ctx, "dev", map[string]any{"g": g, "i": i}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, openAt(t, path, Options{})); s.Accepted != 200 || s.Reported != 1 {
		t.Fatalf("outbox stats %+v", s)
	}
	if tw, err := c.Get(ctx, "dev"); err != nil || tw.Reported["i"] == nil {
		t.Fatalf("twin cache: %+v, %v", tw, err)
	}
}
