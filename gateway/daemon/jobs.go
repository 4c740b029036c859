package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/gateway/localapi"
	"github.com/drover-iot/drover/plugins"
)

// Every action on a field device is a durable job: a desired config
// version (kind config, source desired), the write method and custom
// methods (kind write or method:<name>), reboot and factory reset. Jobs
// take the queue's rules (one job per device and per serial bus, windows
// and the in-use rule for disruptive work, retries with back-off) and
// their state is mirrored into the device's reported.lastJob.
//
// How a method answers: reboot and factoryReset answer 202 {jobId} at
// once. write and custom methods wait up to methodWait (less when the
// caller's deadline is nearer) for their job to end and then answer as
// the bridge did, plus "jobId"; a job still pending by then (device busy,
// offline, waiting for a window) answers 202 {jobId, state, reason}. A
// call the bridge would refuse (bad payload, unknown point) is answered
// at once and creates no job. read and identify answer inline, no job.

const (
	// methodWait bounds how long a write or custom method waits for its
	// job before answering 202.
	methodWait = 5 * time.Second
	// answerMargin is kept from the caller's deadline to send the answer.
	answerMargin = 250 * time.Millisecond
	// configAttempts bounds the attempts of a config job that fail for a
	// transient reason (no answer); a device that is offline waits
	// without spending attempts.
	configAttempts = 10
)

// errRetry marks an attempt the queue may retry after a back-off: the
// device did not answer, and the action is idempotent (config, write).
var errRetry = errors.New("retryable")

func (d *Daemon) openJobs(ctx context.Context) error {
	opts := jobs.Options{
		Executor: jobExecutor{d},
		Logger:   d.log.With("component", "jobs"),
		Windows: func() []config.Window {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.gwWindows != nil {
				return d.gwWindows // the gateway's desired.maintenance overrides maintenance.windows
			}
			return d.cfg.Maintenance.Windows
		},
		Serial: d.serialBus,
		Online: func(device string) bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			st, _ := d.devState[device]["state"].(string)
			return st != bridges.StateOffline && st != bridges.StatePluginDown && st != bridges.StateBackoff
		},
		Retryable: func(err error) bool { return errors.Is(err, errRetry) },
		Recheck:   5 * time.Second,
	}
	if d.tuneJobs != nil {
		d.tuneJobs(&opts)
	}
	q, err := jobs.New(ctx, d.db, opts)
	if err != nil {
		return fmt.Errorf("job queue: %w", err)
	}
	d.jobs = q
	q.Subscribe(d.mirrorJob)
	return nil
}

func (d *Daemon) serialBus(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.cfg.Bus(name)
	return b == nil || b.Mode != "tcp"
}

// busOf returns the bus of a configured device ("" when unknown).
func (d *Daemon) busOf(device string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dev := d.cfg.Device(device); dev != nil {
		return dev.Bus
	}
	return ""
}

// customMethod returns a device's custom method from its profile.
func (d *Daemon) customMethod(device, name string) (config.CustomMethod, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev := d.cfg.Device(device)
	if dev == nil || d.cfg.Profiles[dev.Profile] == nil {
		return config.CustomMethod{}, false
	}
	m, ok := d.cfg.Profiles[dev.Profile].CustomMethods()[name]
	return m, ok
}

// mirrorJob reports a device's latest job in its twin.
func (d *Daemon) mirrorJob(j jobs.Job) {
	d.mirrorFirmwareEnd(j)
	l := d.childLink(j.Device)
	if l == nil {
		return
	}
	l.Report(map[string]any{"lastJob": map[string]any{
		"id": j.ID, "kind": j.Kind, "source": string(j.Source), "state": string(j.State), "reason": string(j.Reason),
		"progress": j.Progress, "message": j.Message, "error": j.Error, "updated": j.Updated.UTC().Format(time.RFC3339),
	}})
}

// configPayload is the payload of a config job: what Options.SubmitConfig
// handed over, so the job can be run after a restart too.
type configPayload struct {
	Version int64          `json:"version"`
	Config  map[string]any `json:"config"`
}

