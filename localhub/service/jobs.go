package service

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/query"
	"github.com/drover-iot/drover/localhub/store"
)

// Jobs is what the REST side needs from the job engine (localhub/jobs).
type Jobs interface {
	// CreateJob stores a validated job and lets it run; it sets the
	// created and start times and the initial status.
	CreateJob(ctx context.Context, j store.Job) (store.Job, error)
	// GetJob reads a job with its device counts.
	GetJob(ctx context.Context, id string) (store.Job, error)
	// CancelJob cancels an active job; a terminal one is returned unchanged.
	CancelJob(ctx context.Context, id string) (store.Job, error)
	// ListJobs returns one page of jobs, oldest first.
	ListJobs(ctx context.Context, f store.JobFilter, limit, offset int) ([]store.Job, error)
}

// jobsAPI serves /jobs/v2 [IoT Hub REST, "Jobs v2"].
type jobsAPI struct {
	jobs Jobs
}

// Limits on job requests.
const (
	defaultMaxExecution = 3600          // seconds [Node service SDK default]
	maxSeconds          = math.MaxInt32 // any larger duration is a mistake
	maxConditionLength  = 8192          // as for queries
	maxRetryAttempts    = 10
	maxIncrementFactor  = 5 // AWS IoT Jobs bounds the exponential factor to 1.1–5
)

// jobRequest is the body of PUT /jobs/v2/{id}: Azure's JobRequest plus
// Drover's rollout, abort, deviceTimeoutInSeconds and retry.
type jobRequest struct {
	JobID                     string            `json:"jobId"`
	Type                      string            `json:"type"`
	QueryCondition            *string           `json:"queryCondition"`
	UpdateTwin                json.RawMessage   `json:"updateTwin"`
	CloudToDeviceMethod       *methodRequest    `json:"cloudToDeviceMethod"`
	StartTime                 *string           `json:"startTime"`
	MaxExecutionTimeInSeconds *int64            `json:"maxExecutionTimeInSeconds"`
	Rollout                   *store.JobRollout `json:"rollout"`
	Abort                     *store.JobAbort   `json:"abort"`
	DeviceTimeoutInSeconds    *int64            `json:"deviceTimeoutInSeconds"`
	Retry                     *store.JobRetry   `json:"retry"`
	AwaitReported             *store.JobAwait   `json:"awaitReported"`
}

func badField(field, format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, "ArgumentInvalid", "%s: %s", field, fmt.Sprintf(format, args...))
}

// decodeJobRequest reads and validates a job body; every 400 names the field.
func decodeJobRequest(r *http.Request, id string) (store.Job, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return store.Job{}, errf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "request body exceeds %d bytes", mbe.Limit)
		}
		return store.Job{}, errf(http.StatusBadRequest, "ArgumentInvalid", "read request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return store.Job{}, errf(http.StatusBadRequest, "ArgumentInvalid", "request body is empty")
	}
	var in jobRequest
	if err := json.Unmarshal(b, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return store.Job{}, badField(te.Field, "want %s, got JSON %s", te.Type, te.Value)
		}
		return store.Job{}, errf(http.StatusBadRequest, "IotHubFormatError", "request body is not valid JSON: %v", err)
	}
	return validateJob(in, id)
}

