package console

// The jobs and firmware pages: list, create, watch and cancel jobs; the
// hub's firmware images and the jobs that deploy them.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/store"
)

// jobsView is the jobs page's data.
type jobsView struct {
	Jobs    []serviceclient.Job
	Form    jobForm
	Problem string
}

// jobForm is the create-job form, refilled after a refusal.
type jobForm struct {
	ID, Type, Condition, Tags, Desired, Method, Payload string
	Timeout, Rate, AbortMin                             int
	AbortPercent                                        string
}

func (c *Console) jobList(w http.ResponseWriter, r *http.Request, s *session) error {
	v := jobsView{Form: jobForm{ID: "job-" + c.now().UTC().Format("20060102-150405"), Type: "twin", Condition: r.URL.Query().Get("condition"), Timeout: 30}}
	return c.renderJobs(w, r, s, v, http.StatusOK)
}

func (c *Console) renderJobs(w http.ResponseWriter, r *http.Request, s *session, v jobsView, status int) error {
	if s.can(store.ServiceConnect) {
		jobs, err := s.client.ListJobs(r.Context(), "", "")
		if err != nil {
			return fmt.Errorf("list jobs: %w", err)
		}
		// Newest first: an operator looks for the job just started.
		for i, j := 0, len(jobs)-1; i < j; i, j = i+1, j-1 {
			jobs[i], jobs[j] = jobs[j], jobs[i]
		}
		v.Jobs = jobs
	} else {
		v.Problem = "Jobs need the ServiceConnect permission; policy " + s.policy + " does not have it."
	}
	c.render(w, status, "jobs", s, v)
	return nil
}

func (c *Console) createJob(w http.ResponseWriter, r *http.Request, s *session) error {
	f := jobForm{
		ID: strings.TrimSpace(r.PostForm.Get("id")), Type: r.PostForm.Get("type"), Condition: strings.TrimSpace(r.PostForm.Get("condition")),
		Tags: r.PostForm.Get("tags"), Desired: r.PostForm.Get("desired"), Method: strings.TrimSpace(r.PostForm.Get("method")),
		Payload: r.PostForm.Get("payload"), AbortPercent: strings.TrimSpace(r.PostForm.Get("abort")),
	}
	req, err := buildJob(r, &f)
	if err == nil {
		_, err = s.client.CreateJob(r.Context(), req)
	}
	if err == nil {
		http.Redirect(w, r, "/ui/jobs/"+pathEscape(f.ID), http.StatusSeeOther)
		return nil
	}
	status := statusOf(err)
	if status == http.StatusForbidden || status == http.StatusUnauthorized || status >= 500 {
		return err
	}
	return c.renderJobs(w, r, s, jobsView{Form: f, Problem: message(err)}, status)
}

// buildJob turns the form into a Jobs v2 request; the API validates the rest.
func buildJob(r *http.Request, f *jobForm) (serviceclient.JobRequest, error) {
	atoi := func(name string, def int) (int, error) {
		t := strings.TrimSpace(r.PostForm.Get(name))
		if t == "" {
			return def, nil
		}
		n, err := strconv.Atoi(t)
		if err != nil {
			return 0, badInput("%s %q: not a whole number", name, t)
		}
		return n, nil
	}
	var err error
	if f.Timeout, err = atoi("timeout", 30); err != nil {
		return serviceclient.JobRequest{}, err
	}
	if f.Rate, err = atoi("rate", 0); err != nil {
		return serviceclient.JobRequest{}, err
	}
	if f.AbortMin, err = atoi("abortMin", 0); err != nil {
		return serviceclient.JobRequest{}, err
	}
	if f.ID == "" {
		return serviceclient.JobRequest{}, badInput("job id is required")
	}
	if f.Condition == "" {
		f.Condition = "*"
	}
	req := serviceclient.JobRequest{JobID: f.ID, QueryCondition: f.Condition}
	switch f.Type {
	case "twin":
		req.Type = "scheduleUpdateTwin"
		p := &serviceclient.JobTwinPatch{}
		if strings.TrimSpace(f.Tags) != "" {
			if _, err := decodePatch("tags", f.Tags); err != nil {
				return req, err
			}
			p.Tags = json.RawMessage(f.Tags)
		}
		if strings.TrimSpace(f.Desired) != "" {
			if _, err := decodePatch("desired", f.Desired); err != nil {
				return req, err
			}
			p.Properties = &serviceclient.JobTwinPatchDesired{Desired: json.RawMessage(f.Desired)}
		}
		if p.Tags == nil && p.Properties == nil {
			return req, badInput("a twin update job needs tags or desired properties")
		}
		req.UpdateTwin = p
	case "method":
		req.Type = "scheduleDeviceMethod"
		payload := json.RawMessage("null")
		if strings.TrimSpace(f.Payload) != "" {
			if !json.Valid([]byte(f.Payload)) {
				return req, badInput("payload: not valid JSON")
			}
			payload = json.RawMessage(f.Payload)
		}
		req.CloudToDeviceMethod = &serviceclient.MethodRequest{MethodName: f.Method, Payload: payload, ResponseTimeoutInSeconds: f.Timeout}
	default:
		return req, badInput("type %q: want twin or method", f.Type)
	}
	if f.Rate > 0 {
		req.Rollout = &serviceclient.JobRollout{Type: serviceclient.RolloutConstant, DevicesPerMinute: f.Rate}
	}
	if f.AbortPercent != "" {
		p, err := strconv.ParseFloat(strings.TrimSuffix(f.AbortPercent, "%"), 64)
		if err != nil {
			return req, badInput("abort threshold %q: not a percentage", f.AbortPercent)
		}
		req.Abort = &serviceclient.JobAbort{FailureThresholdPercent: p, MinDevices: f.AbortMin}
	}
	return req, nil
}

