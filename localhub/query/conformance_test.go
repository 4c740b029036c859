package query

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func ids(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Fields(s)
}

const allIDs = "d01 d02 d03 d04 d05 d06 d07 d08 d09 d10 d11 d12"

// twinCases map a query to the device ids it must return, in order.
var twinCases = []struct {
	name, query, want string
}{
	{"all", `SELECT * FROM devices`, allIDs},
	{"nested tag", `SELECT * FROM devices WHERE tags.location.region = 'US'`, "d01 d03"},
	{"double quoted string", `SELECT * FROM devices WHERE tags.location.region = "US"`, "d01 d03"},
	{"doc example 3", `SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs > 60`, "d03"},
	{"number matches integer and real, not string", `SELECT * FROM devices WHERE tags.floor = 1`, "d01 d07"},
	{"string does not match number", `SELECT * FROM devices WHERE tags.floor = '1'`, "d03"},
	{"true does not match 1", `SELECT * FROM devices WHERE tags.enabled = true`, "d02"},
	{"1 does not match true", `SELECT * FROM devices WHERE tags.enabled = 1`, "d07"},
	{"false", `SELECT * FROM devices WHERE tags.enabled = false`, "d03"},
	{"= null is JSON null only", `SELECT * FROM devices WHERE tags.env = null`, "d03"},
	{"!= null is any defined non-null", `SELECT * FROM devices WHERE tags.env != null`, "d01 d02 d06 d07 d08 d09 d10 d11"},
	{"<> skips null and missing", `SELECT * FROM devices WHERE tags.env <> 'prod'`, "d02 d06 d08 d10"},
	{"NOT comparison skips null and missing", `SELECT * FROM devices WHERE NOT (tags.env = 'prod')`, "d02 d06 d08 d10"},
	{"NOT binds looser than =", `SELECT * FROM devices WHERE NOT tags.env = 'prod'`, "d02 d06 d08 d10"},
	{"NOT on missing path is no match", `SELECT * FROM devices WHERE NOT (tags.location.region = 'US')`, "d02 d11"},
	{"double NOT", `SELECT * FROM devices WHERE NOT NOT (tags.location.region = 'US')`, "d01 d03"},
	{"OR across types", `SELECT * FROM devices WHERE tags.floor > 0 OR tags.floor = '1'`, "d01 d02 d03 d07"},
	{"undefined OR true", `SELECT * FROM devices WHERE tags.nope = 1 OR deviceId = 'd04'`, "d04"},
	{"NOT (undefined AND x): false AND undefined is false", `SELECT * FROM devices WHERE NOT (tags.nope = 1 AND deviceId = 'd04')`, "d01 d02 d03 d05 d06 d07 d08 d09 d10 d11 d12"},
	{"NOT (undefined OR x) never true", `SELECT * FROM devices WHERE NOT (tags.nope = 1 OR deviceId = 'd04')`, ""},
	{"top-level names are case-insensitive", `SELECT * FROM devices WHERE DeviceId = 'd05' OR DEVICEID = 'd06'`, "d05 d06"},
	{"TAGS is tags", `SELECT * FROM devices WHERE TAGS.env = 'dev'`, "d02"},
	{"property keys are case-sensitive", `SELECT * FROM devices WHERE tags.ENV = 'dev'`, ""},
	{"keywords are case-insensitive", `select * from DEVICES where tags.env = 'dev' and not tags.floor = 3`, "d02"},
	{"status", `SELECT * FROM devices WHERE status = 'disabled'`, "d02 d09"},
	{"statusReason", `SELECT * FROM devices WHERE statusReason = 'tampered'`, "d09"},
	{"connectionState", `SELECT * FROM devices WHERE connectionState = 'Connected'`, "d01 d12"},
	{"iotEdge true", `SELECT * FROM devices WHERE capabilities.iotEdge = true`, "d03"},
	{"iotEdge false", `SELECT * FROM devices WHERE capabilities.iotEdge = false`, "d01 d02 d04 d05 d06 d07 d08 d09 d10 d11 d12"},
	{"iotEdge is not a number", `SELECT * FROM devices WHERE capabilities.iotEdge = 1`, ""},
	{"lastActivityTime ordinal", `SELECT * FROM devices WHERE lastActivityTime > '2024-01-01'`, "d12"},
	{"twin version", `SELECT * FROM devices WHERE version >= 4`, "d05"},
	{"desired $version", `SELECT * FROM devices WHERE properties.desired.$version > 1`, "d01 d02"},
	{"reported $version", `SELECT * FROM devices WHERE properties.reported.$version = 7`, "d01"},
	{"$version is a number", `SELECT * FROM devices WHERE properties.desired.$version = '3'`, ""},
	{"metadata lastUpdated", `SELECT * FROM devices WHERE properties.desired.$metadata.threshold.$lastUpdated < '2024-01-01'`, "d02"},
	{"metadata root lastUpdated, any case", `SELECT * FROM devices WHERE properties.desired.$metadata.$LastUpdated = '2024-05-01T00:00:00Z'`, "d01"},
	{"reported metadata", `SELECT * FROM devices WHERE Properties.Reported.$metadata.battery.$lastUpdated > '2024'`, "d01"},
	{"structural names any case, keys not", `SELECT * FROM devices WHERE Properties.Reported.status = 'Error' OR properties.reported.Status = 'Error'`, "d05"},
	{"odd key with dash", `SELECT * FROM devices WHERE tags['a-b'] = 'odd'`, "d06"},
	{"odd key with space", `SELECT * FROM devices WHERE tags["key with space"] = 'sp'`, "d06"},
	{"odd key with double quote", `SELECT * FROM devices WHERE tags['quo"te'] = 'q'`, "d06"},
	{"odd key with apostrophe", `SELECT * FROM devices WHERE tags['it\'s'] = 'apos'`, "d06"},
	{"non-ASCII value", `SELECT * FROM devices WHERE tags.unicode = 'h\u00e9llo'`, "d11"},
	{"non-ASCII key", `SELECT * FROM devices WHERE tags.ünï = 'x'`, "d12"},
	{"keyword as key", `SELECT * FROM devices WHERE tags.select = 'kw'`, "d12"},
	{"array index", `SELECT * FROM devices WHERE tags.list[1] = 2`, "d05"},
	{"parentScopes index", `SELECT * FROM devices WHERE parentScopes[0] = 'ms-azure-iot-edge://edge1-123'`, "d08"},
	{"parentScopes != null (Q&A example)", `SELECT * FROM devices WHERE parentScopes != null`, allIDs},
	{"deviceScope", `SELECT * FROM devices WHERE deviceScope = 'ms-azure-iot-edge://d08-1'`, "d08"},
	{"object comparison is undefined", `SELECT * FROM devices WHERE tags.obj = 1`, ""},
	{"NOT object comparison is undefined", `SELECT * FROM devices WHERE NOT (tags.obj = 1)`, ""},
	{"object vs string is undefined", `SELECT * FROM devices WHERE tags.location = 'US'`, "d05"},
	{"ordinal string order", `SELECT * FROM devices WHERE tags.env > 'a'`, "d01 d02 d07 d08 d09 d11"},
	{"string vs number order is undefined", `SELECT * FROM devices WHERE tags.ver > 9`, ""},
	{"string order is not numeric", `SELECT * FROM devices WHERE tags.ver < '9'`, "d08"},
	{"negative number", `SELECT * FROM devices WHERE tags.floor < -2`, "d05"},
	{"decimal", `SELECT * FROM devices WHERE properties.reported.battery = 12.5`, "d02"},
	{"negative decimal bound", `SELECT * FROM devices WHERE properties.reported.battery >= -5.0`, "d01 d02 d05 d08 d10"},
	{"hex", `SELECT * FROM devices WHERE properties.reported.battery = 0x64`, "d08"},
	{"reported null", `SELECT * FROM devices WHERE properties.reported.status = null`, "d07"},
	{"x509 thumbprint null", `SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint = null AND deviceId > 'd10'`, "d11"},
	{"x509 thumbprint", `SELECT * FROM devices WHERE x509Thumbprint.primaryThumbprint = 'ABC'`, "d12"},
	{"deep path", `SELECT * FROM devices WHERE tags.nested.a.b.c = 'deep'`, "d05"},
	{"unknown sub-field of a scalar", `SELECT * FROM devices WHERE deviceId.x = 'd01'`, ""},
	{"IN (doc example 4)", `SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']`, "d01 d02"},
	{"NIN includes null, skips missing", `SELECT * FROM devices WHERE properties.reported.connectivity NIN ['wired']`, "d01 d03"},
	{"IN mixed types", `SELECT * FROM devices WHERE tags.floor IN [1, '1']`, "d01 d03 d07"},
	{"NOT IN", `SELECT * FROM devices WHERE tags.floor NOT IN [1, 2]`, "d03 d05"},
	{"IN null", `SELECT * FROM devices WHERE tags.env IN [null, 'dev']`, "d02 d03"},
	{"deviceId IN", `SELECT * FROM devices WHERE deviceId IN ['d01', 'd03', 'zz']`, "d01 d03"},
	{"deviceId NIN of other type", `SELECT * FROM devices WHERE deviceId NIN [1] AND deviceId < 'd03'`, "d01 d02"},
	{"IS_DEFINED includes null (doc example 5)", `SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)`, "d01 d02 d03"},
	{"NOT IS_DEFINED", `SELECT * FROM devices WHERE NOT IS_DEFINED(tags.env)`, "d04 d05 d12"},
	{"IS_NULL", `SELECT * FROM devices WHERE IS_NULL(tags.env)`, "d03"},
	{"NOT IS_NULL includes missing", `SELECT * FROM devices WHERE NOT IS_NULL(tags.env) AND deviceId < 'd06'`, "d01 d02 d04 d05"},
	{"IS_STRING", `SELECT * FROM devices WHERE IS_STRING(tags.floor)`, "d03"},
	{"IS_NUMBER", `SELECT * FROM devices WHERE IS_NUMBER(tags.floor)`, "d01 d02 d05 d07"},
	{"IS_BOOL", `SELECT * FROM devices WHERE IS_BOOL(tags.enabled)`, "d02 d03"},
	{"IS_OBJECT", `SELECT * FROM devices WHERE IS_OBJECT(tags.location)`, "d01 d02 d03 d11"},
	{"IS_ARRAY", `SELECT * FROM devices WHERE IS_ARRAY(tags.arr) OR IS_ARRAY(tags.list)`, "d05 d09"},
	{"IS_PRIMITIVE", `SELECT * FROM devices WHERE IS_PRIMITIVE(tags.location)`, "d05"},
	{"IS_STRING of a column", `SELECT * FROM devices WHERE IS_STRING(deviceId) AND IS_NUMBER(version) AND IS_BOOL(capabilities.iotEdge) AND deviceId = 'd04'`, "d04"},
	{"STARTSWITH", `SELECT * FROM devices WHERE STARTSWITH(deviceId, 'd1')`, "d10 d11 d12"},
	{"STARTS_WITH is case-sensitive", `SELECT * FROM devices WHERE STARTS_WITH(tags.env, 'pr')`, "d01 d07 d09 d11"},
	{"ENDS_WITH", `SELECT * FROM devices WHERE ENDS_WITH(tags.env, 'od')`, "d01 d07 d09 d10 d11"},
	{"ENDSWITH empty suffix", `SELECT * FROM devices WHERE ENDSWITH(tags.ver, '')`, "d08"},
	{"NOT ENDS_WITH skips non-strings", `SELECT * FROM devices WHERE NOT ENDS_WITH(tags.env, 'od')`, "d02 d06 d08"},
	{"CONTAINS", `SELECT * FROM devices WHERE CONTAINS(tags.env, 'ta')`, "d08"},
	{"LOWER", `SELECT * FROM devices WHERE LOWER(tags.env) = 'prod'`, "d01 d06 d07 d09 d10 d11"},
	{"UPPER", `SELECT * FROM devices WHERE UPPER(tags.env) = 'PROD'`, "d01 d06 d07 d09 d10 d11"},
	{"LENGTH counts characters", `SELECT * FROM devices WHERE LENGTH(tags.unicode) = 5`, "d11"},
	{"multiply", `SELECT * FROM devices WHERE properties.reported.battery * 2 > 100`, "d01 d08"},
	{"add", `SELECT * FROM devices WHERE properties.reported.battery + 5 = 0`, "d10"},
	{"modulo", `SELECT * FROM devices WHERE tags.floor % 2 = 1`, "d01 d07"},
	{"real division", `SELECT * FROM devices WHERE properties.reported.battery / 2 = 6.25`, "d02"},
	{"precedence", `SELECT * FROM devices WHERE 1 + properties.reported.battery * 2 = 111`, "d01"},
	{"unary minus", `SELECT * FROM devices WHERE -tags.floor = 3`, "d05"},
	{"arithmetic on a string is undefined", `SELECT * FROM devices WHERE tags.ver + 1 = 11`, ""},
	{"parentheses", `SELECT * FROM devices WHERE tags.env = 'prod' AND (status = 'disabled' OR capabilities.iotEdge = true)`, "d09"},
	{"TOP", `SELECT TOP 2 * FROM devices WHERE tags.env = 'prod'`, "d01 d07"},
	{"= undefined", `SELECT * FROM devices WHERE tags.env = undefined`, ""},
	{"bare boolean property", `SELECT * FROM devices WHERE tags.enabled`, "d02"},
	{"NOT bare boolean property", `SELECT * FROM devices WHERE NOT tags.enabled`, "d03"},
	{"bare number is not true", `SELECT * FROM devices WHERE tags.floor`, ""},
	{"path = path same type", `SELECT * FROM devices WHERE properties.desired.threshold = properties.desired.threshold`, "d01 d02 d10"},
	{"path < path mixed types", `SELECT * FROM devices WHERE properties.desired.threshold < properties.reported.battery`, "d01"},
	{"path = path: null equals null, string vs string", `SELECT * FROM devices WHERE tags.env = properties.reported.connectivity`, "d03"},
	{"boolean compared to boolean", `SELECT * FROM devices WHERE (tags.floor = 1) = true`, "d01 d07"},
	{"boolean result compared to path", `SELECT * FROM devices WHERE tags.enabled = (deviceId = 'd02')`, "d02 d03"},
	{"literal condition", `SELECT * FROM devices WHERE true AND deviceId = 'd04'`, "d04"},
	{"long AND chain", `SELECT * FROM devices WHERE deviceId != 'a' AND deviceId != 'b' AND deviceId != 'c' AND deviceId != 'd' AND deviceId != 'e' AND status = 'disabled'`, "d02 d09"},
}