// submitConfig is the bridges' Options.SubmitConfig: a desired config
// version with writes to do becomes a config job, replacing the device's
// older ones still queued (a running one completes as superseded).
func (d *Daemon) submitConfig(device string, version int64, cfg map[string]any) error {
	if d.jobs == nil {
		return errors.New("no job queue")
	}
	payload, err := json.Marshal(configPayload{Version: version, Config: cfg})
	if err != nil {
		return fmt.Errorf("encode desired config v%d of %s: %w", version, device, err)
	}
	// Not bound to the run: an accepted version must be stored, and the
	// database closes only after the links (the callers) stopped.
	ctx := context.WithoutCancel(d.runCtx)
	j, err := d.jobs.Submit(ctx, jobs.Spec{Kind: jobs.KindConfig, Device: device, Bus: d.busOf(device), Payload: payload,
		Source: jobs.SourceDesired, Supersede: true, MaxAttempts: configAttempts})
	if err != nil {
		return fmt.Errorf("queue desired config v%d of %s: %w", version, device, err)
	}
	d.log.Debug("desired config queued", "device", device, "version", version, "job", j.ID)
	return nil
}

// deviceMethod answers a direct method on a bridged device, from the hub
// or the technician (src): see the comment at the top of this file.
func (d *Daemon) deviceMethod(ctx context.Context, id, name string, payload json.RawMessage, src jobs.Source) (int, any) {
	if d.jobs == nil {
		return d.bridges.Invoke(ctx, id, name, payload)
	}
	switch name {
	case jobs.KindReboot, jobs.KindFactoryReset:
		return d.submitDeviceJob(ctx, id, name, payload, src)
	case MethodFirmwareUpdate:
		return d.firmwareMethod(ctx, id, payload, src)
	case bridges.MethodWrite:
		return d.runMethodJob(ctx, id, name, jobs.KindWrite, payload, src, false)
	}
	if m, ok := d.customMethod(id, name); ok {
		return d.runMethodJob(ctx, id, name, jobs.KindMethodPrefix+name, payload, src, m.Disruptive)
	}
	return d.bridges.Invoke(ctx, id, name, payload)
}

// decodeForce reads {"force": bool} from a payload the bridge checked.
func decodeForce(payload json.RawMessage) bool {
	var opts struct {
		Force bool `json:"force"`
	}
	_ = json.Unmarshal(payload, &opts)
	return opts.Force
}

// submitDeviceJob answers a disruptive method with 202 and the job id.
func (d *Daemon) submitDeviceJob(ctx context.Context, device, kind string, payload json.RawMessage, src jobs.Source) (int, any) {
	if st, body := d.bridges.Check(device, kind, payload); st != 0 {
		return st, body
	}
	j, err := d.submitJob(ctx, jobs.Spec{Kind: kind, Device: device, Bus: d.busOf(device), Payload: payload, Source: src,
		Force: decodeForce(payload), Disruptive: true})
	if err != nil {
		return jobError(err)
	}
	return http.StatusAccepted, map[string]any{"jobId": j.ID, "state": string(j.State)}
}

// runMethodJob queues a write or custom method as a job of kind and
// answers when it ends within the wait, else 202.
func (d *Daemon) runMethodJob(ctx context.Context, device, method, kind string, payload json.RawMessage, src jobs.Source, disruptive bool) (int, any) {
	if st, body := d.bridges.Check(device, method, payload); st != 0 {
		return st, body
	}
	force := false
	if kind != jobs.KindWrite { // a write's payload is points, not options
		force = decodeForce(payload)
	}
	j, err := d.submitJob(ctx, jobs.Spec{Kind: kind, Device: device, Bus: d.busOf(device), Payload: payload, Source: src,
		Disruptive: disruptive, Force: force})
	if err != nil {
		return jobError(err)
	}
	return d.answerJob(ctx, j)
}

func (d *Daemon) submitJob(ctx context.Context, s jobs.Spec) (jobs.Job, error) {
	j, err := d.jobs.Submit(ctx, s)
	if err != nil {
		return jobs.Job{}, fmt.Errorf("queue %s on %s: %w", s.Kind, s.Device, err)
	}
	return j, nil
}

