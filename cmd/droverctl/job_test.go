package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/serviceclient"
)

func TestJobCommands(t *testing.T) {
	c := newCtl(t)
	for _, id := range []string{"pump-1", "pump-2", "pump-3"} {
		c.env.CreateDevice(t, id)
	}

	out := c.ok("job", "create", "fw", "--type", "twin", "--query", "deviceId IN ['pump-1', 'pump-2']",
		"--desired", `{"fw":"2.1"}`, "--tags", `{"wave":1}`, "--rate", "100/min", "--wait", "--interval", "20ms")
	for _, want := range []string{"job fw: ", "Status:", "completed", "Devices:", "Succeeded:", "Rollout:", "100/min", `{"fw":"2.1"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("create --wait lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "2/2 done, 2 succeeded, 0 failed") {
		t.Errorf("no final progress line:\n%s", out)
	}

	out = c.ok("job", "show", "fw", "--devices")
	for _, want := range []string{"DEVICE ID", "pump-1", "pump-2", "completed"} {
		if !strings.Contains(out, want) {
			t.Errorf("show --devices lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "pump-3") {
		t.Errorf("pump-3 is not in the job:\n%s", out)
	}

	var j serviceclient.Job
	c.okJSON(&j, "job", "create", "later", "--type", "method", "--method", "reboot", "--query", "*", "--start", "+1h", "--max-time", "10m")
	if j.Status != serviceclient.JobScheduled || j.MaxExecutionTimeInSeconds != 600 || j.CloudToDeviceMethod.MethodName != "reboot" {
		t.Fatalf("scheduled job %+v", j)
	}
	c.okJSON(&j, "job", "cancel", "later")
	if j.Status != serviceclient.JobCancelled {
		t.Fatalf("cancelled job %+v", j)
	}

	out = c.ok("job", "list")
	if !strings.Contains(out, "fw") || !strings.Contains(out, "later") || !strings.Contains(out, "JOB ID") {
		t.Errorf("list:\n%s", out)
	}
	if out := c.ok("job", "list", "--type", "twin", "--status", "cancelled"); !strings.Contains(out, "(no jobs)") {
		t.Errorf("filtered list:\n%s", out)
	}

	// No device is connected: the method job fails them all and aborts.
	stdout, stderr, code := c.run(context.Background(), "job", "create", "boot", "--type", "method", "--method", "reboot",
		"--query", "*", "--abort-threshold", "50%", "--abort-min", "1", "--rate", "1/min", "--wait", "--interval", "20ms")
	if code != 1 || !strings.Contains(stderr, "job boot failed: aborted") || !strings.Contains(stdout, "Failure reason:") {
		t.Fatalf("aborted job: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// --watch on a finished job just shows it.
	if out := c.ok("job", "show", "fw", "--watch"); !strings.Contains(out, "completed") {
		t.Errorf("show --watch:\n%s", out)
	}
	c.fails("JobNotFound", "job", "show", "nosuch")
	c.fails("JobAlreadyExists", "job", "create", "fw", "--type", "twin", "--query", "*", "--desired", `{"a":1}`)
}

func TestJobCreateFlagErrors(t *testing.T) {
	c := newCtl(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no type", []string{"--query", "*"}, `"type" not set`},
		{"no query", []string{"--type", "twin", "--desired", "{}"}, `"query" not set`},
		{"bad type", []string{"--type", "reboot", "--query", "*"}, `--type "reboot"`},
		{"twin without patch", []string{"--type", "twin", "--query", "*"}, "needs --desired"},
		{"desired not object", []string{"--type", "twin", "--query", "*", "--desired", "[1]"}, "--desired is not a JSON object"},
		{"method without name", []string{"--type", "method", "--query", "*"}, "needs --method"},
		{"method and desired", []string{"--type", "method", "--query", "*", "--method", "m", "--desired", "{}"}, "none of the others"},
		{"bad payload", []string{"--type", "method", "--query", "*", "--method", "m", "--payload", "{"}, "--payload"},
		{"bad rate", []string{"--type", "method", "--query", "*", "--method", "m", "--rate", "fast"}, "--rate"},
		{"factor without every", []string{"--type", "method", "--query", "*", "--method", "m", "--rate", "5/min", "--rate-factor", "2"}, "--rate-every"},
		{"bad threshold", []string{"--type", "method", "--query", "*", "--method", "m", "--abort-threshold", "150%"}, "--abort-threshold"},
		{"min without threshold", []string{"--type", "method", "--query", "*", "--method", "m", "--abort-min", "3"}, "--abort-min"},
		{"bad start", []string{"--type", "method", "--query", "*", "--method", "m", "--start", "tomorrow"}, "--start"},
		{"bad retry-on", []string{"--type", "method", "--query", "*", "--method", "m", "--retries", "2", "--retry-on", "always"}, "--retry-on"},
		{"hub rejects condition", []string{"--type", "method", "--query", "deviceId = = 1", "--method", "m"}, "queryCondition"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.fails(tc.want, append([]string{"job", "create", "j"}, tc.args...)...)
		})
	}
}

func TestJobRequestFromFlags(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f := jobFlags{typ: "method", query: "*", method: "reboot", payload: `{"a":1}`, methodTimeout: 10 * time.Second,
		start: "+90m", maxTime: time.Hour, rate: "5/min", rateFactor: 2, rateEvery: 10, rateMax: "50",
		abortThreshold: "20%", abortMin: 10, deviceTimeout: 30 * time.Second, retries: 2, retryOn: "timeout"}
	req, err := f.request("j", now)
	if err != nil {
		t.Fatal(err)
	}
	r := req.Rollout
	if req.Type != serviceclient.JobTypeDeviceMethod || !req.StartTime.Equal(now.Add(90*time.Minute)) || req.MaxExecutionTimeInSeconds != 3600 ||
		r.Type != serviceclient.RolloutExponential || r.BaseRatePerMinute != 5 || r.DevicesPerMinute != 50 || r.RateIncreaseCriteria.NumberOfSucceeded != 10 ||
		req.Abort.FailureThresholdPercent != 20 || req.Abort.MinDevices != 10 || req.DeviceTimeoutInSeconds != 30 ||
		req.Retry.MaxAttempts != 3 || strings.Join(req.Retry.On, ",") != "timeout" || req.CloudToDeviceMethod.ResponseTimeoutInSeconds != 10 {
		t.Fatalf("request %+v rollout %+v", req, r)
	}
}

func TestProgressLine(t *testing.T) {
	j := &serviceclient.Job{JobID: "j", Status: serviceclient.JobRunning,
		DeviceJobStatistics: serviceclient.JobStatistics{DeviceCount: 4, SucceededCount: 1, FailedCount: 1, RunningCount: 2}}
	var b bytes.Buffer
	p := &progressLine{w: &b}
	p.show(j)
	p.show(j) // unchanged: not repeated
	j.Status, j.DeviceJobStatistics.SucceededCount, j.DeviceJobStatistics.RunningCount = serviceclient.JobCompleted, 3, 0
	p.show(j)
	p.end()
	want := "job j: running 2/4 done, 1 succeeded, 1 failed, 2 running\njob j: completed 4/4 done, 3 succeeded, 1 failed\n"
	if b.String() != want {
		t.Fatalf("plain lines:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	p = &progressLine{w: &b, tty: true}
	p.show(j)
	p.end()
	if got := b.String(); got != "\r[####################] job j: completed 4/4 done, 3 succeeded, 1 failed\x1b[K\n" {
		t.Fatalf("terminal line %q", got)
	}
}
