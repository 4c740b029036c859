package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/service"
	"github.com/drover-iot/drover/localhub/store"
)

// work makes one attempt on one device and records its result.
func (e *Engine) work(ctx context.Context, r *run, t task) result {
	spec := r.job.Spec
	if spec.DeviceTimeoutInSeconds > 0 {
		var cancel func()
		ctx, cancel = e.withDeadline(ctx, e.clock.Now().Add(time.Duration(spec.DeviceTimeoutInSeconds)*time.Second), errDeviceTimeout)
		defer cancel()
	}
	var (
		outcome json.RawMessage
		kind    failKind
		jerr    *store.JobError
	)
	switch r.job.Type {
	case store.JobUpdateTwin:
		kind, jerr = e.applyTwin(ctx, r.job, t)
		if kind == failNone && spec.AwaitReported != nil {
			var ended, paused bool
			kind, jerr, ended, paused = e.await(ctx, r, t)
			if paused {
				return result{task: t, paused: true}
			}
			if ended {
				if err := e.st.EndJobDevice(context.WithoutCancel(ctx), r.job.ID, t.deviceID, store.DeviceJobCancelled, nil, jerr, e.clock.Now()); err != nil {
					r.log.Error("record device result", "device", t.deviceID, "error", err)
				}
				return result{task: t, kind: failFinal}
			}
		}
	case store.JobDeviceMethod:
		outcome, kind, jerr = e.callMethod(ctx, r.job, t)
	default:
		kind, jerr = failFinal, &store.JobError{Code: "ArgumentInvalid", Description: "unknown job type " + r.job.Type}
	}
	status, retry := store.DeviceJobCompleted, false
	if kind != failNone {
		status = store.DeviceJobFailed
		if !r.stopping.Load() && shouldRetry(spec.Retry, kind, t.attempt) {
			status, retry = store.DeviceJobPending, true
		}
	}
	// The result is recorded even when the hub is stopping: a finished
	// record is what keeps a restarted hub from repeating the device.
	if err := e.st.EndJobDevice(context.WithoutCancel(ctx), r.job.ID, t.deviceID, status, outcome, jerr, e.clock.Now()); err != nil {
		r.log.Error("record device result", "device", t.deviceID, "error", err)
	}
	return result{task: t, kind: kind, retry: retry}
}

// withDeadline is context.WithDeadline on the engine's clock, with cause as
// the context's cause when the deadline passes.
func (e *Engine) withDeadline(parent context.Context, at time.Time, cause error) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	due := e.clock.TimerAt(at)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-due.C():
			cancel(cause)
		case <-ctx.Done():
		}
		due.Stop()
	}()
	return ctx, func() {
		cancel(context.Canceled)
		<-done
	}
}

// applyTwin applies the job's tags and desired patch to one twin. The write
// is local and short, so it is never interrupted: a hub that is stopping
// finishes it and records it.
func (e *Engine) applyTwin(ctx context.Context, j store.Job, t task) (failKind, *store.JobError) {
	ctx = context.WithoutCancel(ctx)
	tags, desired, err := decodePatch(j.Spec.UpdateTwin)
	if err != nil {
		return failFinal, &store.JobError{Code: "ArgumentInvalid", Description: err.Error()}
	}
	if t.resumed {
		cur, err := e.st.GetTwin(ctx, t.deviceID)
		if err == nil && contains(cur.Tags.Props, tags) && contains(cur.Desired.Props, desired) {
			return failNone, nil // applied before the hub stopped
		}
	}
	ch, err := e.st.PatchTwin(ctx, t.deviceID, tags, desired, j.Spec.UpdateTwin.Etag)
	var le *twin.LimitError
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		return failFinal, &store.JobError{Code: "DeviceNotFound", Description: err.Error()}
	case errors.Is(err, store.ErrPrecondition):
		return failFinal, &store.JobError{Code: "PreconditionFailed", Description: err.Error()}
	case errors.As(err, &le):
		return failFinal, &store.JobError{Code: "ArgumentInvalid", Description: err.Error()}
	default:
		return failFailed, &store.JobError{Code: "ServerError", Description: err.Error()}
	}
	if ch.DesiredPatch != nil {
		e.dev.DesiredChanged(t.deviceID, ch.DesiredPatch, ch.Twin.Desired.Version)
	}
	return failNone, nil
}

