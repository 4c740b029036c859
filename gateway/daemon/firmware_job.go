package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/plugins"
)

// fwFailure is a failure with the result code the device reports, for
// outcomes the firmware library does not classify (the plugin's).
type fwFailure struct {
	result firmware.Result
	err    error
}

func (f fwFailure) Error() string { return f.err.Error() }
func (f fwFailure) Unwrap() error { return f.err }

func resultOf(err error) firmware.Result {
	var f fwFailure
	if errors.As(err, &f) {
		return f.result
	}
	return firmware.ResultOf(err)
}

// executeFirmware runs a firmware job: check, fetch, check the file, flash.
// A transient failure (download cut, device silent mid-upload, cache full
// of images in use) is retried by the queue and resumes; the last attempt
// and every final failure report status failed with its result.
func (e jobExecutor) executeFirmware(ctx context.Context, j jobs.Job, progress func(int, string)) (any, error) {
	d := e.d
	var p firmwarePayload
	if err := json.Unmarshal(j.Payload, &p); err != nil {
		return nil, fmt.Errorf("firmware job payload: %w", err)
	}
	s, err := firmware.Parse(p.Manifest)
	if err != nil {
		return nil, fmt.Errorf("firmware job manifest: %w", err)
	}
	r := d.newFwReport(j, s.UpdateID.Version, p.Deployment, progress)
	last := j.Attempts >= j.MaxAttempts
	// end turns an attempt's error into the job's: deferrals and retries
	// keep the update pending, anything else (or a retry with no attempt
	// left) is reported failed.
	end := func(err error, retryable bool) (any, error) {
		switch {
		case ctx.Err() != nil:
			return nil, err // cancelled, deadline or shutdown: mirrorJob reports what needs it
		case errors.Is(err, jobs.ErrInUse), errors.Is(err, jobs.ErrOffline):
			return nil, err
		case retryable && !last:
			d.log.Warn("firmware update attempt failed; retrying", "device", j.Device, "attempt", j.Attempts, "error", err)
			return nil, fmt.Errorf("%w: %w", errRetry, err)
		}
		res := r.fail(err)
		return res, err
	}

	// Trust and compatibility before a byte is downloaded.
	if err := d.checkTarget(ctx, j.Device, s); err != nil {
		if errors.Is(err, errNotIdentified) {
			return end(fmt.Errorf("%w: %w", jobs.ErrOffline, err), false)
		}
		return end(err, false)
	}
	if s.File.Size > d.fw.cacheMax {
		// No eviction can make room: fail now rather than after the retries.
		return end(fmt.Errorf("%w: the image's %d bytes exceed firmware.cache_max (%d)", firmware.ErrCacheFull, s.File.Size, d.fw.cacheMax), false)
	}
	img, err := d.fw.cache.Get(s.File.SHA256)
	if errors.Is(err, firmware.ErrNotCached) {
		src, serr := d.fw.source(p.URL, j.Device)
		if serr != nil {
			return end(serr, false)
		}
		r.to(firmware.StatusDownloading, "downloading "+s.File.Name)
		dl := d.fw.downloader(d, j.Device, func(done, total int64) { r.percent(firmware.Percent(done, total)) })
		img, err = d.fw.cache.Fetch(ctx, dl, src, s.File)
	}
	if err != nil {
		transient := errors.Is(err, firmware.ErrTransfer) || errors.Is(err, firmware.ErrCacheFull)
		return end(err, transient)
	}
	defer img.Release()
	r.to(firmware.StatusDownloaded, "image in the gateway's cache")

	r.to(firmware.StatusVerifying, "verifying "+s.UpdateID.String())
	if err := d.checkTarget(ctx, j.Device, s); err != nil {
		return end(err, false)
	}
	if err := img.Verify(s.File); err != nil {
		return end(err, false)
	}

	flat, _ := json.Marshal(map[string]string{"version": s.UpdateID.Version, "sha256": s.File.SHA256})
	r.to(firmware.StatusApplying, "flashing "+s.UpdateID.Version)
	err = d.bridges.Flash(ctx, j.Device, plugins.FlashRequest{ImagePath: img.Path(), Manifest: flat},
		bridges.FlashOptions{Force: j.Force}, r.flashEvent)
	if err != nil {
		err, transient := flashError(err, r.lastPhase())
		return end(err, transient)
	}
	r.current()
	return map[string]any{"version": s.UpdateID.Version, "result": string(firmware.ResultSuccess)}, nil
}

