package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/host"
	"github.com/drover-iot/drover/plugins/plugintest"
)

var pumpInitial = map[string]any{"setpoint": json.Number("20.5"), "mode": 1, "running": false, "temperature": json.Number("18.5")}

// awaitConfig waits for reported.config of device with status and version.
func (s *stack) awaitConfig(device, status string, version int64) map[string]any {
	s.t.Helper()
	var sec map[string]any
	s.reports.Await(s.t, waitLimit, fmt.Sprintf("%s config %s v%d", device, status, version), func(rs []report) bool {
		sec = section(rs, device, "config")
		return sec["status"] == status && sec["version"] == version
	})
	return sec
}

// configResult decodes a config job's result.
func configResult(t *testing.T, j jobs.Job) bridges.ConfigResult {
	t.Helper()
	var r bridges.ConfigResult
	if err := json.Unmarshal(j.Result, &r); err != nil {
		t.Fatalf("job %s result %s: %v", j.ID, j.Result, err)
	}
	return r
}

func final(j jobs.Job) bool { return j.State.Final() }

// TestConfigJobPerVersion checks that every desired config version with
// writes becomes one config job (source desired) that applies it, while
// repeats and versions rejected by the plan create none.
func TestConfigJobPerVersion(t *testing.T) {
	s := newStack(t, t.TempDir(), stackOptions{initial: pumpInitial})
	s.awaitOnline("pump-1")

	for i, sp := range []string{"22.5", "23.5"} {
		v := int64(3 + i)
		s.desired("pump-1", map[string]any{"config": map[string]any{"setpoint": json.Number(sp)}}, v)
		s.awaitConfig("pump-1", bridges.ConfigApplied, v)
		js := s.jobsOf("pump-1")
		if len(js) != i+1 {
			t.Fatalf("after v%d: %d jobs, want %d", v, len(js), i+1)
		}
		j := s.awaitJob(js[i].ID, "succeeded", final)
		if j.Kind != jobs.KindConfig || j.Source != jobs.SourceDesired || j.State != jobs.StateSucceeded || j.Attempts != 1 {
			t.Fatalf("v%d job: kind %s source %s state %s attempts %d", v, j.Kind, j.Source, j.State, j.Attempts)
		}
		if r := configResult(t, j); r.Status != bridges.ConfigApplied || r.Version != v {
			t.Fatalf("v%d job result %+v", v, r)
		}
		if got := s.plug.value(t, "pump-1", "setpoint"); fmt.Sprint(got) != sp {
			t.Fatalf("setpoint on the device = %v, want %s", got, sp)
		}
	}
	// A repeat after a reconnect and a version the plan rejects: no job.
	s.desired("pump-1", map[string]any{"config": map[string]any{"setpoint": json.Number("23.5")}}, 4)
	s.desired("pump-1", map[string]any{"config": map[string]any{"temperature": 1}}, 5)
	s.awaitConfig("pump-1", bridges.ConfigRejected, 5)
	if js := s.jobsOf("pump-1"); len(js) != 2 {
		t.Fatalf("%d jobs after a repeat and a rejected version, want 2", len(js))
	}

	// Kind and source are what the technician and the hub see.
	infos, err := backend{s.d}.Jobs(context.Background(), "pump-1")
	if err != nil || len(infos) != 2 || infos[0].Kind != jobs.KindConfig || infos[0].Source != string(jobs.SourceDesired) || infos[0].State != "succeeded" {
		t.Fatalf("local API jobs = %+v, %v", infos, err)
	}
	// One job in full: what was asked (version and config) and the outcome.
	det, err := backend{s.d}.Job(context.Background(), infos[0].ID)
	if err != nil || det.ID != infos[0].ID || !strings.Contains(string(det.Payload), `"setpoint":23.5`) || det.Ended.IsZero() {
		t.Fatalf("local API job = %+v, %v", det, err)
	}
	if _, err := (backend{s.d}).Job(context.Background(), "j-nope"); plugins.CodeOf(err) != plugins.CodeNotFound {
		t.Fatalf("unknown job: %v, want not-found", err)
	}
	s.changes.Await(t, waitLimit, "the last job mirrored", func(js []jobs.Job) bool {
		return len(js) > 0 && js[len(js)-1].ID == infos[0].ID && js[len(js)-1].State.Final()
	})
	last, _ := s.twinReported("pump-1")["lastJob"].(map[string]any)
	if last["kind"] != jobs.KindConfig || last["source"] != string(jobs.SourceDesired) || last["state"] != "succeeded" {
		t.Fatalf("reported.lastJob = %v", last)
	}
}

