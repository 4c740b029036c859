package query

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestWorstCaseSize checks that deeply nested queries compile to SQL that
// grows linearly and that SQLite accepts (expression depth < 1000).
func TestWorstCaseSize(t *testing.T) {
	db := openFleet(t)
	nest := func(inner, wrap string, n int) string {
		for range n {
			inner = strings.ReplaceAll(wrap, "X", inner)
		}
		return inner
	}
	cases := map[string]string{
		"boolean equality chain": nest("tags.floor = 1", "(X) = true", 37),
		"IN of IN":               nest("tags.floor IN [1, null]", "(X) IN [null, true]", 37),
		"NOT chain":              nest("tags.floor = 1", "NOT (X)", 19),
		"string functions":       "ENDS_WITH(" + nest("tags.env", "LOWER(X)", 18) + ", " + nest("'d'", "UPPER(X)", 1) + ")",
		"arithmetic":             nest("tags.floor", "-(X * 2 + 1)", 18) + " > 0",
		"wide OR":                strings.TrimSuffix(strings.Repeat("tags.floor = 1 OR ", 300), " OR "),
	}
	for name, cond := range cases {
		t.Run(name, func(t *testing.T) {
			q, err := Parse("SELECT * FROM devices WHERE " + cond)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			plan, err := Compile(q)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if limit := 400 * len(cond); len(plan.SQL) > limit {
				t.Errorf("SQL is %d bytes for a %d-byte condition", len(plan.SQL), len(cond))
			}
			runPlan(t, db, plan.SQL, plan.Args)
		})
	}
}

// TestWideProjection checks projections past concat_ws's argument limit.
func TestWideProjection(t *testing.T) {
	db := openFleet(t)
	items := make([]string, 150)
	for i := range items {
		items[i] = fmt.Sprintf("tags.floor AS f%d", i)
	}
	q, err := Parse("SELECT " + strings.Join(items, ", ") + ", deviceId AS `x` FROM devices")
	if err == nil {
		t.Fatalf("backquote should not parse: %v", q)
	}
	q, err = Parse("SELECT " + strings.Join(items, ", ") + " FROM devices WHERE deviceId IN ['d01', 'd04']")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Compile(q)
	if err != nil {
		t.Fatal(err)
	}
	rows := runPlan(t, db, plan.SQL, plan.Args)
	if len(rows) != 2 || rows[1] != "{}" {
		t.Fatalf("rows = %v", rows)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(rows[0]), &obj); err != nil || len(obj) != 150 || obj["f149"] != 1.0 {
		t.Errorf("row %s: %v, %d keys", rows[0], err, len(obj))
	}
}

// TestIndexFor checks that SQLite's planner matches indexes built from
// IndexFor against the compiler's output.
func TestIndexFor(t *testing.T) {
	db := openFleet(t)
	region, err := IndexFor("tags.location.region")
	if err != nil {
		t.Fatal(err)
	}
	status, err := IndexFor("Properties.Reported.status")
	if err != nil {
		t.Fatal(err)
	}
	if want := "json_extract(tags, '$.location.region')"; region.Filter != want {
		t.Errorf("Filter = %s, want %s", region.Filter, want)
	}
	for _, ddl := range []string{
		"CREATE INDEX t_region ON devices(" + region.Filter + ")",
		"CREATE INDEX t_status ON devices(" + strings.Join(status.GroupBy, ", ") + ")",
	} {
		if _, err := db.Exec(ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	cases := []struct{ query, index string }{
		{`SELECT * FROM devices WHERE tags.location.region = 'US'`, "t_region"},
		{`SELECT * FROM devices WHERE tags.location.region IN ['US', 'EU'] AND status = 'enabled'`, "t_region"},
		{`SELECT properties.reported.status AS s, COUNT() AS n FROM devices GROUP BY properties.reported.status`, "t_status"},
	}
	for _, tc := range cases {
		q, err := Parse(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := Compile(q)
		if err != nil {
			t.Fatal(err)
		}
		explain := strings.Join(runExplain(t, db, plan), "\n")
		if !strings.Contains(explain, tc.index) {
			t.Errorf("query %s does not use %s:\n%s", tc.query, tc.index, explain)
		}
	}
	if _, err := IndexFor("tags.a = 1"); err == nil {
		t.Error("IndexFor accepted a condition")
	}
	if _, err := IndexFor("nope.a"); err == nil {
		t.Error("IndexFor accepted an unknown property")
	}
}

func runExplain(t *testing.T, db *sql.DB, plan *Plan) []string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+plan.SQL, plan.Args...)
	if err != nil {
		t.Fatalf("explain %s: %v", plan.SQL, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, detail)
	}
	return out
}
