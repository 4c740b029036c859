package query

import (
	"fmt"
	"strings"
)

// This file binds FROM devices.jobs to the jobs_devices and jobs tables
// (../store/schema.sql): one row per device of a Jobs v2 job [IoT Hub query
// language, "Device jobs queries"]. As on Azure, only SELECT * is allowed
// and conditions may use only the job record's own fields, written with or
// without the devices.jobs. prefix.

// jobsFrom is the FROM clause of a devices.jobs query; jd is the device
// record, j its job.
const jobsFrom = " FROM jobs_devices AS jd JOIN jobs AS j ON j.job_id = jd.job_id"

// jobItem renders a record in Azure's devices.jobs shape [IoT Hub notes 3.4],
// plus the record's error ({code, description} or null) and Drover's attempt count.
const jobItem = "json_object('deviceId', jd.device_id, 'jobId', jd.job_id, 'jobType', j.type, 'status', jd.status," +
	" 'startTimeUtc', jd.start_time, 'endTimeUtc', jd.end_time, 'createdDateTimeUtc', jd.created," +
	" 'lastUpdatedDateTimeUtc', jd.last_updated, 'outcome', json(jd.outcome), 'error', json(jd.error), 'attempts', jd.attempts)"

// jobFields maps a lower-cased devices.jobs field to its resolver. The docs
// filter on createdTimeUtc although records carry createdDateTimeUtc; both
// are accepted.
var jobFields = map[string]struct {
	name    string
	resolve func(rest []Segment) value
}{
	"deviceid":               {"deviceId", textCol("jd.device_id")},
	"jobid":                  {"jobId", textCol("jd.job_id")},
	"jobtype":                {"jobType", textCol("j.type")},
	"status":                 {"status", textCol("jd.status")},
	"starttimeutc":           {"startTimeUtc", textCol("jd.start_time")},
	"endtimeutc":             {"endTimeUtc", textCol("jd.end_time")},
	"createddatetimeutc":     {"createdDateTimeUtc", textCol("jd.created")},
	"createdtimeutc":         {"createdDateTimeUtc", textCol("jd.created")},
	"lastupdateddatetimeutc": {"lastUpdatedDateTimeUtc", textCol("jd.last_updated")},
	"attempts":               {"attempts", numCol("jd.attempts")},
	"outcome":                {"outcome", jsonCol("jd.outcome")},
	"error":                  {"error", jsonCol("jd.error")},
}

// resolveJobPath compiles a path of a devices.jobs condition.
func resolveJobPath(p *Path) (value, error) {
	segs := p.Segments
	if len(segs) > 2 && structural(segs[0], "devices") && structural(segs[1], "jobs") {
		segs = segs[2:]
	}
	head := segs[0]
	f, ok := jobFields[strings.ToLower(head.Name)]
	if !ok || head.IsIndex {
		return value{}, errAt(head.Pos, fmt.Sprintf("unknown property %q of devices.jobs (want deviceId, jobId, jobType, status, startTimeUtc, endTimeUtc, createdDateTimeUtc, lastUpdatedDateTimeUtc or outcome)", head.Name))
	}
	v := f.resolve(segs[1:])
	if len(segs) == 1 {
		v.key = f.name
	}
	return v, nil
}

// compileJobs compiles SELECT [TOP n] * FROM devices.jobs [WHERE ...]; rows
// come in job id, then device id order.
func compileJobs(q *Query) (*Plan, error) {
	if !q.Star {
		if len(q.Select) > 0 {
			return nil, errAt(q.Select[0].Expr.Pos(), "FROM devices.jobs supports only SELECT *")
		}
		return nil, fmt.Errorf("compile query from %s: empty SELECT list: %w", q.From, ErrUnsupported)
	}
	if len(q.GroupBy) > 0 {
		return nil, errAt(q.GroupBy[0].Pos(), "FROM devices.jobs does not support GROUP BY")
	}
	b := &builder{resolve: resolveJobPath}
	sql := "SELECT " + jobItem + " AS item" + jobsFrom
	if q.Where != nil {
		v, err := b.compileCondition(q.Where)
		if err != nil {
			return nil, err
		}
		sql += " WHERE " + truthOf(v)
	}
	sql += " ORDER BY jd.job_id, jd.device_id"
	if q.Top != nil {
		sql += " LIMIT " + b.param(*q.Top)
	}
	s, args := b.finish(sql)
	return &Plan{Kind: KindDeviceJobs, SQL: s, Args: args}, nil
}
