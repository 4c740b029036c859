package query

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemaIndexes keeps the indexes that ../store/schema.sql ships in
// step with the compiler: their expressions are IndexFor's, and SQLite's
// planner uses them for the queries they were made for.
func TestSchemaIndexes(t *testing.T) {
	schema, err := os.ReadFile(filepath.Join("..", "store", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	status, err := IndexFor("properties.reported.status")
	if err != nil {
		t.Fatal(err)
	}
	noSpace := func(s string) string { return strings.Join(strings.Fields(s), "") }
	flat := noSpace(string(schema))
	groupBy := func(path string) string {
		h, err := IndexFor(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(h.GroupBy, ", ")
	}
	for name, cols := range map[string]string{
		"devices_reported_status":       status.Filter,
		"devices_reported_status_group": strings.Join(status.GroupBy, ", "),
		// the console's fleet page
		"devices_connection_state":                groupBy("connectionState"),
		"devices_device_scope":                    groupBy("deviceScope"),
		"devices_reported_connection_state_group": groupBy("properties.reported.connection.state"),
		"devices_reported_firmware_status_group":  groupBy("properties.reported.firmware.status"),
	} {
		if want := "CREATE INDEX IF NOT EXISTS " + name + " ON devices(" + cols + ");"; !strings.Contains(flat, noSpace(want)) {
			t.Errorf("schema.sql lacks\n%s", want)
		}
	}
	db := openFleet(t) // the fixture database has the schema's indexes
	cases := []struct{ query, index string }{
		{`SELECT * FROM devices WHERE properties.reported.status = 'Error'`, "devices_reported_status"},
		{`SELECT COUNT() AS n FROM devices WHERE properties.reported.status IN ['Error', 'Pending']`, "devices_reported_status"},
		{`SELECT properties.reported.status AS s, COUNT() AS n FROM devices GROUP BY properties.reported.status`, "devices_reported_status_group"},
		{`SELECT Properties.Reported.status AS s, COUNT() AS n FROM devices WHERE status = 'enabled' GROUP BY Properties.Reported.status`, "devices_reported_status_group"},
		{`SELECT connectionState AS v, COUNT() AS n FROM devices GROUP BY connectionState`, "devices_connection_state"},
		{`SELECT deviceScope AS v, COUNT() AS n FROM devices GROUP BY deviceScope`, "devices_device_scope"},
		{`SELECT properties.reported.connection.state AS v, COUNT() AS n FROM devices GROUP BY properties.reported.connection.state`, "devices_reported_connection_state_group"},
		{`SELECT properties.reported.firmware.status AS v, COUNT() AS n FROM devices GROUP BY properties.reported.firmware.status`, "devices_reported_firmware_status_group"},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			explain := strings.Join(runExplain(t, db, mustCompile(t, tc.query)), "\n")
			if !strings.Contains(explain, tc.index+" ") && !strings.HasSuffix(explain, tc.index) {
				t.Errorf("query does not use %s:\n%s", tc.index, explain)
			}
		})
	}
}
