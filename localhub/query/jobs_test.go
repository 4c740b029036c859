package query

import (
	"errors"
	"strings"
	"testing"
)

func TestCompileDeviceJobs(t *testing.T) {
	cases := []struct {
		name, query string
		where       string // expected in the SQL
		args        int
	}{
		{"all", `SELECT * FROM devices.jobs`, "", 0},
		{"prefixed fields", `SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'd1' AND devices.jobs.jobId = 'j' AND devices.jobs.status = 'completed'`, "jd.device_id", 3},
		{"bare fields", `SELECT * FROM devices.jobs WHERE jobType = 'scheduleUpdateTwin'`, "j.type", 1},
		{"doc alias of created", `SELECT * FROM devices.jobs WHERE devices.jobs.createdTimeUtc > '2016-09-01'`, "jd.created", 1},
		{"outcome path", `SELECT * FROM devices.jobs WHERE devices.jobs.outcome.deviceMethodResponse.status = 200`, "jd.outcome", 1},
		{"top", `SELECT TOP 5 * FROM devices.jobs`, "LIMIT ?", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.query, err)
			}
			p, err := Compile(q)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tc.query, err)
			}
			if p.Kind != KindDeviceJobs || p.Kind.String() != "deviceJob" || !strings.Contains(p.SQL, tc.where) || len(p.Args) != tc.args {
				t.Fatalf("Compile(%q) = %v %s %v", tc.query, p.Kind, p.SQL, p.Args)
			}
		})
	}
}

func TestCompileDeviceJobsErrors(t *testing.T) {
	cases := []struct{ name, query, at, msg string }{
		{"projection", `SELECT deviceId FROM devices.jobs`, "deviceId", "FROM devices.jobs supports only SELECT *"},
		{"twin field", `SELECT * FROM devices.jobs WHERE tags.site = 'a'`, "tags", `unknown property "tags" of devices.jobs`},
		{"unknown field", `SELECT * FROM devices.jobs WHERE devices.jobs.nope = 1`, "nope", `unknown property "nope" of devices.jobs`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.query, err)
			}
			_, err = Compile(q)
			var se *SyntaxError
			if !errors.As(err, &se) || se.Pos != strings.Index(tc.query, tc.at) || !strings.HasPrefix(se.Msg, tc.msg) {
				t.Fatalf("Compile(%q) = %v, want at %d: %s", tc.query, err, strings.Index(tc.query, tc.at), tc.msg)
			}
		})
	}
}
