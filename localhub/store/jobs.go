package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Job types [IoT Hub REST, Jobs v2 "type"].
const (
	JobUpdateTwin   = "scheduleUpdateTwin"
	JobDeviceMethod = "scheduleDeviceMethod"
)

// Job statuses [IoT Hub REST, JobResponse "status"]. A job is active while
// queued, scheduled or running; the other three are terminal.
const (
	JobQueued    = "queued"
	JobScheduled = "scheduled"
	JobRunning   = "running"
	JobCompleted = "completed"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// Statuses of a job's per-device record (devices.jobs "status").
const (
	DeviceJobPending   = "pending"
	DeviceJobRunning   = "running"
	DeviceJobCompleted = "completed"
	DeviceJobFailed    = "failed"
	DeviceJobCancelled = "cancelled"
)

// JobTerminal reports whether a job status is final.
func JobTerminal(status string) bool {
	return status == JobCompleted || status == JobFailed || status == JobCancelled
}

// JobSpec is what a job does, as accepted from the request. It is stored as
// JSON with the wire names of the Jobs v2 API plus Drover's rollout
// extensions (AWS IoT Jobs style).
type JobSpec struct {
	QueryCondition            string        `json:"queryCondition"`
	UpdateTwin                *JobTwinPatch `json:"updateTwin,omitempty"`
	CloudToDeviceMethod       *JobMethod    `json:"cloudToDeviceMethod,omitempty"`
	MaxExecutionTimeInSeconds int64         `json:"maxExecutionTimeInSeconds"`
	Rollout                   *JobRollout   `json:"rollout,omitempty"`
	Abort                     *JobAbort     `json:"abort,omitempty"`
	DeviceTimeoutInSeconds    int64         `json:"deviceTimeoutInSeconds,omitempty"`
	Retry                     *JobRetry     `json:"retry,omitempty"`
	AwaitReported             *JobAwait     `json:"awaitReported,omitempty"`
}

// JobAwait makes a twin job's device finish only once its twin shows the
// outcome of the change (localhub extension, used by firmware deployments):
// after the patch is written the record stays running until the device's
// twin matches Succeeded (completed) or Failed (failed, code
// DeviceReportedFailure), or a timeout or the job's end cuts the wait.
// Both are query conditions, like queryCondition.
type JobAwait struct {
	Succeeded string `json:"succeeded"`
	Failed    string `json:"failed,omitempty"`
}

// JobTwinPatch is a twin job's patch: tags and desired properties, each a
// JSON object or absent.
type JobTwinPatch struct {
	Tags       json.RawMessage    `json:"tags,omitempty"`
	Properties *JobTwinProperties `json:"properties,omitempty"`
	Etag       string             `json:"etag,omitempty"`
}

// JobTwinProperties holds the desired-properties patch of a twin job.
type JobTwinProperties struct {
	Desired json.RawMessage `json:"desired,omitempty"`
}

// JobMethod is a method job's call [IoT Hub REST, CloudToDeviceMethod].
type JobMethod struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload"`
	ResponseTimeoutInSeconds int             `json:"responseTimeoutInSeconds"`
	ConnectTimeoutInSeconds  int             `json:"connectTimeoutInSeconds"`
}

// Rollout types.
const (
	RolloutConstant    = "constant"
	RolloutExponential = "exponential"
)

// JobRollout limits how many devices start per minute (AWS IoT Jobs
// jobExecutionsRolloutConfig). Constant: DevicesPerMinute. Exponential:
// BaseRatePerMinute, multiplied by IncrementFactor each time
// RateIncreaseCriteria.NumberOfSucceeded more devices have succeeded, capped
// by DevicesPerMinute when set.
type JobRollout struct {
	Type                 string           `json:"type"`
	DevicesPerMinute     int              `json:"devicesPerMinute,omitempty"`
	BaseRatePerMinute    int              `json:"baseRatePerMinute,omitempty"`
	IncrementFactor      float64          `json:"incrementFactor,omitempty"`
	RateIncreaseCriteria *JobRateIncrease `json:"rateIncreaseCriteria,omitempty"`
}

// JobRateIncrease says when an exponential rollout speeds up.
type JobRateIncrease struct {
	NumberOfSucceeded int `json:"numberOfSucceeded"`
}

