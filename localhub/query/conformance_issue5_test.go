package query

import (
	"database/sql"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Issue 5 asks for devices.jobs in the conformance table with expected
// results. The other tables run over devices only; these cases add two
// Jobs v2 jobs over the fixture fleet, with device records in every status
// and with method responses and errors, and run the compiled plans on them.

// fixtureJob is a row of the jobs table; fixtureJobDevice one of jobs_devices.
type fixtureJob struct{ id, typ, status string }

type fixtureJobDevice struct {
	job, device, status   string
	attempts              int
	outcome, err, created string
	start, end            string
}

var fleetJobs = []fixtureJob{
	{"boot", "scheduleDeviceMethod", "failed"},
	{"fw", "scheduleUpdateTwin", "completed"},
}

var fleetJobDevices = []fixtureJobDevice{
	{job: "fw", device: "d01", status: "completed", attempts: 1, created: "2030-01-02T03:00:00Z", start: "2030-01-02T03:00:01Z", end: "2030-01-02T03:00:02Z"},
	{job: "fw", device: "d02", status: "completed", attempts: 1, created: "2030-01-02T03:00:00Z", start: "2030-01-02T03:01:01Z", end: "2030-01-02T03:01:02Z"},
	{job: "fw", device: "d03", status: "completed", attempts: 2, created: "2030-01-02T03:00:00Z", start: "2030-01-02T03:02:01Z", end: "2030-01-02T03:02:02Z"},
	{job: "boot", device: "d01", status: "completed", attempts: 1, created: "2031-06-01T00:00:00Z", start: "2031-06-01T00:00:01Z", end: "2031-06-01T00:00:02Z",
		outcome: `{"deviceMethodResponse":{"status":200,"payload":{"ok":true,"took":12}}}`},
	{job: "boot", device: "d02", status: "failed", attempts: 3, created: "2031-06-01T00:00:00Z", start: "2031-06-01T00:00:01Z", end: "2031-06-01T00:00:05Z",
		outcome: `{"deviceMethodResponse":{"status":500,"payload":{"error":"busy"}}}`, err: `{"code":"DeviceMethodFailed","description":"the device answered 500"}`},
	{job: "boot", device: "d03", status: "failed", attempts: 1, created: "2031-06-01T00:00:00Z", start: "2031-06-01T00:00:01Z", end: "2031-06-01T00:00:01Z",
		err: `{"code":"DeviceNotOnline","description":"the device is not connected"}`},
	{job: "boot", device: "d04", status: "running", attempts: 1, created: "2031-06-01T00:00:00Z", start: "2031-06-01T00:00:02Z"},
	{job: "boot", device: "d05", status: "pending", created: "2031-06-01T00:00:00Z"},
	{job: "boot", device: "d12", status: "cancelled", created: "2031-06-01T00:00:00Z", end: "2031-06-01T00:00:06Z",
		err: `{"code":"JobAborted","description":"the job was aborted before this device started"}`},
}

// openJobFleet returns the fixture fleet with the jobs above.
func openJobFleet(tb testing.TB) *sql.DB {
	tb.Helper()
	db := openFleet(tb)
	for _, j := range fleetJobs {
		_, err := db.Exec(`INSERT INTO jobs (job_id, type, status, spec, created, start_time) VALUES (?, ?, ?, '{}', '2030-01-02T03:00:00Z', '2030-01-02T03:00:00Z')`,
			j.id, j.typ, j.status)
		if err != nil {
			tb.Fatalf("insert job %s: %v", j.id, err)
		}
	}
	for _, d := range fleetJobDevices {
		_, err := db.Exec(`INSERT INTO jobs_devices (job_id, device_id, status, attempts, outcome, error, created, start_time, end_time, last_updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.job, d.device, d.status, d.attempts, dflt(d.outcome, `{"deviceMethodResponse":null}`), dflt(d.err, "null"),
			d.created, dflt(d.start, "0001-01-01T00:00:00Z"), dflt(d.end, "0001-01-01T00:00:00Z"), dflt(d.end, d.created))
		if err != nil {
			tb.Fatalf("insert record %s/%s: %v", d.job, d.device, err)
		}
	}
	return db
}

// deviceJobCases map a devices.jobs query to the records it must return
// (jobId/deviceId, in the order the hub pages them: job id, then device id).
var deviceJobCases = []struct {
	name, query, want string
}{
	{"all records", `SELECT * FROM devices.jobs`, "boot/d01 boot/d02 boot/d03 boot/d04 boot/d05 boot/d12 fw/d01 fw/d02 fw/d03"},
	{"one device's jobs (doc example)", `SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'd02'`, "boot/d02 fw/d02"},
	{"one job's records, prefix-free", `SELECT * FROM devices.jobs WHERE jobId = 'fw'`, "fw/d01 fw/d02 fw/d03"},
	{"job type", `SELECT * FROM devices.jobs WHERE devices.jobs.jobType = 'scheduleUpdateTwin' AND devices.jobs.status = 'completed'`, "fw/d01 fw/d02 fw/d03"},
	{"status IN", `SELECT * FROM devices.jobs WHERE devices.jobs.status IN ['pending', 'running']`, "boot/d04 boot/d05"},
	{"status NIN", `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'boot' AND devices.jobs.status NIN ['completed', 'failed']`, "boot/d04 boot/d05 boot/d12"},
	{"NOT status", `SELECT * FROM devices.jobs WHERE NOT (status = 'completed') AND jobId = 'boot'`, "boot/d02 boot/d03 boot/d04 boot/d05 boot/d12"},
	{"createdTimeUtc (doc spelling)", `SELECT * FROM devices.jobs WHERE devices.jobs.createdTimeUtc > '2031-01-01'`, "boot/d01 boot/d02 boot/d03 boot/d04 boot/d05 boot/d12"},
	{"createdDateTimeUtc (record spelling)", `SELECT * FROM devices.jobs WHERE devices.jobs.createdDateTimeUtc < '2031-01-01'`, "fw/d01 fw/d02 fw/d03"},
	{"startTimeUtc range", `SELECT * FROM devices.jobs WHERE startTimeUtc >= '2030-01-02T03:01:00Z' AND startTimeUtc < '2030-01-02T04:00:00Z'`, "fw/d02 fw/d03"},
	{"endTimeUtc unset", `SELECT * FROM devices.jobs WHERE endTimeUtc = '0001-01-01T00:00:00Z'`, "boot/d04 boot/d05"},
	{"lastUpdatedDateTimeUtc", `SELECT * FROM devices.jobs WHERE lastUpdatedDateTimeUtc > '2031-06-01T00:00:04Z'`, "boot/d02 boot/d12"},
	{"method response status", `SELECT * FROM devices.jobs WHERE devices.jobs.outcome.deviceMethodResponse.status = 200`, "boot/d01"},
	{"method response status range", `SELECT * FROM devices.jobs WHERE devices.jobs.outcome.deviceMethodResponse.status >= 400`, "boot/d02"},
	{"method response payload", `SELECT * FROM devices.jobs WHERE outcome.deviceMethodResponse.payload.ok = true AND outcome.deviceMethodResponse.payload.took < 100`, "boot/d01"},
	{"no method response is null", `SELECT * FROM devices.jobs WHERE IS_NULL(outcome.deviceMethodResponse) AND jobId = 'boot'`, "boot/d03 boot/d04 boot/d05 boot/d12"},
	{"IS_DEFINED of a response payload key", `SELECT * FROM devices.jobs WHERE IS_DEFINED(outcome.deviceMethodResponse.payload.error)`, "boot/d02"},
	{"error code", `SELECT * FROM devices.jobs WHERE devices.jobs.error.code = 'DeviceNotOnline'`, "boot/d03"},
	{"error code IN", `SELECT * FROM devices.jobs WHERE error.code IN ['DeviceMethodFailed', 'JobAborted']`, "boot/d02 boot/d12"},
	{"no error", `SELECT * FROM devices.jobs WHERE IS_NULL(error) AND status = 'completed'`, "boot/d01 fw/d01 fw/d02 fw/d03"},
	{"error description CONTAINS", `SELECT * FROM devices.jobs WHERE CONTAINS(error.description, 'aborted')`, "boot/d12"},
	{"attempts (retries)", `SELECT * FROM devices.jobs WHERE attempts > 1`, "boot/d02 fw/d03"},
	{"STARTSWITH on a device id", `SELECT * FROM devices.jobs WHERE STARTSWITH(deviceId, 'd1')`, "boot/d12"},
	{"OR across jobs", `SELECT * FROM devices.jobs WHERE (jobId = 'fw' AND deviceId = 'd03') OR (jobId = 'boot' AND status = 'cancelled')`, "boot/d12 fw/d03"},
	{"keywords and names in any case", `select * from DEVICES.JOBS where Devices.Jobs.JOBID = 'fw' and DEVICEID = 'd01'`, "fw/d01"},
	{"TOP", `SELECT TOP 2 * FROM devices.jobs WHERE status = 'completed'`, "boot/d01 fw/d01"},
	{"nothing", `SELECT * FROM devices.jobs WHERE jobId = 'nosuch'`, ""},
}

// jobKeys reads jobId/deviceId of each devices.jobs row.
func jobKeys(t *testing.T, rows []string) []string {
	t.Helper()
	out := []string{}
	for _, r := range rows {
		var rec struct{ JobID, DeviceID string }
		if err := json.Unmarshal([]byte(r), &rec); err != nil {
			t.Fatalf("row %s: %v", r, err)
		}
		out = append(out, rec.JobID+"/"+rec.DeviceID)
	}
	return out
}

func TestConformanceDeviceJobs(t *testing.T) {
	db := openJobFleet(t)
	for _, tc := range deviceJobCases {
		t.Run(tc.name, func(t *testing.T) {
			plan := mustCompile(t, tc.query)
			if plan.Kind != KindDeviceJobs {
				t.Fatalf("Compile(%q).Kind = %v, want deviceJob", tc.query, plan.Kind)
			}
			got := jobKeys(t, runPlan(t, db, plan.SQL, plan.Args))
			if want := ids(tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("query %s\n got %v\nwant %v\n sql %s %v", tc.query, got, want, plan.SQL, plan.Args)
			}
		})
	}
}

// TestDeviceJobRecordShape checks whole records: Azure's devices.jobs keys,
// the method response and error as JSON (not strings), and the attempts.
func TestDeviceJobRecordShape(t *testing.T) {
	db := openJobFleet(t)
	cases := []struct{ name, query, want string }{
		{"method call answered", `SELECT * FROM devices.jobs WHERE jobId = 'boot' AND deviceId = 'd01'`,
			`[{"deviceId":"d01","jobId":"boot","jobType":"scheduleDeviceMethod","status":"completed","startTimeUtc":"2031-06-01T00:00:01Z",
			"endTimeUtc":"2031-06-01T00:00:02Z","createdDateTimeUtc":"2031-06-01T00:00:00Z","lastUpdatedDateTimeUtc":"2031-06-01T00:00:02Z",
			"outcome":{"deviceMethodResponse":{"status":200,"payload":{"ok":true,"took":12}}},"error":null,"attempts":1}]`},
		{"device offline", `SELECT * FROM devices.jobs WHERE jobId = 'boot' AND deviceId = 'd03'`,
			`[{"deviceId":"d03","jobId":"boot","jobType":"scheduleDeviceMethod","status":"failed","startTimeUtc":"2031-06-01T00:00:01Z",
			"endTimeUtc":"2031-06-01T00:00:01Z","createdDateTimeUtc":"2031-06-01T00:00:00Z","lastUpdatedDateTimeUtc":"2031-06-01T00:00:01Z",
			"outcome":{"deviceMethodResponse":null},"error":{"code":"DeviceNotOnline","description":"the device is not connected"},"attempts":1}]`},
		{"twin update", `SELECT * FROM devices.jobs WHERE jobId = 'fw' AND deviceId = 'd03'`,
			`[{"deviceId":"d03","jobId":"fw","jobType":"scheduleUpdateTwin","status":"completed","startTimeUtc":"2030-01-02T03:02:01Z",
			"endTimeUtc":"2030-01-02T03:02:02Z","createdDateTimeUtc":"2030-01-02T03:00:00Z","lastUpdatedDateTimeUtc":"2030-01-02T03:02:02Z",
			"outcome":{"deviceMethodResponse":null},"error":null,"attempts":2}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := mustCompile(t, tc.query)
			got := "[" + strings.Join(runPlan(t, db, plan.SQL, plan.Args), ",") + "]"
			if !sameJSON(t, got, tc.want) {
				t.Errorf("query %s\n got %s\nwant %s", tc.query, got, tc.want)
			}
			if want := "deviceId,jobId,jobType,status,startTimeUtc,endTimeUtc,createdDateTimeUtc,lastUpdatedDateTimeUtc,outcome,error,attempts"; firstKeys(got) != want {
				t.Errorf("keys %s, want %s", firstKeys(got), want)
			}
		})
	}
}

// TestPagingDeviceJobs pages devices.jobs the way the hub does: the pages
// put together are the whole result, in order, with nothing twice.
func TestPagingDeviceJobs(t *testing.T) {
	db := openJobFleet(t)
	for _, q := range []string{
		`SELECT * FROM devices.jobs`,
		`SELECT * FROM devices.jobs WHERE jobId = 'boot' AND status != 'completed'`,
		`SELECT TOP 5 * FROM devices.jobs`,
	} {
		t.Run(q, func(t *testing.T) {
			plan := mustCompile(t, q)
			all := runPlan(t, db, plan.SQL, plan.Args)
			for _, size := range []int{1, 2, 4, 100} {
				var paged []string
				for off := 0; ; off += size {
					page := runPlan(t, db, "SELECT * FROM ("+plan.SQL+") LIMIT ? OFFSET ?", append(append([]any{}, plan.Args...), size, off))
					paged = append(paged, page...)
					if len(page) < size {
						break
					}
				}
				if !reflect.DeepEqual(paged, all) {
					t.Errorf("page size %d: %v, want %v", size, jobKeys(t, paged), jobKeys(t, all))
				}
			}
		})
	}
}

// TestDeviceJobsGroupByError: devices.jobs has no GROUP BY; the error points
// at the grouped path.
func TestDeviceJobsGroupByError(t *testing.T) {
	q := `SELECT * FROM devices.jobs GROUP BY status`
	parsed, err := Parse(q)
	if err != nil {
		t.Fatalf("Parse(%q): %v", q, err)
	}
	_, err = Compile(parsed)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Pos != strings.Index(q, "status") || !strings.Contains(se.Msg, "GROUP BY") {
		t.Fatalf("Compile(%q) = %v, want an error at %d about GROUP BY", q, err, strings.Index(q, "status"))
	}
}