// flashError classifies a failed flash from the plugin's code and the
// last phase it reported: whether another attempt may help, and the
// result a final failure reports.
func flashError(err error, lastPhase string) (error, bool) {
	code := plugins.CodeOf(err)
	switch {
	case code == plugins.CodeInUse:
		return fmt.Errorf("%w: %w", jobs.ErrInUse, err), false
	case code == plugins.CodeUnavailable, code == plugins.CodeBusy:
		// The bus or port is gone or the plugin is down: wait for it;
		// the next attempt resumes from the device's offset.
		return fmt.Errorf("%w: %w", jobs.ErrOffline, err), false
	case lastPhase == plugins.PhaseRolledBack || strings.Contains(err.Error(), "rolled-back:"):
		return fwFailure{firmware.ResultRolledBack, err}, false
	case code == plugins.CodeTimeout && (lastPhase == plugins.PhaseRebooting || lastPhase == plugins.PhaseConfirming):
		return fwFailure{firmware.ResultBootFailed, err}, false
	case code == plugins.CodeTimeout, code == plugins.CodeGatewayPath, code == plugins.CodeGatewayTarget:
		return fwFailure{firmware.ResultTransferError, err}, true // silent mid-upload: resume later
	}
	return fwFailure{firmware.ResultDeviceRejected, err}, false
}

// fwReport reports one attempt of a firmware job in the device's
// reported.firmware and in the job's progress. Statuses only move forward
// along the machine of firmware.Transition; progress goes through
// firmware.Throttle.
type fwReport struct {
	d                           *Daemon
	device, version, deployment string
	jobProgress                 func(int, string)

	mu       sync.Mutex
	status   firmware.Status
	throttle firmware.Throttle
	phase    string // the plugin's last flash phase
}

func (d *Daemon) newFwReport(j jobs.Job, version, deployment string, progress func(int, string)) *fwReport {
	return &fwReport{d: d, device: j.Device, version: version, deployment: deployment, jobProgress: progress, status: firmware.StatusIdle}
}

// jobShare maps a status and its progress onto the job's 0–100.
func jobShare(st firmware.Status, p int) int {
	switch st {
	case firmware.StatusDownloading:
		return p * 30 / 100
	case firmware.StatusDownloaded, firmware.StatusVerifying:
		return 30
	case firmware.StatusApplying:
		return 30 + p*60/100
	case firmware.StatusRebooting:
		return 92
	case firmware.StatusConfirming:
		return 96
	case firmware.StatusCurrent:
		return 100
	}
	return 0
}

func (r *fwReport) send(patch map[string]any) {
	if l := r.d.childLink(r.device); l != nil {
		l.Report(map[string]any{"firmware": patch})
	}
}

// to moves to status st. A plugin may skip phases (an image already
// running is only confirmed): a status further along the machine is
// reported directly, the ones between are implied.
func (r *fwReport) to(st firmware.Status, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st == r.status {
		return
	}
	if !reachable(r.status, st) {
		r.d.log.Warn("firmware status out of order", "device", r.device, "from", r.status, "to", st)
	}
	r.status, r.throttle = st, firmware.Throttle{}
	r.send(map[string]any{"status": string(st), "pendingVersion": r.version, "deployment": r.deployment,
		"progress": 0, "result": nil, "reason": nil, "lastUpdate": r.d.now().UTC().Format(time.RFC3339)})
	r.jobProgress(jobShare(st, 0), msg)
}

// reachable reports whether to follows from along the machine's forward moves.
func reachable(from, to firmware.Status) bool {
	order := []firmware.Status{firmware.StatusIdle, firmware.StatusDownloading, firmware.StatusDownloaded, firmware.StatusVerifying,
		firmware.StatusApplying, firmware.StatusRebooting, firmware.StatusConfirming, firmware.StatusCurrent}
	i, k := -1, -1
	for n, s := range order {
		if s == from {
			i = n
		}
		if s == to {
			k = n
		}
	}
	return firmware.Transition(from, to) == nil || (i >= 0 && k > i)
}

// percent reports progress within the current status.
func (r *fwReport) percent(p int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.throttle.Report(p, r.d.now()) {
		return
	}
	r.send(map[string]any{"progress": p})
	r.jobProgress(jobShare(r.status, p), fmt.Sprintf("%s %d%%", r.status, p))
}