// JobAbort stops a job when, after MinDevices devices have finished, the
// share that failed exceeds FailureThresholdPercent (AWS IoT Jobs abortConfig).
type JobAbort struct {
	FailureThresholdPercent float64 `json:"failureThresholdPercent"`
	MinDevices              int     `json:"minDevices"`
}

// Failure types a retry may be asked for.
const (
	RetryOnTimeout = "timeout"
	RetryOnFailed  = "failed"
)

// JobRetry retries a device whose attempt failed with one of the On types,
// up to MaxAttempts attempts in all.
type JobRetry struct {
	MaxAttempts int      `json:"maxAttempts"`
	On          []string `json:"on"`
}

// JobStats are a job's per-device counts [IoT Hub REST, DeviceJobStatistics].
// FailedCount includes the cancelled records (CancelledCount of them), so that
// DeviceCount = Succeeded + Failed + Running + Pending.
type JobStats struct {
	DeviceCount    int `json:"deviceCount"`
	FailedCount    int `json:"failedCount"`
	SucceededCount int `json:"succeededCount"`
	RunningCount   int `json:"runningCount"`
	PendingCount   int `json:"pendingCount"`
	CancelledCount int `json:"cancelledCount"`
}

// Job is a Jobs v2 job with its per-device counts.
type Job struct {
	ID            string
	Type          string
	Status        string
	Spec          JobSpec
	Created       time.Time
	Start         time.Time // when the job may start
	End           time.Time // zero until the job is terminal
	Snapshot      bool      // the device set is in jobs_devices
	FailureReason string
	StatusMessage string
	Stats         JobStats
}

// JobError is a device record's error [devices.jobs "error"].
type JobError struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

// JobDevice is one device's record in a job.
type JobDevice struct {
	JobID       string
	DeviceID    string
	Status      string
	Attempts    int
	Outcome     json.RawMessage // {"deviceMethodResponse": null | {"status", "payload"}}
	Error       *JobError
	Created     time.Time
	Start       time.Time
	End         time.Time
	LastUpdated time.Time
}

const jobCols = `job_id, type, status, spec, created, start_time, end_time, snapshot, failure_reason, status_message`

func scanJob(sc scanner) (Job, error) {
	var j Job
	var spec, created, start, end string
	var snap int
	if err := sc.Scan(&j.ID, &j.Type, &j.Status, &spec, &created, &start, &end, &snap, &j.FailureReason, &j.StatusMessage); err != nil {
		return j, err
	}
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return j, fmt.Errorf("job %s: decode spec: %w", j.ID, err)
	}
	j.Created, j.Start, j.End = parseTime(created), parseTime(start), parseTime(end)
	j.Snapshot = snap != 0
	return j, nil
}

