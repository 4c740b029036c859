package twincache

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/twin"
)

func doc(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := twin.DecodeObject([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func js(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := twin.AppendJSON(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func openAt(t *testing.T, path string) *Cache {
	t.Helper()
	c, err := Open(path, Options{SyncNormal: true, Now: func() time.Time { return time.Unix(1700000000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestPutGetReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gateway.db")
	c := openAt(t, path)
	if _, err := c.Get(ctx, "pump-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get before put: %v, want ErrNotFound", err)
	}
	if err := c.Put(ctx, "pump-1", doc(t, `{"config":{"setpoint":20},"$version":7}`), doc(t, `{"points":{"t":1},"$version":3,"$metadata":{}}`), 7); err != nil {
		t.Fatal(err)
	}
	if err := c.SetApplied(ctx, "pump-1", 6); err != nil {
		t.Fatal(err)
	}
	if err := c.MergeReported(ctx, "pump-1", doc(t, `{"points":{"t":2,"p":null},"connection":{"state":"up"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.MergeReported(ctx, "pump-2", doc(t, `{"points":{"t":9}}`)); err != nil { // creates the entry
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = openAt(t, path)
	got, err := c.Get(ctx, "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if js(t, got.Desired) != `{"config":{"setpoint":20}}` || js(t, got.Reported) != `{"connection":{"state":"up"},"points":{"t":2}}` ||
		got.DesiredVersion != 7 || got.Applied != 6 || got.Identity != "pump-1" {
		t.Fatalf("after reopen: %+v", got)
	}
	if v, err := c.Applied(ctx, "pump-1"); err != nil || v != 6 {
		t.Fatalf("Applied = %d, %v", v, err)
	}
	if v, err := c.Applied(ctx, "nobody"); err != nil || v != 0 {
		t.Fatalf("Applied(unknown) = %d, %v", v, err)
	}
	// A new full twin keeps the applied version.
	if err := c.Put(ctx, "pump-1", doc(t, `{"config":{"setpoint":21}}`), got.Reported, 8); err != nil {
		t.Fatal(err)
	}
	all, err := c.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Identity != "pump-1" || all[0].Applied != 6 || all[0].DesiredVersion != 8 || all[1].Identity != "pump-2" {
		t.Fatalf("All = %+v", all)
	}
}

func TestMergeDesired(t *testing.T) {
	ctx := context.Background()
	c := openAt(t, filepath.Join(t.TempDir(), "gateway.db"))
	if err := c.Put(ctx, "d", doc(t, `{"a":1,"b":{"c":2}}`), nil, 5); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		patch   string
		version int64
		changed bool
		want    string
		wantVer int64
	}{
		{"older patch ignored", `{"a":0}`, 4, false, `{"a":1,"b":{"c":2}}`, 5},
		{"same version ignored", `{"a":0}`, 5, false, `{"a":1,"b":{"c":2}}`, 5},
		{"newer patch merged", `{"a":null,"b":{"d":3}}`, 6, true, `{"b":{"c":2,"d":3}}`, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			changed, err := c.MergeDesired(ctx, "d", doc(t, tc.patch), tc.version)
			if err != nil || changed != tc.changed {
				t.Fatalf("MergeDesired = %v, %v; want %v", changed, err, tc.changed)
			}
			got, err := c.Get(ctx, "d")
			if err != nil {
				t.Fatal(err)
			}
			if js(t, got.Desired) != tc.want || got.DesiredVersion != tc.wantVer {
				t.Fatalf("desired %s v%d, want %s v%d", js(t, got.Desired), got.DesiredVersion, tc.want, tc.wantVer)
			}
		})
	}
}

func TestMissed(t *testing.T) {
	cases := []struct {
		name              string
		cached, fetched   string
		applied, fetchedV int64
		apply             bool
	}{
		{"nothing missed", `{"a":1}`, `{"a":1,"$version":4}`, 4, 4, false},
		{"key order irrelevant", `{"a":1,"b":2}`, `{"b":2,"a":1}`, 4, 4, false},
		{"missed while offline", `{"a":1}`, `{"a":2}`, 4, 6, true},
		{"crash before apply", `{"a":2}`, `{"a":2}`, 5, 6, true},
		{"hub twin re-created", `{"a":1}`, `{"a":1}`, 9, 2, true},
		{"same version, other content", `{"a":1}`, `{"a":3}`, 4, 4, true},
		{"first connect", `{}`, `{"a":1}`, 0, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			apply, d := Missed(doc(t, c.cached), doc(t, c.fetched), c.applied, c.fetchedV)
			if apply != c.apply {
				t.Fatalf("Missed(%s, %s, %d, %d) apply = %v, want %v", c.cached, c.fetched, c.applied, c.fetchedV, apply, c.apply)
			}
			want := doc(t, c.fetched)
			delete(want, "$version")
			if js(t, d) != js(t, want) {
				t.Fatalf("doc = %s, want the fetched document %s", js(t, d), js(t, want))
			}
		})
	}
}

// TestDiff checks on random documents that applying Diff(from, to) to from gives to.
func TestDiff(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		from, to := randDoc(r, 3), randDoc(r, 3)
		p := Diff(from, to)
		got := clone(from)
		apply(got, p)
		if !Equal(got, to) {
			t.Fatalf("case %d: Diff(%s, %s) = %s; applied gives %s", i, js(t, from), js(t, to), js(t, p), js(t, got))
		}
		if Equal(from, to) && len(p) != 0 {
			t.Fatalf("case %d: equal documents, patch %s", i, js(t, p))
		}
	}
	if p := Diff(doc(t, `{"a":{"b":1},"c":2}`), doc(t, `{"a":{"b":1},"c":3}`)); js(t, p) != `{"c":3}` {
		t.Fatalf("minimal diff = %s", js(t, p))
	}
}

func randDoc(r *rand.Rand, depth int) map[string]any {
	m := map[string]any{}
	for range r.IntN(4) {
		k := fmt.Sprint("k", r.IntN(4))
		switch n := r.IntN(10); {
		case n < 3 && depth > 0:
			m[k] = randDoc(r, depth-1)
		case n < 4:
			m[k] = []any{json.Number(fmt.Sprint(r.IntN(3)))}
		default:
			m[k] = json.Number(fmt.Sprint(r.IntN(5)))
		}
	}
	return m
}

func TestGarbageRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gateway.db")
	c := openAt(t, path)
	if err := c.Put(ctx, "good", doc(t, `{"a":1}`), doc(t, `{"b":1}`), 1); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO twincache_twin VALUES('bad-json', '{"a":', '{}', 1, 1, 1)`,
		`INSERT INTO twincache_twin VALUES('bad-array', '[1]', '{}', 1, 1, 1)`,
		`INSERT INTO twincache_twin VALUES('bad-version', '{}', '{}', 'seven', 1, 1)`,
		`INSERT INTO twincache_twin VALUES('bad-reported', '{}', x'ff00', 1, 'x', 1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	for _, id := range []string{"bad-json", "bad-array", "bad-version"} {
		if _, err := c.Get(ctx, id); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get(%s) = %v, want ErrCorrupt", id, err)
		}
	}
	if _, err := c.Applied(ctx, "bad-reported"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Applied(bad-reported) = %v, want ErrCorrupt", err)
	}
	all, err := c.All(ctx)
	if err != nil || len(all) != 1 || all[0].Identity != "good" {
		t.Fatalf("All = %+v, %v; want only the good twin", all, err)
	}
	// Reported: the gateway wins, so an unreadable section is rebuilt from the patch.
	if err := c.MergeReported(ctx, "bad-reported", doc(t, `{"x":1,"y":null}`)); err != nil {
		t.Fatal(err)
	}
	var rep []byte
	db, _ = sql.Open("sqlite3", "file:"+path)
	defer db.Close()
	if err := db.QueryRow(`SELECT reported FROM twincache_twin WHERE identity = 'bad-reported'`).Scan(&rep); err != nil || string(rep) != `{"x":1}` {
		t.Fatalf("rebuilt reported = %s, %v", rep, err)
	}
	if _, err := c.MergeDesired(ctx, "bad-json", doc(t, `{"z":1}`), 2); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "bad-json"); err != nil || js(t, got.Desired) != `{"z":1}` || got.DesiredVersion != 2 {
		t.Fatalf("after desired patch over garbage: %+v, %v", got, err)
	}
	if !reflect.DeepEqual(Diff(nil, nil), map[string]any{}) {
		t.Fatal("Diff(nil, nil) not empty")
	}
}
