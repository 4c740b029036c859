package serviceclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Jobs v2 types (notes 2.7).
const (
	JobTypeUpdateTwin   = "scheduleUpdateTwin"
	JobTypeDeviceMethod = "scheduleDeviceMethod"
)

// Jobs v2 statuses besides JobRunning, JobCompleted, JobFailed and JobCancelled.
const (
	JobQueued    = "queued"
	JobScheduled = "scheduled"
)

// JobRequest is the body of PUT /jobs/v2/{id}: Azure's JobRequest plus
// localhub's rollout control (Rollout, Abort, DeviceTimeoutInSeconds, Retry),
// which Azure IoT Hub does not have.
type JobRequest struct {
	JobID          string `json:"jobId"`
	Type           string `json:"type"`
	QueryCondition string `json:"queryCondition"`
	// UpdateTwin is the patch of a scheduleUpdateTwin job.
	UpdateTwin *JobTwinPatch `json:"updateTwin,omitempty"`
	// CloudToDeviceMethod is the call of a scheduleDeviceMethod job.
	CloudToDeviceMethod *MethodRequest `json:"cloudToDeviceMethod,omitempty"`
	// StartTime is when the job starts; nil means now.
	StartTime                 *time.Time  `json:"startTime,omitempty"`
	MaxExecutionTimeInSeconds int64       `json:"maxExecutionTimeInSeconds,omitempty"`
	Rollout                   *JobRollout `json:"rollout,omitempty"`
	Abort                     *JobAbort   `json:"abort,omitempty"`
	DeviceTimeoutInSeconds    int64       `json:"deviceTimeoutInSeconds,omitempty"`
	Retry                     *JobRetry   `json:"retry,omitempty"`
	AwaitReported             *JobAwait   `json:"awaitReported,omitempty"`
}

// JobAwait keeps each device of a twin job running until its twin matches
// Succeeded or Failed, two query conditions (localhub extension).
type JobAwait struct {
	Succeeded string `json:"succeeded"`
	Failed    string `json:"failed,omitempty"`
}

// JobTwinPatch is a twin job's patch: tags and/or desired properties.
type JobTwinPatch struct {
	Etag       string               `json:"etag,omitempty"`
	Tags       json.RawMessage      `json:"tags,omitempty"`
	Properties *JobTwinPatchDesired `json:"properties,omitempty"`
}

// JobTwinPatchDesired holds the desired-properties patch.
type JobTwinPatchDesired struct {
	Desired json.RawMessage `json:"desired,omitempty"`
}

// Rollout types.
const (
	RolloutConstant    = "constant"
	RolloutExponential = "exponential"
)

// JobRollout limits devices started per minute (localhub).
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

// JobAbort ends a job when the failed share of finished devices reaches
// FailureThresholdPercent after MinDevices devices (localhub).
type JobAbort struct {
	FailureThresholdPercent float64 `json:"failureThresholdPercent"`
	MinDevices              int     `json:"minDevices,omitempty"`
}

// JobRetry repeats failed ("failed") or timed-out ("timeout") device
// attempts, up to MaxAttempts in all (localhub).
type JobRetry struct {
	MaxAttempts int      `json:"maxAttempts"`
	On          []string `json:"on"`
}

// JobStatistics are a job's per-device counts. FailedCount includes
// CancelledCount (localhub's addition).
type JobStatistics struct {
	DeviceCount    int `json:"deviceCount"`
	FailedCount    int `json:"failedCount"`
	SucceededCount int `json:"succeededCount"`
	RunningCount   int `json:"runningCount"`
	PendingCount   int `json:"pendingCount"`
	CancelledCount int `json:"cancelledCount,omitempty"`
}

// Job is a Jobs v2 JobResponse.
type Job struct {
	JobID                     string         `json:"jobId"`
	Type                      string         `json:"type"`
	Status                    string         `json:"status"`
	QueryCondition            string         `json:"queryCondition"`
	CreatedTime               string         `json:"createdTime,omitempty"`
	StartTime                 string         `json:"startTime,omitempty"`
	EndTime                   string         `json:"endTime,omitempty"`
	MaxExecutionTimeInSeconds int64          `json:"maxExecutionTimeInSeconds,omitempty"`
	UpdateTwin                *JobTwinPatch  `json:"updateTwin,omitempty"`
	CloudToDeviceMethod       *MethodRequest `json:"cloudToDeviceMethod,omitempty"`
	FailureReason             string         `json:"failureReason,omitempty"`
	StatusMessage             string         `json:"statusMessage,omitempty"`
	DeviceJobStatistics       JobStatistics  `json:"deviceJobStatistics"`
	Rollout                   *JobRollout    `json:"rollout,omitempty"`
	Abort                     *JobAbort      `json:"abort,omitempty"`
	DeviceTimeoutInSeconds    int64          `json:"deviceTimeoutInSeconds,omitempty"`
	Retry                     *JobRetry      `json:"retry,omitempty"`
	AwaitReported             *JobAwait      `json:"awaitReported,omitempty"`
}