func TestConformanceTwins(t *testing.T) {
	db := openFleet(t)
	for _, tc := range twinCases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.query, err)
			}
			plan, err := Compile(q)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tc.query, err)
			}
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

// rowCases map a projection or aggregate to the JSON rows it must return.
var rowCases = []struct {
	name, query, want string
}{
	{"doc example 8: canonical casing", `SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState = 'Connected'`,
		`[{"deviceId":"d01","lastActivityTime":"0001-01-01T00:00:00Z"},{"deviceId":"d12","lastActivityTime":"2024-01-02T03:04:05Z"}]`},
	{"doc example 6: group by", `SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status`,
		`[{"numberOfDevices":9},{"status":"Pending","numberOfDevices":1},{"status":"Success","numberOfDevices":2}]`},
	{"doc example 7: count", `SELECT COUNT() AS totalNumberOfDevices FROM devices`, `[{"totalNumberOfDevices":12}]`},
	{"count with where", `SELECT COUNT() AS n FROM devices WHERE tags.env = 'prod'`, `[{"n":4}]`},
	{"count of nothing", `SELECT COUNT() AS n FROM devices WHERE tags.env = 'none'`, `[{"n":0}]`},
	{"group by two keys", `SELECT status, capabilities.iotEdge, COUNT() AS n FROM devices GROUP BY status, capabilities.iotEdge`,
		`[{"status":"disabled","iotEdge":false,"n":2},{"status":"enabled","iotEdge":false,"n":9},{"status":"enabled","iotEdge":true,"n":1}]`},
	{"group by mixed types: 1 and 1.0 together, '1' apart", `SELECT tags.floor AS f, COUNT() AS n FROM devices GROUP BY tags.floor`,
		`[{"n":7},{"f":-3,"n":1},{"f":1,"n":2},{"f":2,"n":1},{"f":"1","n":1}]`},
	{"nested paths keep last segment, missing omitted", `SELECT deviceId, tags.location, properties.reported.battery AS b FROM devices WHERE deviceId IN ['d01', 'd04', 'd05']`,
		`[{"deviceId":"d01","location":{"region":"US","building":"43"},"b":55},{"deviceId":"d04"},{"deviceId":"d05","location":"US","b":0}]`},
	{"null is projected", `SELECT tags.env FROM devices WHERE deviceId = 'd03'`, `[{"env":null}]`},
	{"desired section with $metadata and $version", `SELECT properties.desired FROM devices WHERE deviceId = 'd02'`,
		`[{"desired":{"threshold":20,"$metadata":{"threshold":{"$lastUpdated":"2023-01-01T00:00:00Z","$lastUpdatedVersion":5}},"$version":5}}]`},
	{"system fields", `SELECT properties.desired.$version, capabilities.iotEdge, capabilities, x509Thumbprint FROM devices WHERE deviceId = 'd03'`,
		`[{"$version":1,"iotEdge":true,"capabilities":{"iotEdge":true},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null}}]`},
	{"whole properties", `SELECT properties FROM devices WHERE deviceId = 'd04'`,
		`[{"properties":{"desired":{"$metadata":{},"$version":1},"reported":{"$metadata":{},"$version":1}}}]`},
	{"numeric aggregates skip non-numbers", `SELECT SUM(properties.reported.battery) AS s, MIN(properties.reported.battery) AS lo, MAX(properties.reported.battery) AS hi, AVG(properties.reported.battery) AS a, COUNT() AS n FROM devices`,
		`[{"s":162.5,"lo":-5,"hi":100,"a":32.5,"n":12}]`},
	{"aggregate over nothing is omitted", `SELECT SUM(tags.nope) AS s, COUNT() AS n FROM devices`, `[{"n":12}]`},
	{"TOP on rows", `SELECT TOP 1 deviceId FROM devices WHERE status = 'disabled'`, `[{"deviceId":"d02"}]`},
	{"expression with alias", `SELECT deviceId, properties.reported.battery * 2 AS double FROM devices WHERE deviceId = 'd02'`,
		`[{"deviceId":"d02","double":25}]`},
	{"boolean projection, undefined omitted", `SELECT tags.floor = 1 AS isOne, LOWER(tags.env) AS env FROM devices WHERE deviceId IN ['d01', 'd03', 'd04']`,
		`[{"isOne":true,"env":"prod"},{},{}]`},
	{"index segment gets a positional name", `SELECT tags.list[0] FROM devices WHERE deviceId = 'd05'`, `[{"$1":1}]`},
	{"metadata projection", `SELECT properties.reported.$metadata.battery.$lastUpdated FROM devices WHERE deviceId = 'd01'`,
		`[{"$lastUpdated":"2024-06-01T00:00:00Z"}]`},
	{"group by without aggregate is distinct", `SELECT status FROM devices GROUP BY status`, `[{"status":"disabled"},{"status":"enabled"}]`},
	{"grouped expression over a key", `SELECT UPPER(status) AS s, COUNT() AS n FROM devices WHERE status = 'disabled' GROUP BY status`, `[{"s":"DISABLED","n":2}]`},
}