func jobError(err error) (int, any) {
	if errors.Is(err, jobs.ErrInvalid) {
		return http.StatusBadRequest, map[string]any{"error": err.Error()}
	}
	return http.StatusInternalServerError, map[string]any{"error": err.Error()}
}

// answerJob waits for j to end (see methodWait) and answers with its
// outcome, or 202 when it has not ended.
func (d *Daemon) answerJob(ctx context.Context, j jobs.Job) (int, any) {
	// time.Now, not d.now: ctx's deadline is on the wall clock.
	wctx, cancel := context.WithTimeout(ctx, inlineWait(ctx, time.Now()))
	defer cancel()
	got, err := d.jobs.Await(wctx, j.ID, func(j jobs.Job) bool {
		// A window may be hours away: no point waiting for it.
		return j.State.Final() || (j.State == jobs.StateWaiting && j.Reason == jobs.ReasonWindow)
	})
	if err != nil && wctx.Err() == nil {
		return http.StatusInternalServerError, map[string]any{"error": err.Error(), "jobId": j.ID}
	}
	if got.ID == "" {
		got = j
	}
	if !got.State.Final() {
		return http.StatusAccepted, pendingBody(got)
	}
	return jobAnswer(got)
}

// inlineWait is how long a method may wait for its job at now: methodWait,
// or less to answer before the caller's deadline.
func inlineWait(ctx context.Context, now time.Time) time.Duration {
	wait := methodWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, dl.Sub(now)-answerMargin)
	}
	return max(wait, 0)
}

func pendingBody(j jobs.Job) map[string]any {
	body := map[string]any{"jobId": j.ID, "state": string(j.State)}
	if j.Reason != jobs.ReasonNone {
		body["reason"] = string(j.Reason)
	}
	return body
}

// methodResult is what a write or custom method job stores as its result:
// the bridge's answer, so the caller gets it whenever the job ends.
type methodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// jobAnswer turns a finished write or custom method job into the method's
// answer: the bridge's status and body plus "jobId".
func jobAnswer(j jobs.Job) (int, any) {
	body := map[string]any{}
	var res methodResult
	if len(j.Result) > 0 && json.Unmarshal(j.Result, &res) == nil && res.Status != 0 {
		_ = json.Unmarshal(res.Payload, &body)
		if body == nil {
			body = map[string]any{}
		}
		body["jobId"] = j.ID
		return res.Status, body
	}
	body["jobId"] = j.ID
	switch j.State {
	case jobs.StateSucceeded:
		return http.StatusOK, body
	case jobs.StateCancelled:
		body["error"] = "job " + j.ID + " was cancelled"
		return http.StatusConflict, body
	}
	body["error"] = j.Error
	if j.Reason == jobs.ReasonDeadline {
		return http.StatusGatewayTimeout, body
	}
	return http.StatusInternalServerError, body
}

// jobExecutor runs jobs through the bridges: config writes at write
// priority, methods at command priority on the bus.
type jobExecutor struct{ d *Daemon }

// Execute implements jobs.Executor.
func (e jobExecutor) Execute(ctx context.Context, j jobs.Job, progress func(int, string)) (any, error) {
	switch {
	case j.Kind == jobs.KindConfig:
		return e.executeConfig(ctx, j, progress)
	case j.Kind == jobs.KindWrite:
		return e.executeMethod(ctx, j, bridges.MethodWrite, j.Payload, progress)
	case j.Kind == jobs.KindFirmware:
		return e.executeFirmware(ctx, j, progress)
	case j.Method() != "":
		payload := json.RawMessage(`{"force":false}`)
		if j.Force {
			payload = json.RawMessage(`{"force":true}`)
		}
		return e.executeMethod(ctx, j, j.Method(), payload, progress)
	}
	return e.executeManage(ctx, j, progress)
}

