package query

import (
	"errors"
	"strings"
	"testing"
)

// syntaxCases hold bad queries, the byte offset of the problem and the
// expected message. at is a substring of the query whose first occurrence
// marks the position ("" means the end of the query).
var syntaxCases = []struct {
	name, query, at, msg string
}{
	{"empty", ``, "", `expected SELECT, found end of query`},
	{"missing SELECT", `* FROM devices`, "*", `expected SELECT, found "*"`},
	{"missing FROM", `SELECT * WHERE tags.x = 1`, "WHERE", `expected FROM, found "WHERE"`},
	{"missing projection", `SELECT FROM devices`, "FROM", `expected "*" or an expression, found "FROM"`},
	{"FROM nothing", `SELECT * FROM nothing`, "nothing", `expected devices, devices.modules or devices.jobs, found "nothing"`},
	{"FROM devices.unknown", `SELECT * FROM devices.twins`, "twins", `expected modules or jobs after devices., found "twins"`},
	{"unterminated string", `SELECT * FROM devices WHERE tags.x = 'abc`, "'abc", `unterminated string`},
	{"unterminated after escape", `SELECT * FROM devices WHERE tags.x = "abc\`, `"abc`, `unterminated string`},
	{"bad escape", `SELECT * FROM devices WHERE tags.x = 'a\qb'`, `\q`, `invalid escape "\\q"`},
	{"bad unicode escape", `SELECT * FROM devices WHERE tags.x = 'a\u12'`, `\u`, `invalid \u escape`},
	{"double equals", `SELECT * FROM devices WHERE tags.x == 1`, "==", `invalid operator "==", use "="`},
	{"bang", `SELECT * FROM devices WHERE !tags.x`, "!", `invalid operator "!"`},
	{"operator without operand", `SELECT * FROM devices WHERE tags.x = > 1`, ">", `expected an expression, found ">"`},
	{"unexpected character", `SELECT * FROM devices WHERE tags.x = 1;`, ";", `unexpected character ';'`},
	{"trailing junk", `SELECT * FROM devices WHERE tags.x = 1 garbage`, "garbage", `expected end of query, found "garbage"`},
	{"unknown function", `SELECT * FROM devices WHERE FOO(tags.x)`, "FOO", `unknown function "FOO"`},
	{"wrong arity", `SELECT * FROM devices WHERE IS_DEFINED()`, "IS_DEFINED", `IS_DEFINED takes 1 argument, got 0`},
	{"aggregate in WHERE", `SELECT * FROM devices WHERE COUNT() > 1`, "COUNT", `aggregate COUNT is allowed only in the SELECT list`},
	{"nested aggregate", `SELECT SUM(COUNT()) AS n FROM devices`, "COUNT", `aggregate COUNT is allowed only in the SELECT list`},
	{"empty IN", `SELECT * FROM devices WHERE deviceId IN []`, "]", `empty IN list`},
	{"IN without brackets", `SELECT * FROM devices WHERE deviceId IN 'a'`, "'a'", `expected "[", found "'a'"`},
	{"IN of a path", `SELECT * FROM devices WHERE deviceId IN ['a', tags.x]`, "tags", `expected a constant, found "tags"`},
	{"NOT without IN", `SELECT * FROM devices WHERE deviceId NOT LIKE 'a'`, "LIKE", `expected IN after NOT, found "LIKE"`},
	{"unbalanced parenthesis", `SELECT * FROM devices WHERE (tags.x = 1`, "", `expected ")", found end of query`},
	{"empty WHERE", `SELECT * FROM devices WHERE`, "", `expected an expression, found end of query`},
	{"dangling AND", `SELECT * FROM devices WHERE tags.x = 1 AND`, "", `expected an expression, found end of query`},
	{"TOP without number", `SELECT TOP x * FROM devices`, "x", `expected a non-negative integer after TOP, found "x"`},
	{"TOP negative", `SELECT TOP -1 * FROM devices`, "-", `expected a non-negative integer after TOP, found "-"`},
	{"GROUP without BY", `SELECT COUNT() AS n FROM devices GROUP status`, "status", `expected BY, found "status"`},
	{"GROUP BY expression", `SELECT COUNT() AS n FROM devices GROUP BY 1`, "1", `expected a property path, found "1"`},
	{"star and more", `SELECT *, deviceId FROM devices`, ",", `expected FROM, found ","`},
	{"dot without name", `SELECT * FROM devices WHERE tags. = 1`, "= 1", `expected a property name after ., found "="`},
	{"bad index", `SELECT * FROM devices WHERE tags.list[-1] = 1`, "-1", `expected a property name string or array index, found "-"`},
	{"number glued to letters", `SELECT * FROM devices WHERE tags.x = 12abc`, "12abc", `invalid number "12abc"`},
	{"bad hex", `SELECT * FROM devices WHERE tags.x = 0xZZ`, "0xZZ", `invalid number "0xZZ"`},
	{"number out of range", `SELECT * FROM devices WHERE tags.x = 1e999`, "1e999", `number "1e999" out of range`},
	{"alias missing", `SELECT deviceId AS FROM devices`, "FROM", `expected an alias, found "FROM"`},
	{"invalid UTF-8", "SELECT * FROM devices WHERE tags.x = '\xff'", "\xff", `invalid UTF-8`},
	{"too deep", `SELECT * FROM devices WHERE ` + strings.Repeat("(", 60) + "true" + strings.Repeat(")", 60), strings.Repeat("(", 20) + "true", `expression nested deeper than 40 levels`},
	{"too long", `SELECT * FROM devices WHERE deviceId = '` + strings.Repeat("x", MaxQueryLength) + `'`, "", `query longer than 8192 bytes`},
}

func TestSyntaxErrors(t *testing.T) {
	for _, tc := range syntaxCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.query)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error = %v, want *SyntaxError", tc.query, err)
			}
			pos := len(tc.query)
			switch {
			case tc.name == "too long":
				pos = MaxQueryLength
			case tc.at != "":
				pos = strings.Index(tc.query, tc.at)
			}
			if se.Pos != pos || se.Msg != tc.msg {
				t.Errorf("Parse(%q) = at %d: %s\n                 want at %d: %s", tc.query, se.Pos, se.Msg, pos, tc.msg)
			}
		})
	}
}