// decodePatch decodes a twin job's patch into fresh maps (each device gets
// its own, as the store may keep parts of a patch in the twin it builds).
func decodePatch(p *store.JobTwinPatch) (tags, desired map[string]any, err error) {
	if p == nil {
		return nil, nil, errors.New("updateTwin is missing")
	}
	if len(p.Tags) > 0 && string(p.Tags) != "null" {
		if tags, err = twin.DecodeObject(p.Tags); err != nil {
			return nil, nil, fmt.Errorf("updateTwin.tags: %w", err)
		}
	}
	if p.Properties != nil && len(p.Properties.Desired) > 0 && string(p.Properties.Desired) != "null" {
		if desired, err = twin.DecodeObject(p.Properties.Desired); err != nil {
			return nil, nil, fmt.Errorf("updateTwin.properties.desired: %w", err)
		}
		delete(desired, "$version")
		delete(desired, "$metadata")
	}
	return tags, desired, nil
}

// contains reports whether merge-patching doc with patch would change
// nothing: every null in patch is absent from doc, every object is
// contained recursively, every other value is equal.
func contains(doc, patch map[string]any) bool {
	for k, pv := range patch {
		dv, ok := doc[k]
		switch pv := pv.(type) {
		case nil:
			if ok {
				return false
			}
		case map[string]any:
			dm, isMap := dv.(map[string]any)
			if !ok || !isMap || !contains(dm, pv) {
				return false
			}
		default:
			if !ok || !reflect.DeepEqual(dv, pv) {
				return false
			}
		}
	}
	return true
}

// methodOutcome is a device record's outcome for a method job.
type methodOutcome struct {
	DeviceMethodResponse struct {
		Status  int             `json:"status"`
		Payload json.RawMessage `json:"payload"`
	} `json:"deviceMethodResponse"`
}

// callMethod invokes the job's method on one device.
func (e *Engine) callMethod(ctx context.Context, j store.Job, t task) (json.RawMessage, failKind, *store.JobError) {
	m := j.Spec.CloudToDeviceMethod
	if m == nil {
		return nil, failFinal, &store.JobError{Code: "ArgumentInvalid", Description: "cloudToDeviceMethod is missing"}
	}
	payload := m.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	resp := m.ResponseTimeoutInSeconds
	if resp <= 0 {
		resp = 30
	}
	status, body, err := e.dev.InvokeMethod(ctx, t.deviceID, m.MethodName, payload,
		time.Duration(resp)*time.Second, time.Duration(m.ConnectTimeoutInSeconds)*time.Second)
	if err != nil {
		kind, code, desc := classify(ctx, err)
		return nil, kind, &store.JobError{Code: code, Description: desc}
	}
	var out methodOutcome
	out.DeviceMethodResponse.Status = status
	out.DeviceMethodResponse.Payload = body
	if len(body) == 0 {
		out.DeviceMethodResponse.Payload = json.RawMessage("null")
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, failFinal, &store.JobError{Code: "ServerError", Description: "encode outcome: " + err.Error()}
	}
	if status >= 400 {
		return b, failFailed, &store.JobError{Code: "DeviceMethodFailed", Description: fmt.Sprintf("the device answered %s with status %d", m.MethodName, status)}
	}
	return b, failNone, nil
}

// classify maps a failed method call to a failure kind and an error code.
func classify(ctx context.Context, err error) (failKind, string, string) {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errDeviceTimeout):
		return failTimeout, "DeviceTimeout", "no answer before " + cause.Error()
	case errors.Is(cause, errJobTimeout):
		return failFinal, "JobTimeout", "abandoned: " + cause.Error()
	case errors.Is(cause, errHubStopped):
		return failFinal, "Interrupted", "abandoned: " + cause.Error() + " while the call was in flight; it is not repeated"
	}
	switch {
	case errors.Is(err, service.ErrDeviceNotOnline):
		return failFailed, "DeviceNotOnline", "the device is not online or has not subscribed to direct methods"
	case errors.Is(err, service.ErrMethodTimeout):
		return failTimeout, "GatewayTimeout", "the device did not answer within responseTimeoutInSeconds"
	case errors.Is(err, service.ErrBadResponse):
		return failFailed, "BadDeviceResponse", err.Error()
	}
	return failFailed, "ServerError", err.Error()
}