// Done reports whether the job has ended (completed, failed or cancelled).
func (j *Job) Done() bool {
	return j.Status == JobCompleted || j.Status == JobFailed || j.Status == JobCancelled
}

// DeviceJob is one device's record in a job (FROM devices.jobs).
type DeviceJob struct {
	DeviceID               string `json:"deviceId"`
	JobID                  string `json:"jobId"`
	JobType                string `json:"jobType"`
	Status                 string `json:"status"`
	StartTimeUtc           string `json:"startTimeUtc"`
	EndTimeUtc             string `json:"endTimeUtc"`
	CreatedDateTimeUtc     string `json:"createdDateTimeUtc"`
	LastUpdatedDateTimeUtc string `json:"lastUpdatedDateTimeUtc"`
	Outcome                struct {
		DeviceMethodResponse *MethodResponse `json:"deviceMethodResponse"`
	} `json:"outcome"`
	Error    *DeviceJobError `json:"error,omitempty"`
	Attempts int             `json:"attempts,omitempty"`
}

// DeviceJobError says why a device's part of a job failed.
type DeviceJobError struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

// CreateJob creates a Jobs v2 job (PUT /jobs/v2/{id}). A taken id fails with ErrConflict.
func (c *Client) CreateJob(ctx context.Context, req JobRequest) (*Job, error) {
	if req.JobID == "" {
		return nil, errors.New("create job: empty job id")
	}
	var out Job
	if _, err := c.call(ctx, request{method: http.MethodPut, path: []string{"jobs", "v2", req.JobID}, body: req}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetJob reads a job with its device counts.
func (c *Client) GetJob(ctx context.Context, id string) (*Job, error) {
	var out Job
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"jobs", "v2", id}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelJob cancels a job and returns it; a finished job is returned unchanged.
func (c *Client) CancelJob(ctx context.Context, id string) (*Job, error) {
	var out Job
	if _, err := c.call(ctx, request{method: http.MethodPost, path: []string{"jobs", "v2", id, "cancel"}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListJobs lists jobs of a type and status ("" for any), following
// continuation tokens.
func (c *Client) ListJobs(ctx context.Context, jobType, status string) ([]Job, error) {
	q := url.Values{}
	if jobType != "" {
		q.Set("jobType", jobType)
	}
	if status != "" {
		q.Set("jobStatus", status)
	}
	all := []Job{}
	seen := map[string]bool{}
	cont := ""
	for page := 1; ; page++ {
		h := http.Header{}
		h.Set(headerMaxItemCount, strconv.Itoa(100))
		if cont != "" {
			h.Set(headerContinuation, cont)
		}
		var items []Job
		rh, err := c.call(ctx, request{method: http.MethodGet, path: []string{"jobs", "v2", "query"}, query: q, header: h}, &items)
		if err != nil {
			if page > 1 {
				return nil, fmt.Errorf("list jobs page %d: %w", page, err)
			}
			return nil, err
		}
		all = append(all, items...)
		next := rh.Get(headerContinuation)
		if next == "" {
			return all, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("list jobs page %d: %w", page, ErrContinuationLoop)
		}
		seen[next] = true
		cont = next
	}
}

// DeviceJobs returns a job's per-device records, in device id order.
func (c *Client) DeviceJobs(ctx context.Context, jobID string) ([]DeviceJob, error) {
	b, err := json.Marshal(jobID)
	if err != nil {
		return nil, fmt.Errorf("device records of job %s: %w", jobID, err)
	}
	// A JSON string is a valid query string literal (same escapes).
	items, err := c.QueryAll(ctx, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = "+string(b), 1000)
	if err != nil {
		return nil, err
	}
	out := make([]DeviceJob, 0, len(items))
	for _, it := range items {
		var d DeviceJob
		if err := json.Unmarshal(it, &d); err != nil {
			return nil, fmt.Errorf("decode device record of job %s: %w", jobID, err)
		}
		out = append(out, d)
	}
	return out, nil
}
