package query

import (
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
)

var (
	fuzzDBOnce sync.Once
	fuzzDB     *sql.DB
)

// FuzzParse checks that parsing never panics, that errors carry a position
// inside the input, that printing a parsed query re-parses to the same text,
// and that whatever compiles also runs on SQLite over the fixture fleet.
// The committed corpus is under testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, tc := range twinCases {
		f.Add(tc.query)
	}
	for _, tc := range rowCases {
		f.Add(tc.query)
	}
	for _, tc := range syntaxCases {
		if len(tc.query) <= MaxQueryLength {
			f.Add(tc.query)
		}
	}
	fuzzDBOnce.Do(func() { fuzzDB = openFleet(f) })
	db := fuzzDB
	f.Fuzz(func(t *testing.T, text string) {
		q, err := Parse(text)
		if err != nil {
			checkSyntaxError(t, text, err)
		} else {
			printed := q.String()
			q2, err := Parse(printed)
			switch {
			case err != nil && len(printed) > MaxQueryLength:
				// String escapes control characters (\u0002 for one byte), so
				// a query near the length limit can print longer than it;
				// such a print is not expected to parse again.
			case err != nil:
				t.Fatalf("Parse(%q) ok, but its String %q does not parse: %v", text, printed, err)
			default:
				if again := q2.String(); again != printed {
					t.Fatalf("String not stable for %q:\n%s\n%s", text, printed, again)
				}
			}
			plan, err := Compile(q)
			if err != nil {
				checkCompileError(t, text, err)
			} else {
				checkRuns(t, db, text, plan.SQL, plan.Args)
			}
		}

		e, err := ParseCondition(text)
		if err != nil {
			checkSyntaxError(t, text, err)
			return
		}
		where, args, err := CompileCondition(e)
		if err != nil {
			checkCompileError(t, text, err)
			return
		}
		checkRuns(t, db, text, "SELECT device_id FROM devices WHERE "+where, args)
	})
}

func checkSyntaxError(t *testing.T, text string, err error) {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("Parse(%q) error %v is not a *SyntaxError", text, err)
	}
	if se.Pos < 0 || se.Pos > len(text) {
		t.Fatalf("Parse(%q) error position %d outside the input", text, se.Pos)
	}
}

func checkCompileError(t *testing.T, text string, err error) {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) && !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Compile(%q) unexpected error type: %v", text, err)
	}
}

func checkRuns(t *testing.T, db *sql.DB, text, sqlText string, args []any) {
	t.Helper()
	if n := strings.Count(sqlText, "?"); n != len(args) {
		t.Fatalf("query %q: %d placeholders for %d args in %s", text, n, len(args), sqlText)
	}
	rows, err := db.Query(sqlText, args...)
	if err != nil {
		t.Fatalf("query %q compiled to SQL SQLite rejects: %v\n%s %v", text, err, sqlText, args)
	}
	defer rows.Close()
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q failed at run time: %v\n%s %v", text, err, sqlText, args)
	}
}
