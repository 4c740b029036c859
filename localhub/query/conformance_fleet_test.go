package query

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Cases added for issue 5's list ("every function", GROUP BY counts, TOP,
// paging, the top-level fields) that the first catalogue did not cover.

var fleetTwinCases = []struct {
	name, query, want string
}{
	{"etag (twin etag)", `SELECT * FROM devices WHERE etag = 'AAAAAAAAAAE=' AND deviceId < 'd03'`, "d01 d02"},
	{"etag mismatch", `SELECT * FROM devices WHERE etag = 'AAAAAAAAAAI='`, ""},
	{"deviceEtag is the identity etag", `SELECT * FROM devices WHERE deviceEtag = 'etag' AND deviceId = 'd04'`, "d04"},
	{"<= across integer and real", `SELECT * FROM devices WHERE tags.floor <= 1`, "d01 d05 d07"},
	{"binary minus", `SELECT * FROM devices WHERE properties.reported.battery - 5 = 50`, "d01"},
	{"minus binds left to right", `SELECT * FROM devices WHERE 10 - 3 - 2 = 5 AND deviceId = 'd04'`, "d04"},
	{"version <=", `SELECT * FROM devices WHERE version <= 1 AND deviceId > 'd03' AND deviceId < 'd07'`, "d04 d06"},
	{"version IN", `SELECT * FROM devices WHERE version IN [4, 5]`, "d05"},
	{"status NIN", `SELECT * FROM devices WHERE status NIN ['enabled']`, "d02 d09"},
	{"boolean IN", `SELECT * FROM devices WHERE tags.enabled IN [true]`, "d02"},
	{"connectionState <>", `SELECT * FROM devices WHERE connectionState <> 'Disconnected'`, "d01 d12"},
	{"doc example 8 shape", `SELECT * FROM devices WHERE status = 'enabled' AND connectionState = 'Connected'`, "d01 d12"},
	{"lastActivityTime unset", `SELECT * FROM devices WHERE lastActivityTime = '0001-01-01T00:00:00Z' AND deviceId > 'd10'`, "d11"},
	{"parentScopes IS_ARRAY", `SELECT * FROM devices WHERE IS_ARRAY(parentScopes) AND deviceId < 'd03'`, "d01 d02"},
	{"parentScopes index on an empty list", `SELECT * FROM devices WHERE IS_DEFINED(parentScopes[0])`, "d08"},
	{"STARTSWITH matches strings only (floor is 1, 1.0 or '1')", `SELECT * FROM devices WHERE STARTSWITH(tags.floor, '1')`, "d03"},
	{"NOT STARTSWITH of a number is undefined", `SELECT * FROM devices WHERE NOT STARTSWITH(tags.floor, '1')`, ""},
	{"NOT CONTAINS", `SELECT * FROM devices WHERE NOT CONTAINS(deviceId, '1')`, "d02 d03 d04 d05 d06 d07 d08 d09"},
	{"CONTAINS empty string", `SELECT * FROM devices WHERE CONTAINS(tags.ver, '')`, "d08"},
	{"LOWER of a number is undefined", `SELECT * FROM devices WHERE LOWER(tags.floor) = '1'`, "d03"},
	{"LENGTH of a column", `SELECT * FROM devices WHERE LENGTH(deviceId) = 3 AND deviceId = 'd12'`, "d12"},
	{"LENGTH of a non-string is undefined", `SELECT * FROM devices WHERE LENGTH(tags.floor) >= 0`, "d03"},
	{"function names any case", `SELECT * FROM devices WHERE starts_with(deviceId, 'd1') AND Is_String(tags.env) AND upper(tags.env) = 'PROD'`, "d10 d11"},
	{"IS_NUMBER of arithmetic", `SELECT * FROM devices WHERE IS_NUMBER(tags.floor * 2) AND tags.floor > 1`, "d02"},
	{"IS_BOOL of a comparison", `SELECT * FROM devices WHERE IS_BOOL(tags.floor = 1) AND deviceId < 'd03'`, "d01 d02"},
	{"IS_DEFINED of a top-level field", `SELECT * FROM devices WHERE IS_DEFINED(statusReason) AND deviceId = 'd04'`, "d04"},
	{"IS_PRIMITIVE of null", `SELECT * FROM devices WHERE IS_PRIMITIVE(tags.env) AND IS_NULL(tags.env)`, "d03"},
	{"IS_OBJECT of capabilities", `SELECT * FROM devices WHERE IS_OBJECT(capabilities) AND deviceId = 'd04'`, "d04"},
	{"escaped double quote in a double-quoted string", `SELECT * FROM devices WHERE tags["quo\"te"] = "q"`, "d06"},
	{"nested NOT, OR, AND: a missing tag leaves the NOT undefined", `SELECT * FROM devices WHERE NOT (status = 'disabled' OR (tags.env = 'prod' AND NOT capabilities.iotEdge)) AND deviceId < 'd06'`, "d03"},
	{"TOP larger than the result", `SELECT TOP 50 * FROM devices WHERE status = 'disabled'`, "d02 d09"},
	{"TOP 0", `SELECT TOP 0 * FROM devices`, ""},
}

func TestConformanceFleetTwins(t *testing.T) {
	db := openFleet(t)
	for _, tc := range fleetTwinCases {
		t.Run(tc.name, func(t *testing.T) {
			plan := mustCompile(t, tc.query)
			if plan.Kind != KindTwins {
				t.Fatalf("Compile(%q).Kind = %v, want twin", tc.query, plan.Kind)
			}
			got := runPlan(t, db, plan.SQL, plan.Args)
			if want := ids(tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("query %s\n got %v\nwant %v\n sql %s %v", tc.query, got, want, plan.SQL, plan.Args)
			}
		})
	}
}