// validateJob checks a decoded request and turns it into a job.
func validateJob(in jobRequest, id string) (store.Job, error) {
	if in.JobID != "" && in.JobID != id {
		return store.Job{}, badField("jobId", "%q does not match the job id %q in the path", in.JobID, id)
	}
	j := store.Job{ID: id, Type: in.Type}
	switch in.Type {
	case store.JobUpdateTwin:
		if in.CloudToDeviceMethod != nil {
			return j, badField("cloudToDeviceMethod", "not allowed in a %s job", in.Type)
		}
		p, err := validateTwinPatch(in.UpdateTwin)
		if err != nil {
			return j, err
		}
		j.Spec.UpdateTwin = p
	case store.JobDeviceMethod:
		if len(in.UpdateTwin) > 0 && string(in.UpdateTwin) != "null" {
			return j, badField("updateTwin", "not allowed in a %s job", in.Type)
		}
		m, err := validateJobMethod(in.CloudToDeviceMethod)
		if err != nil {
			return j, err
		}
		j.Spec.CloudToDeviceMethod = m
	case "":
		return j, badField("type", "is required (%s or %s)", store.JobUpdateTwin, store.JobDeviceMethod)
	default:
		return j, badField("type", "%q is not supported (want %s or %s)", in.Type, store.JobUpdateTwin, store.JobDeviceMethod)
	}
	if in.QueryCondition == nil || strings.TrimSpace(*in.QueryCondition) == "" {
		return j, badField("queryCondition", "is required (a WHERE condition such as deviceId IN ['a','b'], or *)")
	}
	cond := strings.TrimSpace(*in.QueryCondition)
	if len(cond) > maxConditionLength {
		return j, badField("queryCondition", "is longer than %d characters", maxConditionLength)
	}
	if cond != "*" {
		e, err := query.ParseCondition(cond)
		if err == nil {
			_, _, err = query.CompileCondition(e)
		}
		if err != nil {
			return j, badField("queryCondition", "%v", err)
		}
	}
	j.Spec.QueryCondition = cond
	if in.StartTime != nil && *in.StartTime != "" {
		t, err := parseJobTime(*in.StartTime)
		if err != nil {
			return j, badField("startTime", "%q is not an ISO-8601 time (e.g. 2024-05-01T12:00:00Z)", *in.StartTime)
		}
		j.Start = t
	}
	j.Spec.MaxExecutionTimeInSeconds = defaultMaxExecution
	if v := in.MaxExecutionTimeInSeconds; v != nil {
		if *v < 1 || *v > maxSeconds {
			return j, badField("maxExecutionTimeInSeconds", "%d: must be 1 to %d", *v, maxSeconds)
		}
		j.Spec.MaxExecutionTimeInSeconds = *v
	}
	if v := in.DeviceTimeoutInSeconds; v != nil {
		if *v < 1 || *v > maxSeconds {
			return j, badField("deviceTimeoutInSeconds", "%d: must be 1 to %d", *v, maxSeconds)
		}
		j.Spec.DeviceTimeoutInSeconds = *v
	}
	if err := validateRollout(in.Rollout); err != nil {
		return j, err
	}
	j.Spec.Rollout = in.Rollout
	if a := in.Abort; a != nil {
		if a.FailureThresholdPercent <= 0 || a.FailureThresholdPercent > 100 {
			return j, badField("abort.failureThresholdPercent", "%g: must be more than 0 and at most 100", a.FailureThresholdPercent)
		}
		if a.MinDevices < 0 {
			return j, badField("abort.minDevices", "%d: must not be negative", a.MinDevices)
		}
		if a.MinDevices == 0 {
			a.MinDevices = 1
		}
		j.Spec.Abort = a
	}
	if rt := in.Retry; rt != nil {
		if rt.MaxAttempts < 1 || rt.MaxAttempts > maxRetryAttempts {
			return j, badField("retry.maxAttempts", "%d: must be 1 to %d", rt.MaxAttempts, maxRetryAttempts)
		}
		if len(rt.On) == 0 {
			return j, badField("retry.on", "is required: a list of %s and/or %s", store.RetryOnTimeout, store.RetryOnFailed)
		}
		for i, on := range rt.On {
			if on != store.RetryOnTimeout && on != store.RetryOnFailed {
				return j, badField(fmt.Sprintf("retry.on[%d]", i), "%q is not a failure type (want %s or %s)", on, store.RetryOnTimeout, store.RetryOnFailed)
			}
		}
		j.Spec.Retry = rt
	}
	if aw := in.AwaitReported; aw != nil {
		if in.Type != store.JobUpdateTwin {
			return j, badField("awaitReported", "only a %s job can await reported properties", store.JobUpdateTwin)
		}
		for _, c := range []struct{ field, cond string }{{"awaitReported.succeeded", aw.Succeeded}, {"awaitReported.failed", aw.Failed}} {
			if strings.TrimSpace(c.cond) == "" {
				if c.field == "awaitReported.succeeded" {
					return j, badField(c.field, "is required (a condition such as properties.reported.fw = '2.1')")
				}
				continue
			}
			if len(c.cond) > maxConditionLength {
				return j, badField(c.field, "is longer than %d characters", maxConditionLength)
			}
			e, err := query.ParseCondition(c.cond)
			if err == nil {
				_, _, err = query.CompileCondition(e)
			}
			if err != nil {
				return j, badField(c.field, "%v", err)
			}
		}
		j.Spec.AwaitReported = aw
	}
	return j, nil
}