// TestConfigJobSuperseded checks that a newer version cancels a queued
// older one, and that the one already running ends as superseded.
func TestConfigJobSuperseded(t *testing.T) {
	s := newStack(t, t.TempDir(), stackOptions{initial: pumpInitial})
	s.awaitOnline("pump-1")
	gate := s.plug.hold()
	cfg := func(sp string) map[string]any {
		return map[string]any{"config": map[string]any{"setpoint": json.Number(sp)}}
	}

	s.desired("pump-1", cfg("21.5"), 1)
	s.plug.writes.Await(t, waitLimit, "v1 on the bus", func(w []string) bool { return len(w) == 1 })
	s.desired("pump-1", cfg("22.5"), 2) // waits: the device is busy with v1
	s.desired("pump-1", cfg("23.5"), 3) // replaces v2
	js := s.jobsOf("pump-1")
	if len(js) != 3 {
		t.Fatalf("%d jobs, want 3", len(js))
	}
	v1, v2, v3 := js[0], js[1], js[2]
	if got := s.awaitJob(v2.ID, "cancelled", final); got.State != jobs.StateCancelled || got.Error != "superseded by "+v3.ID {
		t.Fatalf("v2 job: %s %q, want cancelled, superseded by %s", got.State, got.Error, v3.ID)
	}
	gate <- struct{}{} // v1's write ends
	if got := s.awaitJob(v1.ID, "ended", final); got.State != jobs.StateSucceeded || configResult(t, got).Status != bridges.ConfigSuperseded {
		t.Fatalf("v1 job: %s %s, want succeeded as superseded", got.State, got.Result)
	}
	s.plug.writes.Await(t, waitLimit, "v3 on the bus", func(w []string) bool { return len(w) == 2 })
	gate <- struct{}{}
	if got := s.awaitJob(v3.ID, "ended", final); got.State != jobs.StateSucceeded || configResult(t, got).Status != bridges.ConfigApplied {
		t.Fatalf("v3 job: %s %s, want applied", got.State, got.Result)
	}
	s.awaitConfig("pump-1", bridges.ConfigApplied, 3)
	for _, r := range s.reports.All() {
		if c, ok := r.Patch["config"].(map[string]any); ok && c["status"] == bridges.ConfigApplied && c["version"] != int64(3) {
			t.Fatalf("an older version was reported applied: %v", c)
		}
	}
	if got := s.plug.value(t, "pump-1", "setpoint"); got != 23.5 {
		t.Fatalf("setpoint = %v, want 23.5", got)
	}
}

