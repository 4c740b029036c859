package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/gateway/localapi"
)

// Long device work (reboot, factory reset) runs as durable jobs: the method
// answers 202 with the job id at once; the job waits for a maintenance window
// and the in-use rule unless forced, and its state is mirrored into the
// device's reported.lastJob.

func (d *Daemon) openJobs(ctx context.Context) error {
	q, err := jobs.New(ctx, d.db, jobs.Options{
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
			return st != "offline" && st != "plugin-down" && st != "backoff"
		},
		Recheck: 5 * time.Second,
	})
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

// mirrorJob reports a device's latest job in its twin.
func (d *Daemon) mirrorJob(j jobs.Job) {
	l := d.childLink(j.Device)
	if l == nil {
		return
	}
	l.Report(map[string]any{"lastJob": map[string]any{
		"id": j.ID, "kind": j.Kind, "state": string(j.State), "reason": string(j.Reason), "progress": j.Progress,
		"message": j.Message, "error": j.Error, "updated": j.Updated.UTC().Format(time.RFC3339),
	}})
}

// submitDeviceJob answers a disruptive method with 202 and the job id.
func (d *Daemon) submitDeviceJob(ctx context.Context, device, kind string, payload json.RawMessage, src jobs.Source) (int, any) {
	var opts struct {
		Force bool `json:"force"`
	}
	if len(payload) > 0 && string(payload) != "null" {
		if err := json.Unmarshal(payload, &opts); err != nil {
			return http.StatusBadRequest, map[string]string{"error": fmt.Sprintf(`bad payload for %s: %v; want nothing or {"force": true}`, kind, err)}
		}
	}
	d.mu.Lock()
	dev := d.cfg.Device(device)
	bus := ""
	if dev != nil {
		bus = dev.Bus
	}
	d.mu.Unlock()
	j, err := d.jobs.Submit(ctx, jobs.Spec{Kind: kind, Device: device, Bus: bus, Payload: payload, Source: src, Force: opts.Force, Disruptive: true})
	if err != nil {
		return http.StatusBadRequest, map[string]string{"error": err.Error()}
	}
	return http.StatusAccepted, map[string]any{"jobId": j.ID, "state": string(j.State)}
}

// jobExecutor runs jobs through the bridges, at command priority on the bus.
type jobExecutor struct{ d *Daemon }

func (e jobExecutor) Execute(ctx context.Context, j jobs.Job, progress func(int, string)) (any, error) {
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

// Verify decides about a reboot or factory reset interrupted by a crash from
// what the device reported since the job started: it is never repeated blindly.
func (e jobExecutor) Verify(ctx context.Context, j jobs.Job) (bool, error) {
	t, err := e.d.cache.Get(ctx, j.Device)
	if err != nil {
		return false, err
	}
	section, key := "reboot", "lastReboot"
	if j.Kind == jobs.KindFactoryReset {
		section, key = "factoryReset", "lastReset"
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
		reason := string(j.Reason)
		if j.Error != "" {
			reason = j.Error
		}
		out = append(out, localapi.JobInfo{ID: j.ID, Device: j.Device, Kind: j.Kind, State: string(j.State), Reason: reason,
			Attempts: j.Attempts, Progress: j.Progress, Created: j.Created, Updated: j.Updated})
	}
	return out, nil
}