func validateRollout(r *store.JobRollout) error {
	if r == nil {
		return nil
	}
	switch r.Type {
	case store.RolloutConstant:
		if r.DevicesPerMinute < 1 {
			return badField("rollout.devicesPerMinute", "%d: must be at least 1", r.DevicesPerMinute)
		}
	case store.RolloutExponential:
		if r.BaseRatePerMinute < 1 {
			return badField("rollout.baseRatePerMinute", "%d: must be at least 1", r.BaseRatePerMinute)
		}
		if r.IncrementFactor <= 1 || r.IncrementFactor > maxIncrementFactor {
			return badField("rollout.incrementFactor", "%g: must be more than 1 and at most %d", r.IncrementFactor, maxIncrementFactor)
		}
		if r.RateIncreaseCriteria == nil || r.RateIncreaseCriteria.NumberOfSucceeded < 1 {
			return badField("rollout.rateIncreaseCriteria.numberOfSucceeded", "must be at least 1")
		}
		if r.DevicesPerMinute != 0 && r.DevicesPerMinute < r.BaseRatePerMinute {
			return badField("rollout.devicesPerMinute", "%d: the maximum rate must be at least baseRatePerMinute (%d)", r.DevicesPerMinute, r.BaseRatePerMinute)
		}
	case "":
		return badField("rollout.type", "is required (%s or %s)", store.RolloutConstant, store.RolloutExponential)
	default:
		return badField("rollout.type", "%q is not a rollout type (want %s or %s)", r.Type, store.RolloutConstant, store.RolloutExponential)
	}
	return nil
}

// validateTwinPatch checks updateTwin: tags and/or properties.desired, each
// an object within the twin limits; etag absent or "*" (one etag cannot
// match many twins).
func validateTwinPatch(raw json.RawMessage) (*store.JobTwinPatch, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badField("updateTwin", "is required in a %s job", store.JobUpdateTwin)
	}
	doc, err := twin.DecodeObject(raw)
	if err != nil {
		return nil, badField("updateTwin", "%v", err)
	}
	p := &store.JobTwinPatch{}
	var tags, desired map[string]any
	for k, v := range doc {
		switch k {
		case "tags":
			if v == nil {
				continue
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, badField("updateTwin.tags", "must be a JSON object")
			}
			tags = m
		case "properties":
			if v == nil {
				continue
			}
			props, ok := v.(map[string]any)
			if !ok {
				return nil, badField("updateTwin.properties", "must be a JSON object")
			}
			for pk, pv := range props {
				switch pk {
				case "desired":
					m, ok := pv.(map[string]any)
					if !ok {
						return nil, badField("updateTwin.properties.desired", "must be a JSON object")
					}
					delete(m, "$version") // echoed by SDKs from a GET; read-only
					delete(m, "$metadata")
					desired = m
				case "reported":
					return nil, badField("updateTwin.properties.reported", "is written by devices, not by jobs")
				default:
					return nil, badField("updateTwin.properties."+pk, "unknown section (want desired)")
				}
			}
		case "etag":
			s, ok := v.(string)
			if !ok || (strings.Trim(s, `"`) != "*" && s != "") {
				return nil, badField("updateTwin.etag", "only \"*\" is accepted: one etag cannot match every twin of a job")
			}
		default:
			// deviceId, version and other read-only twin fields are ignored, as for PATCH /twins.
		}
	}
	if len(tags) == 0 && len(desired) == 0 {
		return nil, badField("updateTwin", "needs tags or properties.desired to change")
	}
	if tags != nil {
		if err := twin.Validate(twin.Tags, tags, true); err != nil {
			return nil, badField("updateTwin.tags", "%v", err)
		}
		if p.Tags, err = json.Marshal(tags); err != nil {
			return nil, fmt.Errorf("encode updateTwin.tags: %w", err)
		}
	}
	if desired != nil {
		if err := twin.Validate(twin.Desired, desired, true); err != nil {
			return nil, badField("updateTwin.properties.desired", "%v", err)
		}
		b, err := json.Marshal(desired)
		if err != nil {
			return nil, fmt.Errorf("encode updateTwin.properties.desired: %w", err)
		}
		p.Properties = &store.JobTwinProperties{Desired: b}
	}
	p.Etag = "*"
	return p, nil
}

