package query

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// fixtureDevice is one row of the test fleet; empty JSON fields take the
// schema defaults.
type fixtureDevice struct {
	id, status, statusReason, conn, lastActivity string
	iotEdge                                      int
	twinVersion                                  int
	tags, desired, desiredMeta                   string
	desiredVersion                               int
	reported, reportedMeta                       string
	reportedVersion                              int
	parentScopes, deviceScope, thumbprint        string
}

// fleet exercises strings, numbers (integer, real, negative), booleans,
// nulls, nested objects, arrays, odd keys and missing keys.
var fleet = []fixtureDevice{
	{id: "d01", conn: "Connected",
		tags:           `{"location":{"region":"US","building":"43"},"env":"prod","floor":1,"rank":"1"}`,
		desired:        `{"telemetryConfig":{"sendFrequency":"5m"},"threshold":10}`,
		desiredMeta:    `{"$lastUpdated":"2024-05-01T00:00:00Z","threshold":{"$lastUpdated":"2024-05-01T00:00:00Z","$lastUpdatedVersion":3}}`,
		desiredVersion: 3,
		reported:       `{"status":"Success","battery":55,"connectivity":"wifi","telemetryConfig":{"status":"Success","sendFrequencyInSecs":60}}`,
		reportedMeta:   `{"$lastUpdated":"2024-06-01T00:00:00Z","battery":{"$lastUpdated":"2024-06-01T00:00:00Z"}}`, reportedVersion: 7},
	{id: "d02", status: "disabled",
		tags:           `{"location":{"region":"EU"},"env":"dev","floor":2,"enabled":true}`,
		desired:        `{"threshold":20}`,
		desiredMeta:    `{"threshold":{"$lastUpdated":"2023-01-01T00:00:00Z","$lastUpdatedVersion":5}}`,
		desiredVersion: 5,
		reported:       `{"status":"Pending","battery":12.5,"connectivity":"wired","telemetryConfig":{"status":"Pending","sendFrequencyInSecs":30}}`},
	{id: "d03", iotEdge: 1,
		tags:     `{"location":{"region":"US"},"env":null,"floor":"1","enabled":false}`,
		reported: `{"status":"Success","connectivity":null,"telemetryConfig":{"status":"Success","sendFrequencyInSecs":120}}`},
	{id: "d04"},
	{id: "d05", twinVersion: 4,
		tags:     `{"location":"US","floor":-3,"list":[1,2,3],"nested":{"a":{"b":{"c":"deep"}}}}`,
		reported: `{"status":"Error","battery":0}`},
	{id: "d06",
		tags:     `{"a-b":"odd","key with space":"sp","quo\"te":"q","it's":"apos","env":"PROD"}`,
		reported: `{"status":"success"}`},
	{id: "d07", tags: `{"env":"prod","enabled":1,"floor":1.0}`, reported: `{"status":null}`},
	{id: "d08", tags: `{"env":"staging","ver":"10"}`, reported: `{"status":"Success","battery":100}`,
		parentScopes: `["ms-azure-iot-edge://edge1-123"]`, deviceScope: "ms-azure-iot-edge://d08-1"},
	{id: "d09", status: "disabled", statusReason: "tampered", tags: `{"obj":{"x":1},"arr":[],"env":"prod"}`},
	{id: "d10", tags: `{"env":"Prod"}`, desired: `{"threshold":"10"}`, reported: `{"status":"Pending","battery":-5}`},
	{id: "d11", tags: `{"unicode":"héllo","env":"prod","location":{"region":"us"}}`, reported: `{"status":"Success"}`},
	{id: "d12", conn: "Connected", lastActivity: "2024-01-02T03:04:05Z", thumbprint: "ABC",
		tags: `{"rank":1,"ünï":"x","select":"kw"}`},
}

func dflt[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// openDB creates a temporary SQLite database with the store schema.
func openDB(tb testing.TB) *sql.DB {
	tb.Helper()
	schema, err := os.ReadFile(filepath.Join("..", "store", "schema.sql"))
	if err != nil {
		tb.Fatalf("read schema: %v", err)
	}
	db, err := sql.Open("sqlite3", filepath.Join(tb.TempDir(), "hub.db"))
	if err != nil {
		tb.Fatalf("open db: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := db.Exec(string(schema)); err != nil {
		tb.Fatalf("apply schema: %v", err)
	}
	return db
}

const insertDevice = `INSERT INTO devices (device_id, generation_id, etag, status, status_reason,
	connection_state, last_activity, iot_edge, created, twin_etag, twin_version,
	tags, desired, desired_meta, desired_version, reported, reported_meta, reported_version,
	parent_scopes, device_scope, primary_thumbprint, auth_type)
	VALUES (?, 'gen', 'etag', ?, ?, ?, ?, ?, '2024-01-01T00:00:00Z', 'AAAAAAAAAAE=', ?,
	?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// openFleet returns a database holding the fixture fleet.
func openFleet(tb testing.TB) *sql.DB {
	tb.Helper()
	db := openDB(tb)
	for _, d := range fleet {
		auth := "sas"
		if d.thumbprint != "" {
			auth = "selfSigned"
		}
		_, err := db.Exec(insertDevice, d.id, dflt(d.status, "enabled"), d.statusReason,
			dflt(d.conn, "Disconnected"), dflt(d.lastActivity, "0001-01-01T00:00:00Z"), d.iotEdge,
			dflt(d.twinVersion, 1), dflt(d.tags, "{}"), dflt(d.desired, "{}"), dflt(d.desiredMeta, "{}"),
			dflt(d.desiredVersion, 1), dflt(d.reported, "{}"), dflt(d.reportedMeta, "{}"), dflt(d.reportedVersion, 1),
			dflt(d.parentScopes, "[]"), d.deviceScope, d.thumbprint, auth)
		if err != nil {
			tb.Fatalf("insert %s: %v", d.id, err)
		}
	}
	return db
}

// runPlan executes a plan and returns its single column as strings.
func runPlan(tb testing.TB, db *sql.DB, sqlText string, args []any) []string {
	tb.Helper()
	rows, err := db.Query(sqlText, args...)
	if err != nil {
		tb.Fatalf("run %s %v: %v", sqlText, args, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatalf("scan: %v", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("rows of %s %v: %v", sqlText, args, err)
	}
	return out
}