func TestSyntaxErrorFormat(t *testing.T) {
	_, err := Parse(`SELECT * FROM devices WHERE deviceId = 1 WHERE`)
	if got, want := err.Error(), `query: at 41: expected end of query, found "WHERE"`; got != want {
		t.Errorf("Error() = %s, want %s", got, want)
	}
	_, err = Parse(`SELECT * FRM devices`)
	if got, want := err.Error(), `query: at 9: expected FROM, found "FRM"`; got != want {
		t.Errorf("Error() = %s, want %s", got, want)
	}
}

func TestConditionErrors(t *testing.T) {
	cases := []struct {
		cond string
		pos  int
		msg  string
	}{
		{"", 0, "expected an expression, found end of query"},
		{"deviceId = 'a' SELECT", 15, `expected end of condition, found "SELECT"`},
		{"* AND deviceId = 'a'", 0, `expected an expression, found "*"`},
		{"COUNT() > 1", 0, "aggregate COUNT is allowed only in the SELECT list"},
	}
	for _, tc := range cases {
		t.Run(tc.cond, func(t *testing.T) {
			_, err := ParseCondition(tc.cond)
			var se *SyntaxError
			if !errors.As(err, &se) || se.Pos != tc.pos || se.Msg != tc.msg {
				t.Errorf("ParseCondition(%q) = %v, want at %d: %s", tc.cond, err, tc.pos, tc.msg)
			}
		})
	}
}

// compileErrorCases parse but cannot be compiled against devices.
var compileErrorCases = []struct {
	name, query, at, msg string
	unsupported          bool
}{
	{name: "unknown property", query: `SELECT * FROM devices WHERE tag.x = 1`, at: "tag", msg: `unknown property "tag"`},
	{name: "unknown projected property", query: `SELECT foo FROM devices`, at: "foo", msg: `unknown property "foo"`},
	{name: "ungrouped projection", query: `SELECT deviceId, COUNT() AS n FROM devices`, at: "deviceId", msg: `deviceId must be inside an aggregate or listed in GROUP BY`},
	{name: "projection not in GROUP BY", query: `SELECT deviceId, COUNT() AS n FROM devices GROUP BY status`, at: "deviceId", msg: `deviceId must be inside an aggregate or listed in GROUP BY`},
	{name: "GROUP BY with star", query: `SELECT * FROM devices GROUP BY status`, at: "status", msg: `GROUP BY needs a projection, not SELECT *`},
	{name: "duplicate output name", query: `SELECT tags.a, properties.reported.a FROM devices`, at: "properties", msg: `duplicate output name "a"; use AS`},
	{name: "jobs projection", query: `SELECT deviceId FROM devices.jobs`, at: "deviceId", msg: `FROM devices.jobs supports only SELECT *`},
	{name: "modules", query: `SELECT * FROM devices.modules WHERE deviceId = 'x'`, unsupported: true},
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range compileErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.query, err)
			}
			_, err = Compile(q)
			if tc.unsupported {
				if !errors.Is(err, ErrUnsupported) {
					t.Errorf("Compile(%q) = %v, want ErrUnsupported", tc.query, err)
				}
				return
			}
			var se *SyntaxError
			pos := strings.Index(tc.query, tc.at)
			if !errors.As(err, &se) || se.Pos != pos || se.Msg != tc.msg {
				t.Errorf("Compile(%q) = %v, want at %d: %s", tc.query, err, pos, tc.msg)
			}
		})
	}
}

// TestGarbage feeds hand-picked hostile input to every entry point.
func TestGarbage(t *testing.T) {
	inputs := []string{"\x00", "SELECT\x00", "'", `"`, `\`, "SELECT * FROM devices WHERE " + strings.Repeat("NOT ", 100) + "true",
		"SELECT * FROM devices WHERE " + strings.Repeat("-", 100) + "1 = 1", "SELECT * FROM devices WHERE tags" + strings.Repeat("[0]", 500) + " = 1",
		"SELECT * FROM devices WHERE 1" + strings.Repeat(" + 1", 100) + " = 1", "SELECT TOP 99999999999999999999 * FROM devices",
		"SELECT * FROM devices WHERE tags.x IN [" + strings.Repeat("1,", 2000) + "1]"}
	for _, in := range inputs {
		q, err := Parse(in)
		if err == nil {
			if _, err := Compile(q); err != nil {
				t.Logf("compile %q: %v", in, err)
			}
		}
		_, _ = ParseCondition(in)
	}
}