// validateJobMethod applies the direct-method rules of POST /twins/{id}/methods.
func validateJobMethod(m *methodRequest) (*store.JobMethod, error) {
	if m == nil {
		return nil, badField("cloudToDeviceMethod", "is required in a %s job", store.JobDeviceMethod)
	}
	if err := validMethodName(m.MethodName); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, badField("cloudToDeviceMethod.methodName", "%s", strings.TrimPrefix(ae.Msg, "methodName "))
		}
		return nil, err
	}
	if len(m.Payload) > maxMethodPayload {
		return nil, errf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "cloudToDeviceMethod.payload: %d bytes; the limit is %d", len(m.Payload), maxMethodPayload)
	}
	out := &store.JobMethod{MethodName: m.MethodName, Payload: m.Payload, ResponseTimeoutInSeconds: 30}
	if len(out.Payload) == 0 {
		out.Payload = json.RawMessage("null")
	}
	if v := m.ResponseTimeoutInSeconds; v != nil {
		if *v < 1 || *v > 300 {
			return nil, badField("cloudToDeviceMethod.responseTimeoutInSeconds", "%d: must be 1 to 300", *v)
		}
		out.ResponseTimeoutInSeconds = *v
	}
	if v := m.ConnectTimeoutInSeconds; v != nil {
		if *v < 0 || *v > 300 {
			return nil, badField("cloudToDeviceMethod.connectTimeoutInSeconds", "%d: must be 0 to 300", *v)
		}
		out.ConnectTimeoutInSeconds = *v
	}
	return out, nil
}

// parseJobTime reads an ISO-8601 time; one without a zone is UTC.
func parseJobTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02T15:04:05.9999999", s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// jobJSON renders a job as Azure's JobResponse, with Drover's extensions
// when the job uses them.
func jobJSON(j store.Job) map[string]any {
	m := map[string]any{
		"jobId":                     j.ID,
		"type":                      j.Type,
		"status":                    j.Status,
		"queryCondition":            j.Spec.QueryCondition,
		"createdTime":               fmtTime(j.Created),
		"startTime":                 fmtTime(j.Start),
		"maxExecutionTimeInSeconds": j.Spec.MaxExecutionTimeInSeconds,
		"failureReason":             j.FailureReason,
		"statusMessage":             j.StatusMessage,
		"deviceJobStatistics":       j.Stats,
	}
	if !j.End.IsZero() {
		m["endTime"] = fmtTime(j.End)
	}
	if j.Spec.UpdateTwin != nil {
		m["updateTwin"] = j.Spec.UpdateTwin
	}
	if j.Spec.CloudToDeviceMethod != nil {
		m["cloudToDeviceMethod"] = j.Spec.CloudToDeviceMethod
	}
	if j.Spec.Rollout != nil {
		m["rollout"] = j.Spec.Rollout
	}
	if j.Spec.AwaitReported != nil {
		m["awaitReported"] = j.Spec.AwaitReported
	}
	if j.Spec.Abort != nil {
		m["abort"] = j.Spec.Abort
	}
	if j.Spec.DeviceTimeoutInSeconds > 0 {
		m["deviceTimeoutInSeconds"] = j.Spec.DeviceTimeoutInSeconds
	}
	if j.Spec.Retry != nil {
		m["retry"] = j.Spec.Retry
	}
	return m
}