func TestConformanceRows(t *testing.T) {
	db := openFleet(t)
	for _, tc := range rowCases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.query, err)
			}
			plan, err := Compile(q)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tc.query, err)
			}
			if plan.Kind != KindRows {
				t.Fatalf("Compile(%q).Kind = %v, want raw", tc.query, plan.Kind)
			}
			rows := runPlan(t, db, plan.SQL, plan.Args)
			got := "[" + strings.Join(rows, ",") + "]"
			var gotV, wantV any
			if err := json.Unmarshal([]byte(got), &gotV); err != nil {
				t.Fatalf("query %s returned invalid JSON %s: %v", tc.query, got, err)
			}
			if err := json.Unmarshal([]byte(tc.want), &wantV); err != nil {
				t.Fatalf("bad want %s: %v", tc.want, err)
			}
			if !reflect.DeepEqual(gotV, wantV) {
				t.Errorf("query %s\n got %s\nwant %s\n sql %s %v", tc.query, got, tc.want, plan.SQL, plan.Args)
			}
			// Key order follows the projection.
			if len(rows) > 0 && !strings.Contains(tc.name, "mixed types") {
				if want := firstKeys(tc.want); want != "" && firstKeys(got) != want {
					t.Errorf("key order %s, want %s", firstKeys(got), want)
				}
			}
		})
	}
}