// TestConfigJobFailures checks what the queue makes of a failed write:
// no answer is retried after a back-off and counts as an attempt; a busy
// bus (nothing sent) defers the job without counting; a device error
// fails it, with the bridge's result kept.
func TestConfigJobFailures(t *testing.T) {
	tests := []struct {
		name         string
		code         plugins.Code
		wantState    jobs.State
		wantAttempts int
		wantWaiting  jobs.Reason // the reason it waited for in between
		wantReported string
	}{
		{"no answer: retried", plugins.CodeTimeout, jobs.StateSucceeded, 2, jobs.ReasonRetry, bridges.ConfigApplied},
		{"busy: deferred", plugins.CodeBusy, jobs.StateSucceeded, 1, jobs.ReasonOffline, bridges.ConfigApplied},
		{"device error: failed", plugins.CodeDeviceError, jobs.StateFailed, 1, "", bridges.ConfigRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), stackOptions{initial: pumpInitial, tuneJobs: func(o *jobs.Options) {
				o.BackoffBase, o.BackoffMax, o.Recheck = 20*time.Millisecond, 20*time.Millisecond, 20*time.Millisecond
			}})
			s.awaitOnline("pump-1")
			s.plug.Arm("write", plugintest.Fault{Action: plugintest.FaultError, Code: tt.code})
			s.desired("pump-1", map[string]any{"config": map[string]any{"setpoint": json.Number("24.5")}}, 7)
			j := s.jobsOf("pump-1")[0]
			got := s.awaitJob(j.ID, "ended", final)
			if got.State != tt.wantState || got.Attempts != tt.wantAttempts {
				t.Fatalf("job %s attempts %d (error %q), want %s attempts %d", got.State, got.Attempts, got.Error, tt.wantState, tt.wantAttempts)
			}
			waited := false
			for _, c := range s.changes.All() {
				waited = waited || (c.ID == j.ID && c.State == jobs.StateWaiting && c.Reason == tt.wantWaiting)
			}
			if tt.wantWaiting != "" && !waited {
				t.Fatalf("the job never waited for %s", tt.wantWaiting)
			}
			sec := s.awaitConfig("pump-1", tt.wantReported, 7)
			if tt.wantState == jobs.StateFailed {
				if r := configResult(t, got); r.Status != bridges.ConfigRejected || !strings.Contains(r.Errors["setpoint"], "scripted write fault") {
					t.Fatalf("failed job result %+v", r)
				}
				return
			}
			if sec["errors"] != nil {
				t.Fatalf("applied with errors: %v", sec)
			}
			var sawPendingErr bool
			for _, r := range s.reports.All() {
				if c, ok := r.Patch["config"].(map[string]any); ok && c["status"] == bridges.ConfigPending && c["errors"] != nil {
					sawPendingErr = true
				}
			}
			if !sawPendingErr {
				t.Fatal("the failed attempt was not reported as pending with its error")
			}
		})
	}
}

// TestWriteMethodJob checks the write method: a job (kind write) that
// answers inline with the bridge's body plus its id, 202 when it does not
// end in time, and no job for a call the bridge refuses.
func TestWriteMethodJob(t *testing.T) {
	s := newStack(t, t.TempDir(), stackOptions{initial: pumpInitial})
	s.awaitOnline("pump-1")

	t.Run("inline", func(t *testing.T) {
		for _, src := range []jobs.Source{jobs.SourceHubMethod, jobs.SourceTechnician} {
			st, body := s.methodFrom(src, "pump-1", "write", `{"setpoint": 21.5}`)
			id, _ := body["jobId"].(string)
			if st != 200 || id == "" || fmt.Sprint(body["results"]) != "map[setpoint:map[ok:true readBack:21.5]]" {
				t.Fatalf("write from %s = %d %v", src, st, body)
			}
			j := s.awaitJob(id, "final", final)
			if j.Kind != jobs.KindWrite || j.Source != src || j.State != jobs.StateSucceeded {
				t.Fatalf("job %+v", j)
			}
		}
	})
	t.Run("refused calls make no job", func(t *testing.T) {
		before := len(s.jobsOf("pump-1"))
		for _, c := range []struct {
			payload string
			want    int
			err     string
		}{
			{`{"nope": 1}`, 404, `unknown point "nope"`},
			{`{"temperature": 1}`, 400, "not writable"},
			{`{"setpoint": [1]}`, 400, "got an array"},
			{`[1]`, 400, "bad payload for write"},
		} {
			st, body := s.method("pump-1", "write", c.payload)
			if st != c.want || !strings.Contains(fmt.Sprint(body["error"]), c.err) || body["jobId"] != nil {
				t.Errorf("write %s = %d %v, want %d %q without a job", c.payload, st, body, c.want, c.err)
			}
		}
		if n := len(s.jobsOf("pump-1")); n != before {
			t.Fatalf("%d jobs created by refused calls", n-before)
		}
	})
	t.Run("refused by the device", func(t *testing.T) {
		st, body := s.method("pump-1", "write", `{"setpoint": 3}`) // an int where the fake holds a float
		if st != 500 || body["jobId"] == nil || !strings.Contains(fmt.Sprint(body["results"]), "type mismatch") {
			t.Fatalf("write = %d %v, want 500 with results and jobId", st, body)
		}
		if j := s.awaitJob(body["jobId"].(string), "final", final); j.State != jobs.StateFailed {
			t.Fatalf("job %s, want failed", j.State)
		}
	})
	t.Run("202 when slow", func(t *testing.T) {
		gate := s.plug.hold()
		defer s.plug.release()
		ctx, cancel := context.WithTimeout(context.Background(), answerMargin+100*time.Millisecond)
		defer cancel()
		st, resp := s.d.deviceMethod(ctx, "pump-1", "write", json.RawMessage(`{"setpoint": 22.5}`), jobs.SourceHubMethod)
		body, _ := resp.(map[string]any)
		id, _ := body["jobId"].(string)
		if st != 202 || id == "" || body["state"] != string(jobs.StateRunning) {
			t.Fatalf("slow write = %d %v, want 202 with the running job", st, body)
		}
		gate <- struct{}{}
		j := s.awaitJob(id, "final", final)
		code, answer := jobAnswer(j)
		if j.State != jobs.StateSucceeded || code != 200 || fmt.Sprint(answer) != fmt.Sprintf("map[jobId:%s results:map[setpoint:map[ok:true readBack:22.5]]]", id) {
			t.Fatalf("job %s: answer %d %v", j.State, code, answer)
		}
	})
	t.Run("technician write through the local API", func(t *testing.T) {
		res, err := backend{s.d}.Write(context.Background(), "pump-1", map[string]any{"setpoint": 19.5})
		if err != nil || len(res) != 1 || !res[0].OK {
			t.Fatalf("Write = %+v, %v", res, err)
		}
		js := s.jobsOf("pump-1")
		if last := js[len(js)-1]; last.Kind != jobs.KindWrite || last.Source != jobs.SourceTechnician {
			t.Fatalf("last job %s from %s", last.Kind, last.Source)
		}
	})
}