// jobError maps store errors to Azure's job error codes.
func jobError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errf(http.StatusNotFound, "JobNotFound", "%v", err)
	case errors.Is(err, store.ErrExists):
		return errf(http.StatusConflict, "JobAlreadyExists", "%v", err)
	}
	return err
}

func (a *jobsAPI) enabled() error {
	if a.jobs == nil {
		return errf(http.StatusNotImplemented, "NotImplemented", "this hub runs no job engine")
	}
	return nil
}

func (a *jobsAPI) put(w http.ResponseWriter, r *http.Request) error {
	if err := a.enabled(); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := store.ValidateJobID(id); err != nil {
		return badField("jobId", "%v", err)
	}
	if id == "query" {
		return badField("jobId", `"query" is reserved (GET /jobs/v2/query lists jobs)`)
	}
	j, err := decodeJobRequest(r, id)
	if err != nil {
		return err
	}
	j, err = a.jobs.CreateJob(r.Context(), j)
	if err != nil {
		return jobError(err)
	}
	return writeJSON(w, http.StatusOK, jobJSON(j))
}

func (a *jobsAPI) get(w http.ResponseWriter, r *http.Request) error {
	if err := a.enabled(); err != nil {
		return err
	}
	j, err := a.jobs.GetJob(r.Context(), r.PathValue("id"))
	if err != nil {
		return jobError(err)
	}
	return writeJSON(w, http.StatusOK, jobJSON(j))
}

func (a *jobsAPI) cancel(w http.ResponseWriter, r *http.Request) error {
	if err := a.enabled(); err != nil {
		return err
	}
	j, err := a.jobs.CancelJob(r.Context(), r.PathValue("id"))
	if err != nil {
		return jobError(err)
	}
	return writeJSON(w, http.StatusOK, jobJSON(j))
}

// list serves GET /jobs/v2/query?jobType=&jobStatus=, paged with the
// x-ms-max-item-count and x-ms-continuation headers (older clients send
// pageSize and continuationToken as query parameters; both are accepted).
func (a *jobsAPI) list(w http.ResponseWriter, r *http.Request) error {
	if err := a.enabled(); err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.JobFilter{Type: q.Get("jobType"), Status: q.Get("jobStatus")}
	if f.Type != "" && !store.ValidJobType(f.Type) {
		return badField("jobType", "%q is not a job type (want %s or %s)", f.Type, store.JobUpdateTwin, store.JobDeviceMethod)
	}
	if f.Status != "" && !store.ValidJobStatus(f.Status) {
		return badField("jobStatus", "%q is not a job status (want queued, scheduled, running, completed, failed or cancelled)", f.Status)
	}
	page := 100
	size := r.Header.Get("x-ms-max-item-count")
	if size == "" {
		size = q.Get("pageSize")
	}
	if size != "" {
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 {
			return badField("x-ms-max-item-count", "%q: must be a positive number", size)
		}
		page = min(n, maxPage)
	}
	offset := 0
	cont := r.Header.Get("x-ms-continuation")
	if cont == "" {
		cont = q.Get("continuationToken")
	}
	if cont != "" {
		b, err := base64.RawURLEncoding.DecodeString(cont)
		n, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || n < 0 {
			return badField("x-ms-continuation", "not a token this hub issued")
		}
		offset = n
	}
	jobs, err := a.jobs.ListJobs(r.Context(), f, page+1, offset)
	if err != nil {
		return err
	}
	if len(jobs) > page {
		jobs = jobs[:page]
		w.Header().Set("x-ms-continuation", base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset+page))))
	}
	items := make([]map[string]any, 0, len(jobs))
	for _, j := range jobs {
		items = append(items, jobJSON(j))
	}
	w.Header().Set("x-ms-item-type", "jobResponse")
	return writeJSON(w, http.StatusOK, items)
}