// executeConfig writes a desired config version. A rejected version fails
// the job with the bridge's result; a superseded one ends it succeeded.
func (e jobExecutor) executeConfig(ctx context.Context, j jobs.Job, progress func(int, string)) (any, error) {
	var p configPayload
	dec := json.NewDecoder(bytes.NewReader(j.Payload))
	dec.UseNumber() // as the twin decoded it: 22 and 22.0 stay apart
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("config job payload: %w", err)
	}
	progress(10, fmt.Sprintf("writing desired config v%d", p.Version))
	res, err := e.d.bridges.ApplyConfig(ctx, j.Device, p.Version, p.Config)
	switch {
	case errors.Is(err, bridges.ErrNotSent):
		return nil, fmt.Errorf("%w: %w", jobs.ErrOffline, err)
	case errors.Is(err, bridges.ErrTransient):
		return res, fmt.Errorf("%w: %w", errRetry, err)
	case err != nil:
		return nil, err
	case res.Status == bridges.ConfigRejected:
		return res, fmt.Errorf("desired config v%d rejected: %s", p.Version, pointErrors(res.Errors))
	}
	progress(100, fmt.Sprintf("desired config v%d %s", p.Version, res.Status))
	return res, nil
}

// pointErrors renders {point: message} as "a: msg; b: msg", sorted.
func pointErrors(errs map[string]string) string {
	parts := make([]string, 0, len(errs))
	for _, p := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, p+": "+errs[p])
	}
	return strings.Join(parts, "; ")
}

// executeMethod runs the write method or a custom method and keeps the
// bridge's answer as the result. Offline and in-use answers defer the
// job; no answer is retried (the values are the same each time).
func (e jobExecutor) executeMethod(ctx context.Context, j jobs.Job, method string, payload json.RawMessage, progress func(int, string)) (any, error) {
	progress(10, "running "+method)
	st, resp := e.d.bridges.Invoke(ctx, j.Device, method, payload)
	raw, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("%s answer: %w", method, err)
	}
	res := methodResult{Status: st, Payload: raw}
	msg := fmt.Sprintf("%s answered %d", method, st)
	if m, ok := resp.(map[string]any); ok {
		if s, ok := m["error"].(string); ok {
			msg = s
		}
	}
	switch {
	case st >= 200 && st < 300:
		progress(100, method+" done")
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s: %w", msg, context.Cause(ctx))
	case st == http.StatusConflict:
		return nil, fmt.Errorf("%w: %s", jobs.ErrInUse, msg)
	case st == http.StatusServiceUnavailable:
		return nil, fmt.Errorf("%w: %s", jobs.ErrOffline, msg)
	case st == http.StatusGatewayTimeout:
		return res, fmt.Errorf("%w: %s", errRetry, msg)
	}
	return res, errors.New(msg)
}

// executeManage runs reboot and factoryReset, at command priority.
func (e jobExecutor) executeManage(ctx context.Context, j jobs.Job, progress func(int, string)) (any, error) {
	payload := j.Payload
	if j.Force {
		// The queue already checked window and in-use; tell the bridge not to refuse again.
		payload = json.RawMessage(`{"force":true}`)
	}
	progress(10, "sending "+j.Kind)
	status, resp := e.d.bridges.Invoke(ctx, j.Device, j.Kind, payload)
	switch {
	case status >= 200 && status < 300:
		progress(100, j.Kind+" sent")
		return resp, nil
	case status == http.StatusConflict:
		return nil, fmt.Errorf("%w: %v", jobs.ErrInUse, resp)
	case status == http.StatusServiceUnavailable:
		return nil, fmt.Errorf("%w: %v", jobs.ErrOffline, resp)
	}
	b, _ := json.Marshal(resp)
	return nil, fmt.Errorf("%s answered %d: %s", j.Kind, status, b)
}

// Resumable implements jobs.Resumer: config and write jobs write the same
// values again, so one cut by a crash simply runs again; a firmware job
// runs again and its plugin resumes the upload from the offset the device
// holds (and only confirms an image the device already runs). Reboots,
// resets and custom methods (which may trigger an action) are never
// repeated.
func (e jobExecutor) Resumable(kind string) bool {
	return kind == jobs.KindConfig || kind == jobs.KindWrite || kind == jobs.KindFirmware
}