// CreateJob stores a new job (ErrExists when the id is taken).
func (s *Store) CreateJob(ctx context.Context, j Job) error {
	spec, err := json.Marshal(j.Spec)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return s.write(ctx, "create job "+j.ID, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM jobs WHERE job_id = ?`, j.ID).Scan(&n); err != nil {
			return fmt.Errorf("create job %s: %w", j.ID, err)
		}
		if n > 0 {
			return fmt.Errorf("job %s: %w", j.ID, ErrExists)
		}
		_, err := tx.Exec(`INSERT INTO jobs(`+jobCols+`) VALUES(?, ?, ?, ?, ?, ?, ?, 0, '', '')`,
			j.ID, j.Type, j.Status, string(spec), fmtTime(j.Created), fmtTime(j.Start), fmtTime(time.Time{}))
		if err != nil {
			return fmt.Errorf("create job %s: %w", j.ID, err)
		}
		return nil
	})
}

// GetJob reads a job and its per-device counts.
func (s *Store) GetJob(ctx context.Context, id string) (Job, error) {
	j, err := scanJob(s.rd.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE job_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return j, fmt.Errorf("read job %s: %w", id, err)
	}
	if j.Stats, err = s.JobStats(ctx, id); err != nil {
		return j, err
	}
	return j, nil
}

// JobStats counts a job's device records by status.
func (s *Store) JobStats(ctx context.Context, id string) (JobStats, error) {
	var st JobStats
	rows, err := s.rd.QueryContext(ctx, `SELECT status, COUNT(*) FROM jobs_devices WHERE job_id = ? GROUP BY status`, id)
	if err != nil {
		return st, fmt.Errorf("count devices of job %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return st, fmt.Errorf("count devices of job %s: %w", id, err)
		}
		st.DeviceCount += n
		switch status {
		case DeviceJobPending:
			st.PendingCount += n
		case DeviceJobRunning:
			st.RunningCount += n
		case DeviceJobCompleted:
			st.SucceededCount += n
		case DeviceJobFailed:
			st.FailedCount += n
		case DeviceJobCancelled:
			st.FailedCount += n
			st.CancelledCount += n
		}
	}
	return st, rows.Err()
}

// JobFilter selects jobs for ListJobs; empty fields match everything.
type JobFilter struct {
	Type   string
	Status string
}

// ListJobs returns one page of jobs, oldest first, with their counts.
func (s *Store) ListJobs(ctx context.Context, f JobFilter, limit, offset int) ([]Job, error) {
	q := `SELECT ` + jobCols + ` FROM jobs WHERE 1`
	var args []any
	if f.Type != "" {
		q += ` AND type = ?`
		args = append(args, f.Type)
	}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	q += ` ORDER BY created, job_id LIMIT ? OFFSET ?`
	args = append(args, limit, offset)
	jobs, err := s.readJobs(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		if jobs[i].Stats, err = s.JobStats(ctx, jobs[i].ID); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

// JobCountsByStatus counts Jobs v2 jobs per status (the metrics' job gauge).
func (s *Store) JobCountsByStatus(ctx context.Context) (map[string]int, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT status, COUNT(*) FROM jobs GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count jobs by status: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count jobs by status: %w", err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count jobs by status: %w", err)
	}
	return out, nil
}

// ActiveJobs returns the jobs that are queued, scheduled or running, oldest first.
func (s *Store) ActiveJobs(ctx context.Context) ([]Job, error) {
	return s.readJobs(ctx, `SELECT `+jobCols+` FROM jobs WHERE status IN (?, ?, ?) ORDER BY created, job_id`,
		JobQueued, JobScheduled, JobRunning)
}

func (s *Store) readJobs(ctx context.Context, q string, args ...any) ([]Job, error) {
	rows, err := s.rd.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	out := []Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// StartJob snapshots the job's device set and marks it running, in one
// transaction: every device matching where (an SQL predicate over the
// devices table with args) gets a pending record. It does nothing and
// returns started=false when the job is no longer queued or scheduled (it
// was cancelled, or already started).
func (s *Store) StartJob(ctx context.Context, id, where string, args []any, at time.Time) (started bool, err error) {
	err = s.write(ctx, "start job "+id, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE jobs SET status = ?, snapshot = 1 WHERE job_id = ? AND status IN (?, ?) AND snapshot = 0`,
			JobRunning, id, JobQueued, JobScheduled)
		if err != nil {
			return fmt.Errorf("start job %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		now := fmtTime(at)
		all := append([]any{id, now, now}, args...)
		if _, err := tx.Exec(`INSERT INTO jobs_devices(job_id, device_id, created, last_updated) SELECT ?, device_id, ?, ? FROM devices WHERE `+where, all...); err != nil {
			return fmt.Errorf("snapshot devices of job %s: %w", id, err)
		}
		started = true
		return nil
	})
	return started, err
}

// FinishJob moves an active job to a terminal status and cancels its pending
// device records with cancelErr (when non-nil). It returns false when the
// job was already terminal, and then changes nothing.
func (s *Store) FinishJob(ctx context.Context, id, status, failureReason, message string, cancelErr *JobError, at time.Time) (bool, error) {
	if !JobTerminal(status) {
		return false, fmt.Errorf("finish job %s: %q is not a terminal status", id, status)
	}
	var changed bool
	err := s.write(ctx, "finish job "+id, func(tx *sql.Tx) error {
		var err error
		changed, err = finishJob(tx, id, status, failureReason, message, cancelErr, at)
		return err
	})
	return changed, err
}