// firstKeys lists the keys of the first object in a JSON array, in order.
func firstKeys(s string) string {
	dec := json.NewDecoder(strings.NewReader(s))
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return strings.Join(keys, ",")
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 1 {
					return strings.Join(keys, ",")
				}
			}
		case string:
			if depth == 2 && dec.More() {
				keys = append(keys, v)
				_ = dec.Decode(new(any)) // skip the value
			}
		}
	}
}

// TestPagingWrapper checks the documented caller pattern: the plan as a
// subquery with LIMIT/OFFSET parameters appended after Args.
func TestPagingWrapper(t *testing.T) {
	db := openFleet(t)
	q, err := Parse(`SELECT * FROM devices WHERE tags.env = 'prod' OR STARTS_WITH(deviceId, 'd1')`)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Compile(q)
	if err != nil {
		t.Fatal(err)
	}
	got := runPlan(t, db, "SELECT * FROM ("+plan.SQL+") LIMIT ? OFFSET ?", append(plan.Args, 2, 1))
	if want := ids("d07 d09"); !reflect.DeepEqual(got, want) {
		t.Errorf("page = %v, want %v", got, want)
	}
}

// TestCompileCondition checks the jobs entry point: "*" and a fragment
// combined with the caller's own parameters.
func TestCompileCondition(t *testing.T) {
	db := openFleet(t)
	cases := []struct{ cond, want string }{
		{"*", allIDs},
		{" * ", allIDs},
		{"deviceId IN ['d01', 'd02', 'd03']", "d02 d03"},
		{"tags.env = 'prod' AND NOT capabilities.iotEdge", "d07 d09 d11"},
	}
	for _, tc := range cases {
		t.Run(tc.cond, func(t *testing.T) {
			e, err := ParseCondition(tc.cond)
			if err != nil {
				t.Fatalf("ParseCondition(%q): %v", tc.cond, err)
			}
			where, args, err := CompileCondition(e)
			if err != nil {
				t.Fatalf("CompileCondition(%q): %v", tc.cond, err)
			}
			got := runPlan(t, db, "SELECT device_id FROM devices WHERE device_id > ? AND ("+where+") ORDER BY device_id",
				append([]any{"d01"}, args...))
			want := ids(tc.want)
			if want[0] == "d01" {
				want = want[1:]
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("condition %q: got %v, want %v (where %s %v)", tc.cond, got, want, where, args)
			}
		})
	}
}

