package query

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const benchFleet = 100_000

// fillBench inserts n generated twins in one transaction.
func fillBench(b *testing.B, db *sql.DB, n int) {
	b.Helper()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(insertDevice)
	if err != nil {
		b.Fatal(err)
	}
	envs := []string{"prod", "dev", "staging"}
	statuses := []string{`"Success"`, `"Pending"`, `"Error"`, `"Unknown"`, `null`}
	for i := range n {
		tags := fmt.Sprintf(`{"location":{"region":"region-%d","building":"%d"},"env":%q,"floor":%d}`, i%100, i%37, envs[i%3], i%20)
		reported := fmt.Sprintf(`{"status":%s,"battery":%d,"telemetryConfig":{"sendFrequencyInSecs":%d}}`, statuses[i%5], i%101, 30*(i%4))
		if i%7 == 0 {
			reported = fmt.Sprintf(`{"battery":%d}`, i%101)
		}
		desired := fmt.Sprintf(`{"threshold":%d}`, i%50)
		if _, err := stmt.Exec(fmt.Sprintf("dev-%06d", i), "enabled", "", "Disconnected", "0001-01-01T00:00:00Z", i%2,
			1, tags, desired, "{}", 1, reported, "{}", 1, "[]", "", "", "sas"); err != nil {
			b.Fatal(err)
		}
	}
	if err := stmt.Close(); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkQuery runs a tag filter and a GROUP BY over 100,000 twins:
// without any index (the schema's dropped), with the schema's indexes
// (reported status), and with expression indexes built from IndexFor for
// the tag path as well.
func BenchmarkQuery(b *testing.B) {
	db := openDB(b)
	fillBench(b, db, benchFleet)
	queries := []struct{ name, query string }{
		{"tag-filter", `SELECT * FROM devices WHERE tags.location.region = 'region-42'`},
		{"tag-filter-page", `SELECT * FROM devices WHERE tags.location.region = 'region-42'`},
		{"group-by-status", `SELECT properties.reported.status AS status, COUNT() AS n FROM devices GROUP BY properties.reported.status`},
		{"status-filter-count", `SELECT COUNT() AS n FROM devices WHERE properties.reported.status = 'Error'`},
		{"tag-filter-count", `SELECT COUNT() AS n FROM devices WHERE tags.location.region = 'region-42'`},
	}
	run := func(b *testing.B, query string, page bool) {
		q, err := Parse(query)
		if err != nil {
			b.Fatal(err)
		}
		plan, err := Compile(q)
		if err != nil {
			b.Fatal(err)
		}
		sqlText, args := plan.SQL, plan.Args
		if page { // first page as the hub would serve it
			sqlText, args = "SELECT * FROM ("+sqlText+") LIMIT ? OFFSET ?", append(args, 100, 0)
		}
		b.ResetTimer()
		for b.Loop() {
			n := len(runPlan(b, db, sqlText, args))
			if n == 0 {
				b.Fatal("no rows")
			}
		}
	}
	for _, idx := range []string{"no-index", "schema", "index"} {
		switch idx {
		case "no-index":
			for _, ddl := range []string{"DROP INDEX devices_reported_status", "DROP INDEX devices_reported_status_group"} {
				if _, err := db.Exec(ddl); err != nil {
					b.Fatalf("%s: %v", ddl, err)
				}
			}
		case "schema":
			if _, err := db.Exec(schemaSQL(b)); err != nil {
				b.Fatalf("re-apply schema: %v", err)
			}
		case "index":
			region, err := IndexFor("tags.location.region")
			if err != nil {
				b.Fatal(err)
			}
			for _, ddl := range []string{
				"CREATE INDEX IF NOT EXISTS bench_region ON devices(" + region.Filter + ")",
				"ANALYZE",
			} {
				if _, err := db.Exec(ddl); err != nil {
					b.Fatalf("%s: %v", ddl, err)
				}
			}
		}
		for _, q := range queries {
			b.Run(q.name+"/"+idx, func(b *testing.B) { run(b, q.query, q.name == "tag-filter-page") })
		}
	}
}

// schemaSQL is the store's schema (re-applying it restores its indexes).
func schemaSQL(b *testing.B) string {
	b.Helper()
	schema, err := os.ReadFile(filepath.Join("..", "store", "schema.sql"))
	if err != nil {
		b.Fatalf("read schema: %v", err)
	}
	return string(schema)
}