// jobView is the job page's data.
type jobView struct {
	Job     *serviceclient.Job
	Devices []serviceclient.DeviceJob
	Done    bool
	Elapsed string
}

func (c *Console) job(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	j, err := s.client.GetJob(r.Context(), id)
	if err != nil {
		return fmt.Errorf("read job %s: %w", id, err)
	}
	// The first 100 records: the counts above cover the rest.
	items, _, err := s.client.Query(r.Context(), "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = "+literal(id), 100, "")
	if err != nil {
		return fmt.Errorf("read device records of job %s: %w", id, err)
	}
	devs := make([]serviceclient.DeviceJob, 0, len(items))
	for _, it := range items {
		var dj serviceclient.DeviceJob
		if err := json.Unmarshal(it, &dj); err != nil {
			return fmt.Errorf("decode device record of job %s: %w", id, err)
		}
		devs = append(devs, dj)
	}
	v := jobView{Job: j, Devices: devs, Done: j.Done()}
	if st, err := time.Parse(time.RFC3339, j.StartTime); err == nil {
		end := c.now()
		if et, err := time.Parse(time.RFC3339, j.EndTime); err == nil && v.Done {
			end = et
		}
		if d := end.Sub(st); d >= 0 {
			v.Elapsed = d.Round(time.Millisecond).String()
		}
	}
	c.render(w, http.StatusOK, "job", s, v)
	return nil
}

func (c *Console) cancelJob(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if _, err := s.client.CancelJob(r.Context(), id); err != nil {
		return fmt.Errorf("cancel job %s: %w", id, err)
	}
	http.Redirect(w, r, "/ui/jobs/"+pathEscape(id), http.StatusSeeOther)
	return nil
}

// pathEscape escapes one path segment.
func pathEscape(s string) string { return url.PathEscape(s) }

// firmwareImage is one image as GET /firmware/images lists it.
type firmwareImage struct {
	ID       string `json:"id"`
	UpdateID struct {
		Provider string `json:"provider"`
		Name     string `json:"name"`
		Version  string `json:"version"`
	} `json:"updateId"`
	Compatibility []struct {
		Manufacturer string `json:"manufacturer"`
		Model        string `json:"model"`
	} `json:"compatibility"`
	File struct {
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"file"`
	UploadedTime string `json:"uploadedTime"`
}

// firmwareView is the firmware page's data.
type firmwareView struct {
	Available   bool
	Problem     string
	Images      []firmwareImage
	Deployments []serviceclient.Job // twin jobs that set desired.firmware
}

// firmware shows the hub's firmware images and the twin jobs that deploy
// them, when the hub has a firmware service (GET /firmware/images); a hub
// without one answers that route with 404 and the page says so.
func (c *Console) firmware(w http.ResponseWriter, r *http.Request, s *session) error {
	v := firmwareView{}
	var images []firmwareImage
	err := c.apiGet(r, s, "/firmware/images", &images)
	var ae *serviceclient.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		c.render(w, http.StatusOK, "firmware", s, v)
		return nil
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		v.Available, v.Problem = true, "Listing firmware images needs the RegistryRead permission; policy "+s.policy+" does not have it."
	case err != nil:
		return fmt.Errorf("list firmware images: %w", err)
	default:
		v.Available, v.Images = true, images
	}
	if s.can(store.ServiceConnect) {
		jobs, err := s.client.ListJobs(r.Context(), "scheduleUpdateTwin", "")
		if err != nil {
			return fmt.Errorf("list jobs: %w", err)
		}
		for i := len(jobs) - 1; i >= 0; i-- { // newest first
			j := jobs[i]
			if j.UpdateTwin == nil || j.UpdateTwin.Properties == nil {
				continue
			}
			var desired map[string]json.RawMessage
			if json.Unmarshal(j.UpdateTwin.Properties.Desired, &desired) == nil && desired["firmware"] != nil {
				v.Deployments = append(v.Deployments, j)
			}
		}
	}
	c.render(w, http.StatusOK, "firmware", s, v)
	return nil
}
