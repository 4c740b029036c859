package localhub_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/localhub/hubtest"
)

// report publishes a reported patch as the device and waits for the hub's answer.
func report(t *testing.T, d *hubtest.Device, patch string) {
	t.Helper()
	if err := d.Publish("$iothub/twin/PATCH/properties/reported/?$rid=r1", 0, []byte(patch)); err != nil {
		t.Fatal(err)
	}
	m := d.Await(t, "$iothub/twin/res/#", 10*time.Second)
	if !strings.HasPrefix(m.Topic(), "$iothub/twin/res/204/") {
		t.Fatalf("%s: reported patch answered %s %s", d.ID, m.Topic(), m.Payload())
	}
}

var awaitSpec = map[string]any{"awaitReported": map[string]any{
	"succeeded": "properties.reported.fw = '2.0'",
	"failed":    "properties.reported.fwStatus = 'failed'",
}}

// TestJobAwaitReported: a twin job with awaitReported keeps each device
// running until its reported properties say how the change went, across a
// hub restart, and a cancel ends the waits.
func TestJobAwaitReported(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	keys := map[string]string{}
	for i := range 4 {
		id := fmt.Sprintf("aw-%02d", i)
		keys[id] = env.CreateDevice(t, id).PrimaryKey
	}
	devs := map[string]*hubtest.Device{}
	for _, id := range []string{"aw-00", "aw-01"} {
		devs[id] = env.Connect(t, id, keys[id])
	}
	a.createJob("aw", twinJob("STARTSWITH(deviceId, 'aw-')", awaitSpec))
	a.waitJob("aw", "awaiting 4 devices", func(j jobResp) bool { return j.Status == "running" && j.Stats.RunningCount == 4 })
	report(t, devs["aw-00"], `{"fw":"2.0"}`)
	report(t, devs["aw-01"], `{"fwStatus":"failed"}`)
	j := a.waitJob("aw", "one succeeded, one failed", func(j jobResp) bool { return j.Stats.SucceededCount == 1 && j.Stats.FailedCount == 1 })
	if j.Stats.RunningCount != 2 || j.Status != "running" {
		t.Fatalf("after two reports: %v", j)
	}

	// The hub restarts while two devices are awaited: they stay running and
	// the new hub goes on waiting for them.
	env.Stop(t)
	env = hubtest.StartWith(t, hubtest.Options{DataDir: env.DataDir})
	a = newAPI(t, env)
	if j := a.job("aw"); j.Stats.RunningCount != 2 || j.Stats.SucceededCount != 1 {
		t.Fatalf("after restart: %v", j)
	}
	report(t, env.Connect(t, "aw-02", keys["aw-02"]), `{"fw":"2.0"}`)
	a.waitJob("aw", "two succeeded", func(j jobResp) bool { return j.Stats.SucceededCount == 2 })

	a.must(200, "POST", "/jobs/v2/aw/cancel", nil)
	j = a.waitJob("aw", "cancelled with no device running", func(j jobResp) bool { return terminal(j) && j.Stats.RunningCount == 0 })
	if j.Status != "cancelled" || j.Stats.CancelledCount != 1 {
		t.Errorf("after cancel: %v", j)
	}
	want := map[string]string{"aw-00": "completed/", "aw-01": "failed/DeviceReportedFailure", "aw-02": "completed/", "aw-03": "cancelled/JobCancelled"}
	for _, r := range a.deviceJobs("jobId = 'aw'") {
		got := r.Status + "/"
		if r.Error != nil {
			got += r.Error.Code
		}
		if got != want[r.DeviceID] {
			t.Errorf("%s: %s, want %s", r.DeviceID, got, want[r.DeviceID])
		}
	}
}

// TestJobAwaitAbort: devices reporting failure trip the abort threshold; the
// devices still awaited are cancelled (JobAborted).
func TestJobAwaitAbort(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	var devs []*hubtest.Device
	for i := range 6 {
		id := fmt.Sprintf("ab-%02d", i)
		devs = append(devs, env.Connect(t, id, env.CreateDevice(t, id).PrimaryKey))
	}
	spec := map[string]any{"abort": map[string]any{"failureThresholdPercent": 50, "minDevices": 2}}
	for k, v := range awaitSpec {
		spec[k] = v
	}
	a.createJob("ab", twinJob("STARTSWITH(deviceId, 'ab-')", spec))
	a.waitJob("ab", "awaiting 6 devices", func(j jobResp) bool { return j.Stats.RunningCount == 6 })
	report(t, devs[0], `{"fwStatus":"failed"}`)
	if j := a.job("ab"); j.Status != "running" {
		t.Fatalf("one failure of minDevices 2 ended the job: %v", j)
	}
	report(t, devs[1], `{"fwStatus":"failed"}`)
	j := a.waitJob("ab", "aborted", func(j jobResp) bool { return terminal(j) && j.Stats.RunningCount == 0 })
	if j.Status != "failed" || !strings.HasPrefix(j.FailureReason, "aborted: 2 of 2") || j.Stats.CancelledCount != 4 {
		t.Errorf("job %v", j)
	}
	for _, r := range a.deviceJobs("jobId = 'ab' AND status = 'cancelled'") {
		if r.Error == nil || r.Error.Code != "JobAborted" {
			t.Errorf("%s: error %+v, want JobAborted", r.DeviceID, r.Error)
		}
	}
}

func TestJobAwaitBadBodies(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	for _, tc := range []struct {
		body map[string]any
		msg  string
	}{
		{methodJob("*", map[string]any{"awaitReported": map[string]any{"succeeded": "properties.reported.x = 1"}}), "awaitReported: only a scheduleUpdateTwin job"},
		{twinJob("*", map[string]any{"awaitReported": map[string]any{"failed": "properties.reported.x = 1"}}), "awaitReported.succeeded: is required"},
		{twinJob("*", map[string]any{"awaitReported": map[string]any{"succeeded": "properties.reported.x = "}}), "awaitReported.succeeded: query: at"},
		{twinJob("*", map[string]any{"awaitReported": map[string]any{"succeeded": "true", "failed": "FOO(1)"}}), "awaitReported.failed: query"},
	} {
		r := a.do("PUT", "/jobs/v2/bad", tc.body)
		if r.Status != 400 || !strings.Contains(string(r.Body), tc.msg) {
			t.Errorf("PUT %v: %d %s, want 400 mentioning %q", tc.body, r.Status, r.Body, tc.msg)
		}
	}
}