func finishJob(tx *sql.Tx, id, status, failureReason, message string, cancelErr *JobError, at time.Time) (bool, error) {
	now := fmtTime(at)
	res, err := tx.Exec(`UPDATE jobs SET status = ?, end_time = ?, failure_reason = ?, status_message = ? WHERE job_id = ? AND status IN (?, ?, ?)`,
		status, now, failureReason, message, id, JobQueued, JobScheduled, JobRunning)
	if err != nil {
		return false, fmt.Errorf("finish job %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if cancelErr != nil {
		e, err := json.Marshal(cancelErr)
		if err != nil {
			return false, fmt.Errorf("finish job %s: %w", id, err)
		}
		if _, err := tx.Exec(`UPDATE jobs_devices SET status = ?, error = ?, end_time = ?, last_updated = ? WHERE job_id = ? AND status = ?`,
			DeviceJobCancelled, string(e), now, now, id, DeviceJobPending); err != nil {
			return false, fmt.Errorf("cancel pending devices of job %s: %w", id, err)
		}
	}
	return true, nil
}

// CancelJob cancels an active job: its pending device records are cancelled
// at once, records already running finish on their own. A terminal job is
// returned unchanged.
func (s *Store) CancelJob(ctx context.Context, id string, at time.Time) (Job, error) {
	err := s.write(ctx, "cancel job "+id, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM jobs WHERE job_id = ?`, id).Scan(&n); err != nil {
			return fmt.Errorf("cancel job %s: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("job %s: %w", id, ErrNotFound)
		}
		_, err := finishJob(tx, id, JobCancelled, "", "cancelled by request", &JobError{Code: "JobCancelled", Description: "the job was cancelled before this device started"}, at)
		return err
	})
	if err != nil {
		return Job{}, err
	}
	return s.GetJob(ctx, id)
}

// JobDevices returns up to limit of a job's records with the given status,
// in device id order, starting after the device id after.
func (s *Store) JobDevices(ctx context.Context, jobID, status, after string, limit int) ([]JobDevice, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT job_id, device_id, status, attempts, outcome, error, created, start_time, end_time, last_updated
		FROM jobs_devices WHERE job_id = ? AND status = ? AND device_id > ? ORDER BY device_id LIMIT ?`, jobID, status, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s devices of job %s: %w", status, jobID, err)
	}
	defer rows.Close()
	var out []JobDevice
	for rows.Next() {
		var d JobDevice
		var outcome, jerr, created, start, end, last string
		if err := rows.Scan(&d.JobID, &d.DeviceID, &d.Status, &d.Attempts, &outcome, &jerr, &created, &start, &end, &last); err != nil {
			return nil, fmt.Errorf("list %s devices of job %s: %w", status, jobID, err)
		}
		d.Outcome = json.RawMessage(outcome)
		if jerr != "" && jerr != "null" {
			d.Error = &JobError{}
			if err := json.Unmarshal([]byte(jerr), d.Error); err != nil {
				return nil, fmt.Errorf("device %s in job %s: decode error: %w", d.DeviceID, jobID, err)
			}
		}
		d.Created, d.Start, d.End, d.LastUpdated = parseTime(created), parseTime(start), parseTime(end), parseTime(last)
		out = append(out, d)
	}
	return out, rows.Err()
}

// BeginJobDevice moves a pending record to running and counts the attempt.
// It returns ok=false (and changes nothing) when the record is not pending
// or the job is no longer running, so a cancel and a dispatch never both win.
func (s *Store) BeginJobDevice(ctx context.Context, jobID, deviceID string, at time.Time) (attempt int, ok bool, err error) {
	err = s.write(ctx, "begin device "+deviceID+" of job "+jobID, func(tx *sql.Tx) error {
		now := fmtTime(at)
		res, err := tx.Exec(`UPDATE jobs_devices SET status = ?, attempts = attempts + 1, start_time = ?, end_time = ?, last_updated = ?
			WHERE job_id = ? AND device_id = ? AND status = ? AND (SELECT status FROM jobs WHERE job_id = ?) = ?`,
			DeviceJobRunning, now, fmtTime(time.Time{}), now, jobID, deviceID, DeviceJobPending, jobID, JobRunning)
		if err != nil {
			return fmt.Errorf("begin device %s of job %s: %w", deviceID, jobID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		ok = true
		return tx.QueryRow(`SELECT attempts FROM jobs_devices WHERE job_id = ? AND device_id = ?`, jobID, deviceID).Scan(&attempt)
	})
	return attempt, ok, err
}

// EndJobDevice records the result of a running device: status is
// completed, failed or cancelled (final), or pending to queue a retry.
// outcome nil keeps the stored outcome.
func (s *Store) EndJobDevice(ctx context.Context, jobID, deviceID, status string, outcome json.RawMessage, jerr *JobError, at time.Time) error {
	var e []byte
	if jerr != nil {
		var err error
		if e, err = json.Marshal(jerr); err != nil {
			return fmt.Errorf("end device %s of job %s: %w", deviceID, jobID, err)
		}
	} else {
		e = []byte("null")
	}
	end := fmtTime(at)
	if status == DeviceJobPending {
		end = fmtTime(time.Time{})
	}
	return s.write(ctx, "end device "+deviceID+" of job "+jobID, func(tx *sql.Tx) error {
		q := `UPDATE jobs_devices SET status = ?, error = ?, end_time = ?, last_updated = ?`
		args := []any{status, string(e), end, fmtTime(at)}
		if outcome != nil {
			q += `, outcome = ?`
			args = append(args, string(outcome))
		}
		q += ` WHERE job_id = ? AND device_id = ? AND status = ?`
		args = append(args, jobID, deviceID, DeviceJobRunning)
		if _, err := tx.Exec(q, args...); err != nil {
			return fmt.Errorf("end device %s of job %s: %w", deviceID, jobID, err)
		}
		return nil
	})
}

// CancelPendingJobDevices cancels the pending records of a job that has
// ended (a retry queued while the job was stopping), with jerr as their error.
func (s *Store) CancelPendingJobDevices(ctx context.Context, jobID string, jerr JobError, at time.Time) error {
	e, err := json.Marshal(jerr)
	if err != nil {
		return fmt.Errorf("cancel pending devices of job %s: %w", jobID, err)
	}
	return s.write(ctx, "cancel pending devices of job "+jobID, func(tx *sql.Tx) error {
		now := fmtTime(at)
		_, err := tx.Exec(`UPDATE jobs_devices SET status = ?, error = ?, end_time = ?, last_updated = ?
			WHERE job_id = ? AND status = ? AND (SELECT status FROM jobs WHERE job_id = ?) IN (?, ?, ?)`,
			DeviceJobCancelled, string(e), now, now, jobID, DeviceJobPending, jobID, JobCompleted, JobFailed, JobCancelled)
		if err != nil {
			return fmt.Errorf("cancel pending devices of job %s: %w", jobID, err)
		}
		return nil
	})
}

// DeleteJobsEndedBefore removes terminal jobs (and their device records)
// that ended before t: Azure keeps job history for 30 days.
func (s *Store) DeleteJobsEndedBefore(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, "delete old jobs", func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM jobs WHERE status IN (?, ?, ?) AND end_time < ?`, JobCompleted, JobFailed, JobCancelled, fmtTime(t))
		if err != nil {
			return fmt.Errorf("delete old jobs: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// FormatJobTime renders a job timestamp as the store writes it (fixed-width
// ISO-8601 UTC, so that string comparisons in devices.jobs queries order
// correctly).
func FormatJobTime(t time.Time) string { return fmtTime(t) }

// ValidJobStatus reports whether s is a job status.
func ValidJobStatus(s string) bool {
	switch s {
	case JobQueued, JobScheduled, JobRunning, JobCompleted, JobFailed, JobCancelled:
		return true
	}
	return false
}

// ValidJobType reports whether s is a job type this hub runs.
func ValidJobType(s string) bool { return s == JobUpdateTwin || s == JobDeviceMethod }

// jobIDChars lists the punctuation allowed in a job id (as for device ids).
const jobIDChars = "-.+%_#*?!(),=@$'"

// ValidateJobID checks a job id: 1–128 ASCII letters, digits and -.+%_#*?!(),=@$'.
func ValidateJobID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w %q: a job id must be 1 to 128 characters", ErrInvalidID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(jobIDChars, c) >= 0:
		default:
			return fmt.Errorf("%w %q: character %q is not allowed in a job id", ErrInvalidID, id, c)
		}
	}
	return nil
}

// DeviceMatches reports whether a device's row satisfies a compiled query
// condition (where, args); exists is false when there is no such device.
func (s *Store) DeviceMatches(ctx context.Context, id, where string, args []any) (matches, exists bool, err error) {
	var m int
	err = s.rd.QueryRowContext(ctx, `SELECT CASE WHEN `+where+` THEN 1 ELSE 0 END FROM devices WHERE device_id = ?`, append(append([]any{}, args...), id)...).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("match device %s: %w", id, err)
	}
	return m == 1, true, nil
}