// flashEvent maps a plugin's flash phase onto reported.firmware.
func (r *fwReport) flashEvent(ev plugins.FlashEvent) {
	r.mu.Lock()
	r.phase = ev.Phase
	r.mu.Unlock()
	switch ev.Phase {
	case plugins.PhaseUploading, plugins.PhaseVerifying, plugins.PhaseApplying:
		r.to(firmware.StatusApplying, "flashing")
		if ev.Total > 0 {
			r.percent(firmware.Percent(ev.Done, ev.Total))
		}
	case plugins.PhaseRebooting:
		r.to(firmware.StatusRebooting, "device restarting into "+r.version)
	case plugins.PhaseConfirming:
		r.to(firmware.StatusConfirming, "confirming "+r.version)
	}
}

// lastPhase is the plugin's last flash phase ("" before any).
func (r *fwReport) lastPhase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// current reports the device running the new version.
func (r *fwReport) current() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = firmware.StatusCurrent
	r.send(map[string]any{"status": string(firmware.StatusCurrent), "currentVersion": r.version, "pendingVersion": nil,
		"deployment": r.deployment, "progress": 100, "result": string(firmware.ResultSuccess), "reason": nil,
		"lastUpdate": r.d.now().UTC().Format(time.RFC3339)})
	r.jobProgress(100, "running "+r.version)
}

// fail reports the attempt failed and returns the job's result.
func (r *fwReport) fail(err error) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = firmware.StatusFailed
	patch := failedPatch(err, r.version, r.deployment, r.d.now())
	r.send(patch)
	return map[string]any{"version": r.version, "result": patch["result"], "reason": patch["reason"]}
}

// failedPatch is reported.firmware for a failed update. pendingVersion
// keeps naming the version that failed (null when unknown): it is how
// `droverctl firmware status` tells a failure of that version from a
// device not reached yet (docs/firmware.md).
func failedPatch(err error, version, deployment string, now time.Time) map[string]any {
	var pending any
	if version != "" {
		pending = version
	}
	return map[string]any{"status": string(firmware.StatusFailed), "result": string(resultOf(err)), "reason": err.Error(),
		"pendingVersion": pending, "deployment": deployment, "lastUpdate": now.UTC().Format(time.RFC3339)}
}

// mirrorFirmwareEnd reports a firmware job that ended without its executor
// reporting the outcome: cancelled, past its deadline, or failed by the
// queue itself (a crashed attempt it could not verify).
func (d *Daemon) mirrorFirmwareEnd(j jobs.Job) {
	if j.Kind != jobs.KindFirmware || !j.State.Final() || j.State == jobs.StateSucceeded || len(j.Result) > 0 {
		return
	}
	if strings.HasPrefix(j.Error, "superseded by ") {
		return // a newer job of the device carries the update on and reports it
	}
	var p firmwarePayload
	_ = json.Unmarshal(j.Payload, &p)
	var err error
	switch {
	case j.State == jobs.StateCancelled:
		err = fwFailure{firmware.ResultCancelled, fmt.Errorf("job %s was cancelled", j.ID)}
	case j.Reason == jobs.ReasonDeadline:
		err = fwFailure{firmware.ResultCancelled, fmt.Errorf("job %s passed its deadline", j.ID)}
	default:
		err = fwFailure{firmware.ResultInternal, fmt.Errorf("job %s: %s", j.ID, j.Error)}
	}
	version := ""
	if s, perr := firmware.Parse(p.Manifest); perr == nil {
		version = s.UpdateID.Version
	}
	if l := d.childLink(j.Device); l != nil {
		l.Report(map[string]any{"firmware": failedPatch(err, version, p.Deployment, d.now())})
	}
}

// firmwareFromIdentity returns patch with reported.firmware.currentVersion
// added when it reports the device's identity with a firmware version, so
// a device that was never updated shows what it runs (status idle until an
// update). The bridge's map is not modified: others may hold it.
func (d *Daemon) firmwareFromIdentity(id string, patch map[string]any) map[string]any {
	dev, _ := patch["device"].(map[string]any)
	fv, _ := dev["firmwareVersion"].(string)
	if fv == "" || patch["firmware"] != nil {
		return patch
	}
	fw := map[string]any{}
	if t, err := d.cache.Get(context.Background(), id); err == nil {
		cur, _ := t.Reported["firmware"].(map[string]any)
		if v, _ := cur["currentVersion"].(string); v == fv && cur["status"] != nil {
			return patch
		}
		if cur["status"] == nil {
			fw["status"] = string(firmware.StatusIdle)
		}
	} else {
		fw["status"] = string(firmware.StatusIdle)
	}
	fw["currentVersion"] = fv
	out := maps.Clone(patch)
	out["firmware"] = fw
	return out
}
