package outbox

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
)

func TestAcceptRefusesGarbage(t *testing.T) {
	o, _ := openTemp(t, Options{})
	cases := []struct {
		name string
		m    Message
	}{
		{"no identity", Message{Kind: Telemetry, Body: []byte("x")}},
		{"zero kind", Message{Identity: "dev", Body: []byte("x")}},
		{"unknown kind", Message{Identity: "dev", Kind: 9, Body: []byte("x")}},
		{"reported not json", rep("dev", `{"a":`)},
		{"reported array", rep("dev", `[1,2]`)},
		{"reported null", rep("dev", `null`)},
		{"reported empty", rep("dev", ``)},
		{"reported duplicate key", rep("dev", `{"a":1,"a":2}`)},
		{"reported trailing data", rep("dev", `{"a":1} {}`)},
		{"reported invalid utf-8", rep("dev", "{\"a\":\"\xff\"}")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := o.Accept(context.Background(), c.m); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Accept(%+v) = %v, want ErrInvalid", c.m, err)
			}
		})
	}
	if s := stats(t, o); s.Depth != 0 || s.Accepted != 0 {
		t.Fatalf("garbage was queued: %+v", s)
	}
	// Telemetry bodies are opaque: empty and binary are fine.
	accept(t, o, tel("dev", ""))
	accept(t, o, tel("dev", "\x00\xff"))
}

// TestCorruptRows writes rows this package would never write straight into
// the database and checks they are skipped, counted and removed, and that
// opening and accepting keep working.
func TestCorruptRows(t *testing.T) {
	o, path := openTemp(t, Options{})
	accept(t, o, tel("dev", "good-1"))
	accept(t, o, rep("bad-rep", `{"a":1}`))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", DSN(path, SyncNormal))
	if err != nil {
		t.Fatal(err)
	}
	var dev int64
	if err := db.QueryRow(`SELECT id FROM outbox_ident WHERE name = 'dev'`).Scan(&dev); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		sql  string
		args []any
	}{
		{"unknown kind", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 9, 1, 1, 60, 'k', '', x'00')`, []any{dev}},
		{"kind as text", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 'telemetry', 1, 1, 60, 'k2', '', x'00')`, []any{dev}},
		{"bad property bag", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 1, 1, 1, 60, 'p', '%zz=1', x'00')`, []any{dev}},
		{"accepted as text", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 1, 'yesterday', 1, 60, 'a', '', x'00')`, []any{dev}},
		{"size as text", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 1, 1, 1, 'big', 's', '', x'00')`, []any{dev}},
		{"reported not json", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 2, 1, 1, 60, 'r', '', '{"a":')`, []any{dev}},
		{"empty id", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 1, 1, 1, 60, '', '', x'00')`, []any{dev}},
		{"unknown identity", `INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(999, 1, 1, 1, 60, 'u', '', x'00')`, nil},
		{"corrupt queued reported row", `UPDATE outbox_msg SET body = 'garbage' WHERE kind = 2`, nil},
	}
	// A well-formed but ancient row behind live ones: expired, not corrupt.
	if _, err := db.Exec(`INSERT INTO outbox_msg(ident, kind, accepted, produced, size, id, props, body) VALUES(?, 1, 1, 1, 60, 'old', '', x'00')`, dev); err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		if _, err := db.Exec(b.sql, b.args...); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
	}
	db.Close()

	o2 := openAt(t, path, Options{})
	accept(t, o2, tel("dev", "good-2"))
	accept(t, o2, rep("bad-rep", `{"b":2}`)) // the corrupt row it would merge into is replaced
	got := next(t, o2, "", 100)
	if want := []string{"good-1", "good-2", `{"b":2}`}; !slices.Equal(bodies(got), want) {
		t.Fatalf("after garbage: %v, want %v", bodies(got), want)
	}
	s := stats(t, o2)
	if s.DroppedCorrupt != int64(len(bad)) || s.DroppedTTL != 1 || s.Depth != 3 {
		t.Fatalf("stats %+v: want %d corrupt rows dropped and 3 left", s, len(bad))
	}
	if err := o2.Ack(context.Background(), receipts(got)...); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, o2); s.Depth != 0 || s.Bytes != 0 {
		t.Fatalf("after acking everything: %+v", s)
	}
}