// TestCustomMethodJobs checks custom methods: a job of kind
// method:<name> writing the profile's values and answering like write;
// refused payloads and unknown names answered at once; a disruptive one
// waiting for a maintenance window (202) unless forced, and for the in-use
// rule.
func TestCustomMethodJobs(t *testing.T) {
	// A window that opens in 12 hours: closed for the whole test.
	at := time.Now().UTC().Add(12 * time.Hour)
	maintenance := fmt.Sprintf("maintenance:\n  windows:\n    - { cron: \"%d %d * * *\", duration: 1m, timezone: UTC }\n", at.Minute(), at.Hour())
	s := newStack(t, t.TempDir(), stackOptions{initial: pumpInitial, maintenance: maintenance})
	s.awaitOnline("pump-1")

	t.Run("not disruptive: inline", func(t *testing.T) {
		st, body := s.method("pump-1", "resetCounters", "")
		id, _ := body["jobId"].(string)
		if st != 200 || id == "" || fmt.Sprint(body["results"]) != "map[counter_reset:map[ok:true readBack:true]]" {
			t.Fatalf("resetCounters = %d %v", st, body)
		}
		j := s.awaitJob(id, "final", final)
		if j.Kind != "method:resetCounters" || j.Source != jobs.SourceHubMethod || j.Disruptive || j.State != jobs.StateSucceeded {
			t.Fatalf("job %+v", j)
		}
		if v := s.plug.value(t, "pump-1", "counter_reset"); v != true {
			t.Fatalf("counter_reset = %v", v)
		}
	})
	t.Run("disruptive waits for the window", func(t *testing.T) {
		st, body := s.method("pump-1", "eco", "")
		id, _ := body["jobId"].(string)
		if st != 202 || body["state"] != string(jobs.StateWaiting) || body["reason"] != string(jobs.ReasonWindow) {
			t.Fatalf("eco = %d %v, want 202 waiting for the window", st, body)
		}
		if _, err := s.d.jobs.Cancel(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("disruptive forced: inline", func(t *testing.T) {
		st, body := s.method("pump-1", "eco", `{"force": true}`)
		if st != 200 || fmt.Sprint(body["results"]) != "map[mode:map[ok:true readBack:2] setpoint:map[ok:true readBack:18.5]]" {
			t.Fatalf("forced eco = %d %v", st, body)
		}
		if v := s.plug.value(t, "pump-1", "setpoint"); v != 18.5 {
			t.Fatalf("setpoint = %v", v)
		}
	})
	t.Run("refused at once", func(t *testing.T) {
		before := len(s.jobsOf("pump-1"))
		st, body := s.method("pump-1", "eco", `{"forse": true}`)
		if st != 400 || !strings.Contains(fmt.Sprint(body["error"]), "bad payload for eco") {
			t.Fatalf("eco with a typo = %d %v", st, body)
		}
		st, body = s.method("pump-1", "selfDestruct", "")
		if st != 404 || !strings.Contains(fmt.Sprint(body["error"]), "factoryReset, eco, resetCounters") {
			t.Fatalf("unknown method = %d %v, want 404 listing the custom methods", st, body)
		}
		if n := len(s.jobsOf("pump-1")); n != before {
			t.Fatalf("%d jobs created by refused calls", n-before)
		}
	})
	t.Run("kind in the local API", func(t *testing.T) {
		infos, err := backend{s.d}.Jobs(context.Background(), "pump-1")
		if err != nil || len(infos) == 0 || infos[0].Kind != "method:eco" {
			t.Fatalf("jobs = %+v, %v", infos, err)
		}
	})
}

// TestDisruptiveCustomMethodWaitsWhileInUse checks the in-use rule of a
// disruptive custom method when no window holds it back.
func TestDisruptiveCustomMethodWaitsWhileInUse(t *testing.T) {
	initial := map[string]any{"setpoint": json.Number("20.5"), "mode": 1, "running": true}
	s := newStack(t, t.TempDir(), stackOptions{initial: initial})
	s.awaitOnline("pump-1")
	ctx, cancel := context.WithTimeout(context.Background(), answerMargin+200*time.Millisecond)
	defer cancel()
	st, resp := s.d.deviceMethod(ctx, "pump-1", "eco", nil, jobs.SourceTechnician)
	body, _ := resp.(map[string]any)
	id, _ := body["jobId"].(string)
	if st != 202 || id == "" {
		t.Fatalf("eco while running = %d %v, want 202", st, body)
	}
	j := s.awaitJob(id, "waiting in-use", func(j jobs.Job) bool { return j.State == jobs.StateWaiting && j.Reason == jobs.ReasonInUse })
	if j.Attempts != 0 {
		t.Fatalf("in-use deferral counted as an attempt: %d", j.Attempts)
	}
	if v := s.plug.value(t, "pump-1", "setpoint"); v != 20.5 {
		t.Fatalf("setpoint written while in use: %v", v)
	}
	if _, err := s.d.jobs.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	// Reboot still answers 202 at once.
	if st, body := s.method("pump-1", "reboot", `{"force": true}`); st != 202 || body["jobId"] == nil {
		t.Fatalf("reboot = %d %v", st, body)
	}
}

func TestPluginUp(t *testing.T) {
	tests := []struct {
		state  host.State
		up, ok bool
	}{
		{host.StateUp, true, true},
		{host.StateDown, false, true},
		{host.StateStarting, false, false}, // follows a down already told
		{host.StateStopped, false, false},  // the gateway is stopping
	}
	for _, tt := range tests {
		t.Run(tt.state.String(), func(t *testing.T) {
			if up, ok := pluginUp(tt.state); up != tt.up || ok != tt.ok {
				t.Fatalf("pluginUp(%s) = %v, %v; want %v, %v", tt.state, up, ok, tt.up, tt.ok)
			}
		})
	}
}

func TestInlineWait(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		deadline time.Duration // 0: none
		want     time.Duration
	}{
		{"no deadline", 0, methodWait},
		{"far deadline", time.Minute, methodWait},
		{"near deadline", 2 * time.Second, 2*time.Second - answerMargin},
		{"deadline passed", -time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.deadline != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, now.Add(tt.deadline))
				defer cancel()
			}
			if got := inlineWait(ctx, now); got != tt.want {
				t.Fatalf("inlineWait = %v, want %v", got, tt.want)
			}
		})
	}
}