// Verify decides about a reboot or factory reset interrupted by a crash from
// what the device reported since the job started: it is never repeated
// blindly. Other kinds cannot be told from the device's state.
func (e jobExecutor) Verify(ctx context.Context, j jobs.Job) (bool, error) {
	section, key := "reboot", "lastReboot"
	switch j.Kind {
	case jobs.KindReboot:
	case jobs.KindFactoryReset:
		section, key = "factoryReset", "lastReset"
	default:
		return false, fmt.Errorf("%s job: %w", j.Kind, jobs.ErrUnverifiable)
	}
	t, err := e.d.cache.Get(ctx, j.Device)
	if err != nil {
		return false, err
	}
	sec, _ := t.Reported[section].(map[string]any)
	s, _ := sec[key].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return false, nil
	}
	return !at.Before(j.Started.Truncate(time.Second)), nil
}

// jobCounts is reported in the gateway's twin.
func (d *Daemon) jobCounts() map[string]any {
	out := map[string]any{}
	if d.jobs == nil {
		return out
	}
	c, err := d.jobs.Counts(context.Background())
	if err != nil {
		return out
	}
	for s, n := range c {
		out[string(s)] = n
	}
	return out
}

// cancelJob is the gateway method {"jobId": "..."}.
func (d *Daemon) cancelJob(ctx context.Context, payload json.RawMessage) (int, any) {
	var req struct {
		JobID string `json:"jobId"`
	}
	if err := json.Unmarshal(payload, &req); err != nil || req.JobID == "" {
		return http.StatusBadRequest, map[string]string{"error": `want {"jobId": "..."}`}
	}
	j, err := d.jobs.Cancel(ctx, req.JobID)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return http.StatusNotFound, map[string]string{"error": "no job " + req.JobID}
	case errors.Is(err, jobs.ErrFinished):
		return http.StatusConflict, map[string]string{"error": "job " + req.JobID + " already ended: " + string(j.State)}
	case err != nil:
		return http.StatusInternalServerError, map[string]string{"error": err.Error()}
	}
	return http.StatusOK, j
}

// Jobs implements localapi.JobLister.
func (b backend) Jobs(ctx context.Context, device string) ([]localapi.JobInfo, error) {
	if b.d.jobs == nil {
		return nil, nil
	}
	js, err := b.d.jobs.List(ctx, jobs.Filter{Device: device, Limit: 200})
	if err != nil {
		return nil, err
	}
	out := make([]localapi.JobInfo, 0, len(js))
	for _, j := range js {
		out = append(out, jobInfo(j))
	}
	return out, nil
}

func jobInfo(j jobs.Job) localapi.JobInfo {
	reason := string(j.Reason)
	if j.Error != "" {
		reason = j.Error
	}
	return localapi.JobInfo{ID: j.ID, Device: j.Device, Kind: j.Kind, Source: string(j.Source), State: string(j.State), Reason: reason,
		Attempts: j.Attempts, Progress: j.Progress, Created: j.Created, Updated: j.Updated}
}

// Job implements localapi.JobGetter.
func (b backend) Job(ctx context.Context, id string) (localapi.JobDetail, error) {
	if b.d.jobs == nil {
		return localapi.JobDetail{}, plugins.Errorf(plugins.CodeUnsupported, "this gateway has no job queue")
	}
	j, err := b.d.jobs.Get(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return localapi.JobDetail{}, plugins.Errorf(plugins.CodeNotFound, "no job %s", id)
	}
	if err != nil {
		return localapi.JobDetail{}, err
	}
	return localapi.JobDetail{JobInfo: jobInfo(j), Payload: j.Payload, Result: j.Result, Error: j.Error, Message: j.Message,
		Bus: j.Bus, Disruptive: j.Disruptive, Force: j.Force, MaxAttempts: j.MaxAttempts, NotBefore: j.NotBefore,
		Deadline: j.Deadline, Started: j.Started, Ended: j.Ended}, nil
}