var fleetRowCases = []struct {
	name, query, want string
}{
	{"GROUP BY with WHERE: undefined, null and case-distinct groups", `SELECT tags.env AS env, COUNT() AS n FROM devices WHERE status = 'enabled' GROUP BY tags.env`,
		`[{"n":3},{"env":null,"n":1},{"env":"PROD","n":1},{"env":"Prod","n":1},{"env":"prod","n":3},{"env":"staging","n":1}]`},
	{"GROUP BY reported status with COUNT()", `SELECT properties.reported.status AS status, COUNT() AS n FROM devices GROUP BY properties.reported.status`,
		`[{"n":3},{"status":null,"n":1},{"status":"Error","n":1},{"status":"Pending","n":2},{"status":"Success","n":4},{"status":"success","n":1}]`},
	{"TOP with GROUP BY", `SELECT TOP 1 status, COUNT() AS n FROM devices GROUP BY status`, `[{"status":"disabled","n":2}]`},
	{"GROUP BY with AVG and COUNT", `SELECT status, AVG(properties.reported.battery) AS a, COUNT() AS n FROM devices GROUP BY status`,
		`[{"status":"disabled","a":12.5,"n":2},{"status":"enabled","a":37.5,"n":10}]`},
	{"GROUP BY connectionState", `SELECT connectionState, COUNT() AS n FROM devices GROUP BY connectionState`,
		`[{"connectionState":"Connected","n":2},{"connectionState":"Disconnected","n":10}]`},
	{"GROUP BY a tag and a reported status", `SELECT tags.env AS env, properties.reported.status AS s, COUNT() AS n FROM devices WHERE tags.env = 'prod' GROUP BY tags.env, properties.reported.status`,
		`[{"env":"prod","n":1},{"env":"prod","s":null,"n":1},{"env":"prod","s":"Success","n":2}]`},
	{"COUNT with TOP and WHERE", `SELECT TOP 1 COUNT() AS n FROM devices WHERE capabilities.iotEdge = false`, `[{"n":11}]`},
	{"projection of top-level fields", `SELECT deviceId, etag, version, status, connectionState, parentScopes, capabilities.iotEdge FROM devices WHERE deviceId = 'd08'`,
		`[{"deviceId":"d08","etag":"AAAAAAAAAAE=","version":1,"status":"enabled","connectionState":"Disconnected","parentScopes":["ms-azure-iot-edge://edge1-123"],"iotEdge":false}]`},
	{"functions in a projection", `SELECT LENGTH(deviceId) AS len, UPPER(tags.env) AS env, STARTSWITH(tags.env, 'p') AS p, IS_DEFINED(tags.env) AS d FROM devices WHERE deviceId IN ['d01', 'd04']`,
		`[{"len":3,"env":"PROD","p":true,"d":true},{"len":3,"d":false}]`},
	{"arithmetic in a projection", `SELECT properties.reported.battery - 5 AS b, tags.floor % 2 AS odd FROM devices WHERE deviceId = 'd01'`, `[{"b":50,"odd":1}]`},
}

func TestConformanceFleetRows(t *testing.T) {
	db := openFleet(t)
	for _, tc := range fleetRowCases {
		t.Run(tc.name, func(t *testing.T) {
			plan := mustCompile(t, tc.query)
			if plan.Kind != KindRows {
				t.Fatalf("Compile(%q).Kind = %v, want raw", tc.query, plan.Kind)
			}
			got := "[" + strings.Join(runPlan(t, db, plan.SQL, plan.Args), ",") + "]"
			if !sameJSON(t, got, tc.want) {
				t.Errorf("query %s\n got %s\nwant %s\n sql %s %v", tc.query, got, tc.want, plan.SQL, plan.Args)
			}
		})
	}
}

// TestPagingRows pages a GROUP BY and a projection the way the hub does
// (the plan as a subquery, LIMIT and OFFSET appended): the pages put
// together are the whole result, in order, with nothing twice.
func TestPagingRows(t *testing.T) {
	db := openFleet(t)
	for _, q := range []string{
		`SELECT tags.env AS env, COUNT() AS n FROM devices GROUP BY tags.env`,
		`SELECT deviceId, tags.floor FROM devices WHERE deviceId != 'd05'`,
		`SELECT TOP 7 deviceId FROM devices`,
	} {
		t.Run(q, func(t *testing.T) {
			plan := mustCompile(t, q)
			all := runPlan(t, db, plan.SQL, plan.Args)
			for _, size := range []int{1, 2, 5, 100} {
				var paged []string
				for off := 0; ; off += size {
					page := runPlan(t, db, "SELECT * FROM ("+plan.SQL+") LIMIT ? OFFSET ?", append(append([]any{}, plan.Args...), size, off))
					paged = append(paged, page...)
					if len(page) < size {
						break
					}
				}
				if !reflect.DeepEqual(paged, all) {
					t.Errorf("page size %d: %v, want %v", size, paged, all)
				}
			}
		})
	}
}

func mustCompile(t *testing.T, q string) *Plan {
	t.Helper()
	parsed, err := Parse(q)
	if err != nil {
		t.Fatalf("Parse(%q): %v", q, err)
	}
	plan, err := Compile(parsed)
	if err != nil {
		t.Fatalf("Compile(%q): %v", q, err)
	}
	return plan
}

func sameJSON(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("result %s is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}