// TestLiteralsAreBound checks that no query literal reaches the SQL text.
func TestLiteralsAreBound(t *testing.T) {
	q, err := Parse(`SELECT TOP 7 tags.x AS a FROM devices WHERE tags['it''s'] = 'x''; DROP TABLE devices; --' OR tags.n IN [12345, 'needle'] OR STARTS_WITH(deviceId, 'pre')`)
	if err == nil {
		t.Fatalf("doubled quote should not parse: %v", q)
	}
	q, err = Parse(`SELECT TOP 7 tags.x AS a FROM devices WHERE tags['it\'s'] = 'x\'; DROP TABLE devices; --' OR tags.n IN [12345, 'needle'] OR STARTS_WITH(deviceId, 'pre')`)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Compile(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, lit := range []string{"DROP", "12345", "needle", "pre", "7"} {
		if strings.Contains(plan.SQL, lit) {
			t.Errorf("literal %q appears in SQL: %s", lit, plan.SQL)
		}
	}
	if !strings.Contains(plan.SQL, `'$."it''s"'`) {
		t.Errorf("odd key not quoted as expected: %s", plan.SQL)
	}
	if n := strings.Count(plan.SQL, "?"); n != len(plan.Args) {
		t.Errorf("%d placeholders for %d args", n, len(plan.Args))
	}
}
