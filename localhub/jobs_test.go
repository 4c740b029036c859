package localhub_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/localhub"
	"github.com/drover-iot/drover/localhub/certs"
	"github.com/drover-iot/drover/localhub/hubtest"
)

// These tests drive Jobs v2 through the REST API of a real hub, with real
// devices over MQTT where the job needs connected ones. Schedules, rollouts
// and deadlines run on a clock.Manual, so nothing waits for wall time.

// t0 is where fake clocks start.
var t0 = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)

// startClockHub runs a hub on dir whose job engine uses clk. It returns the
// environment and a stop function (also run at cleanup).
func startClockHub(t *testing.T, dir string, clk clock.Clock) (*hubtest.Env, func()) {
	t.Helper()
	h, err := localhub.New(localhub.Options{DataDir: dir, Hostname: "localhost", MQTTAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", JobClock: clk})
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("hub stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("hub not ready after 30s")
	}
	cs, err := h.OwnerConnectionString(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.Pool(h.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	env := &hubtest.Env{Hub: h, DataDir: dir, Hostname: h.Hostname(), MQTTAddr: h.MQTTAddr(), HTTPSAddr: h.HTTPSAddr(),
		OwnerConnectionString: cs, CAFile: h.CAFile(), CAPool: pool}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("hub stopped with error: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("hub did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return env, stop
}

// jobResp is the part of a JobResponse the tests look at.
type jobResp struct {
	JobID         string `json:"jobId"`
	Type          string `json:"type"`
	Status        string `json:"status"`
	FailureReason string `json:"failureReason"`
	StatusMessage string `json:"statusMessage"`
	CreatedTime   string `json:"createdTime"`
	StartTime     string `json:"startTime"`
	EndTime       string `json:"endTime"`
	Stats         struct {
		DeviceCount    int `json:"deviceCount"`
		FailedCount    int `json:"failedCount"`
		SucceededCount int `json:"succeededCount"`
		RunningCount   int `json:"runningCount"`
		PendingCount   int `json:"pendingCount"`
		CancelledCount int `json:"cancelledCount"`
	} `json:"deviceJobStatistics"`
}

func (j jobResp) String() string {
	s := j.Stats
	return fmt.Sprintf("%s %s (%s) devices=%d succeeded=%d failed=%d (cancelled %d) running=%d pending=%d",
		j.JobID, j.Status, j.FailureReason, s.DeviceCount, s.SucceededCount, s.FailedCount, s.CancelledCount, s.RunningCount, s.PendingCount)
}

// deviceJob is a devices.jobs record.
type deviceJob struct {
	DeviceID    string `json:"deviceId"`
	JobID       string `json:"jobId"`
	JobType     string `json:"jobType"`
	Status      string `json:"status"`
	StartTime   string `json:"startTimeUtc"`
	EndTime     string `json:"endTimeUtc"`
	Created     string `json:"createdDateTimeUtc"`
	LastUpdated string `json:"lastUpdatedDateTimeUtc"`
	Attempts    int    `json:"attempts"`
	Outcome     struct {
		DeviceMethodResponse *struct {
			Status  int             `json:"status"`
			Payload json.RawMessage `json:"payload"`
		} `json:"deviceMethodResponse"`
	} `json:"outcome"`
	Error *struct {
		Code        string `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

func (a *api) createJob(id string, body map[string]any) jobResp {
	a.t.Helper()
	var j jobResp
	decode(a.t, a.must(200, "PUT", "/jobs/v2/"+id, body).Body, &j)
	return j
}

func (a *api) job(id string) jobResp {
	a.t.Helper()
	var j jobResp
	decode(a.t, a.must(200, "GET", "/jobs/v2/"+id, nil).Body, &j)
	return j
}

// waitJob polls the job (there is no event for job progress over REST)
// until cond holds, for at most 15 seconds.
func (a *api) waitJob(id, what string, cond func(jobResp) bool) jobResp {
	a.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j := a.job(id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("job %s: not %s within 15s: %v", id, what, j)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline: no event exists
	}
}

func terminal(j jobResp) bool {
	return j.Status == "completed" || j.Status == "failed" || j.Status == "cancelled"
}

// deviceJobs runs a devices.jobs query and returns every record.
func (a *api) deviceJobs(where string) []deviceJob {
	a.t.Helper()
	q := "SELECT * FROM devices.jobs"
	if where != "" {
		q += " WHERE " + where
	}
	var all []deviceJob
	cont := ""
	for {
		hdr := []string{"x-ms-max-item-count", "2"}
		if cont != "" {
			hdr = append(hdr, "x-ms-continuation", cont)
		}
		r := a.must(200, "POST", "/devices/query", map[string]string{"query": q}, hdr...)
		if it := r.Header.Get("x-ms-item-type"); it != "deviceJob" {
			a.t.Fatalf("%s: x-ms-item-type %q, want deviceJob", q, it)
		}
		var page []deviceJob
		decode(a.t, r.Body, &page)
		all = append(all, page...)
		if cont = r.Header.Get("x-ms-continuation"); cont == "" {
			return all
		}
	}
}

// desiredVersion reads a twin's desired $version.
func (a *api) desiredVersion(id string) float64 {
	a.t.Helper()
	tw := a.must(200, "GET", "/twins/"+id, nil).json(a.t)
	return tw["properties"].(map[string]any)["desired"].(map[string]any)["$version"].(float64)
}

func createDevices(t *testing.T, env *hubtest.Env, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%02d", prefix, i)
		env.CreateDevice(t, ids[i])
	}
	return ids
}

func twinJob(cond string, extra map[string]any) map[string]any {
	b := map[string]any{
		"type":           "scheduleUpdateTwin",
		"queryCondition": cond,
		"updateTwin":     map[string]any{"etag": "*", "tags": map[string]any{"wave": 1}, "properties": map[string]any{"desired": map[string]any{"fw": "2.0"}}},
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func methodJob(cond string, extra map[string]any) map[string]any {
	b := map[string]any{
		"type":                "scheduleDeviceMethod",
		"queryCondition":      cond,
		"cloudToDeviceMethod": map[string]any{"methodName": "reboot", "payload": map[string]any{"delay": 1}, "responseTimeoutInSeconds": 10},
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func TestJobStartTimeHonoured(t *testing.T) {
	t.Parallel()
	clk := clock.NewManual(t0)
	env, _ := startClockHub(t, t.TempDir(), clk)
	a := newAPI(t, env)
	createDevices(t, env, "s", 3)

	start := t0.Add(10 * time.Minute)
	j := a.createJob("later", twinJob("*", map[string]any{"startTime": start.Format(time.RFC3339)}))
	if j.Status != "scheduled" || !strings.HasPrefix(j.StartTime, "2030-01-02T03:10:00") || !strings.HasPrefix(j.CreatedTime, "2030-01-02T03:00:00") {
		t.Fatalf("created %+v", j)
	}
	// A start time in the past means now. The engine may already have run
	// the one-device job by the time the create answer is written, so any
	// status but scheduled is right here.
	past := a.createJob("past", twinJob("deviceId = 's00'", map[string]any{"startTime": "2001-01-01T00:00:00Z"}))
	if past.Status == "scheduled" || past.StartTime != past.CreatedTime {
		t.Fatalf("past start: %+v", past)
	}
	a.waitJob("past", "completed", func(j jobResp) bool { return j.Status == "completed" })

	clk.Advance(9 * time.Minute)
	if j := a.job("later"); j.Status != "scheduled" || j.Stats.DeviceCount != 0 {
		t.Fatalf("before its start time: %v", j)
	}
	if v := a.desiredVersion("s01"); v != 1 {
		t.Fatalf("s01 desired $version %v before the job started", v)
	}
	clk.Advance(time.Minute)
	j = a.waitJob("later", "completed", func(j jobResp) bool { return j.Status == "completed" })
	if j.Stats.DeviceCount != 3 || j.Stats.SucceededCount != 3 || !strings.HasPrefix(j.EndTime, "2030-01-02T03:10:00") {
		t.Fatalf("after its start time: %v end %s", j, j.EndTime)
	}
	for _, r := range a.deviceJobs("devices.jobs.jobId = 'later'") {
		if !strings.HasPrefix(r.StartTime, "2030-01-02T03:10:00") || r.Status != "completed" {
			t.Errorf("record %+v", r)
		}
	}
}

func TestJobMaxExecutionTime(t *testing.T) {
	t.Parallel()
	clk := clock.NewManual(t0)
	env, _ := startClockHub(t, t.TempDir(), clk)
	a := newAPI(t, env)
	createDevices(t, env, "m", 4)

	// One device a minute and 150 s: devices 0, 1 and 2 start at 0, 60 and
	// 120 s; at 150 s the job ends and device 3 never starts.
	a.createJob("slow", twinJob("*", map[string]any{"maxExecutionTimeInSeconds": 150,
		"rollout": map[string]any{"type": "constant", "devicesPerMinute": 1}}))
	for i := 1; i <= 3; i++ {
		a.waitJob("slow", fmt.Sprintf("%d done", i), func(j jobResp) bool { return j.Stats.SucceededCount == i })
		clk.Advance(time.Minute)
	}
	// Now at 180 s: the deadline (150 s) has passed.
	j := a.waitJob("slow", "failed", terminal)
	if j.Status != "failed" || !strings.Contains(j.FailureReason, "maxExecutionTimeInSeconds (150) exceeded") ||
		j.Stats.SucceededCount != 3 || j.Stats.FailedCount != 1 || j.Stats.CancelledCount != 1 {
		t.Fatalf("after the deadline: %v", j)
	}
	recs := a.deviceJobs("devices.jobs.jobId = 'slow' AND devices.jobs.status = 'cancelled'")
	if len(recs) != 1 || recs[0].DeviceID != "m03" || recs[0].Error == nil || recs[0].Error.Code != "JobTimeout" {
		t.Fatalf("cancelled records %+v", recs)
	}
	if v := a.desiredVersion("m03"); v != 1 {
		t.Fatalf("m03 was patched after the deadline ($version %v)", v)
	}
}

func TestJobCancelMidway(t *testing.T) {
	t.Parallel()
	clk := clock.NewManual(t0)
	env, _ := startClockHub(t, t.TempDir(), clk)
	a := newAPI(t, env)
	createDevices(t, env, "c", 5)

	a.createJob("stopme", twinJob("*", map[string]any{"rollout": map[string]any{"type": "constant", "devicesPerMinute": 2}}))
	a.waitJob("stopme", "2 done", func(j jobResp) bool { return j.Stats.SucceededCount == 2 })
	var j jobResp
	decode(t, a.must(200, "POST", "/jobs/v2/stopme/cancel", nil).Body, &j)
	if j.Status != "cancelled" || j.Stats.CancelledCount != 3 || j.Stats.PendingCount != 0 {
		t.Fatalf("cancel answered %v", j)
	}
	clk.Advance(10 * time.Minute)
	// Another job runs to the end on the same engine: once it has, the
	// cancelled one has had every chance to (wrongly) continue.
	a.createJob("after", twinJob("deviceId = 'c00'", nil))
	a.waitJob("after", "completed", func(j jobResp) bool { return j.Status == "completed" })
	j = a.job("stopme")
	if j.Status != "cancelled" || j.Stats.SucceededCount != 2 || j.Stats.CancelledCount != 3 || j.EndTime == "" {
		t.Fatalf("after cancel: %v", j)
	}
	for _, id := range []string{"c02", "c03", "c04"} {
		if v := a.desiredVersion(id); v != 1 {
			t.Errorf("%s patched after cancel ($version %v)", id, v)
		}
	}
	// Cancelling a finished job changes nothing.
	decode(t, a.must(200, "POST", "/jobs/v2/after/cancel", nil).Body, &j)
	if j.Status != "completed" {
		t.Fatalf("cancel of a completed job: %v", j)
	}
	if r := a.do("POST", "/jobs/v2/nosuch/cancel", nil); r.Status != 404 || r.errorCode(t) != "JobNotFound" {
		t.Fatalf("cancel of an unknown job: %d %s", r.Status, r.Body)
	}
	// A scheduled job cancelled before its start never snapshots devices.
	a.createJob("never", twinJob("*", map[string]any{"startTime": t0.Add(time.Hour).Format(time.RFC3339)}))
	a.must(200, "POST", "/jobs/v2/never/cancel", nil)
	clk.Advance(2 * time.Hour)
	a.createJob("after2", twinJob("deviceId = 'c00'", nil))
	a.waitJob("after2", "completed", func(j jobResp) bool { return j.Status == "completed" })
	if j := a.job("never"); j.Status != "cancelled" || j.Stats.DeviceCount != 0 {
		t.Fatalf("cancelled scheduled job: %v", j)
	}
}

func TestJobOfflineDevices(t *testing.T) {
	t.Parallel()
	env := hubtest.Start(t)
	a := newAPI(t, env)
	on1, on2 := env.CreateDevice(t, "on1"), env.CreateDevice(t, "on2")
	env.CreateDevice(t, "off1")
	d1, d2 := env.Connect(t, "on1", on1.PrimaryKey), env.Connect(t, "on2", on2.PrimaryKey)
	answerMethods(t, d1, 200, func(name string, body []byte) string { return fmt.Sprintf(`{"did":%q,"got":%s}`, name, body) })
	answerMethods(t, d2, 500, func(string, []byte) string { return `{"error":"busy"}` })

	a.createJob("reboot", methodJob("deviceId IN ['on1', 'on2', 'off1']", nil))
	j := a.waitJob("reboot", "completed", terminal)
	if j.Status != "completed" || j.Stats.DeviceCount != 3 || j.Stats.SucceededCount != 1 || j.Stats.FailedCount != 2 {
		t.Fatalf("method job: %v", j)
	}
	recs := map[string]deviceJob{}
	for _, r := range a.deviceJobs("devices.jobs.jobId = 'reboot'") {
		recs[r.DeviceID] = r
	}
	if r := recs["on1"]; r.Status != "completed" || r.JobType != "scheduleDeviceMethod" || r.Outcome.DeviceMethodResponse == nil ||
		r.Outcome.DeviceMethodResponse.Status != 200 || string(r.Outcome.DeviceMethodResponse.Payload) != `{"did":"reboot","got":{"delay":1}}` || r.Error != nil {
		t.Errorf("on1: %+v", r)
	}
	if r := recs["on2"]; r.Status != "failed" || r.Outcome.DeviceMethodResponse == nil || r.Outcome.DeviceMethodResponse.Status != 500 ||
		r.Error == nil || r.Error.Code != "DeviceMethodFailed" {
		t.Errorf("on2: %+v", r)
	}
	if r := recs["off1"]; r.Status != "failed" || r.Outcome.DeviceMethodResponse != nil || r.Error == nil || r.Error.Code != "DeviceNotOnline" {
		t.Errorf("off1: %+v", r)
	}

	// A twin job reaches every device: the connected ones are told at once,
	// the offline one finds the change in its twin when it connects.
	a.createJob("config", twinJob("deviceId IN ['on1', 'off1']", nil))
	j = a.waitJob("config", "completed", terminal)
	if j.Status != "completed" || j.Stats.SucceededCount != 2 || j.Stats.FailedCount != 0 {
		t.Fatalf("twin job: %v", j)
	}
	m := d1.Await(t, "$iothub/twin/PATCH/properties/desired/#", 5*time.Second)
	if !strings.Contains(string(m.Payload()), `"fw":"2.0"`) {
		t.Fatalf("on1 desired notification %s", m.Payload())
	}
	off, err := env.Hub.Store().GetDevice(t.Context(), "off1")
	if err != nil {
		t.Fatal(err)
	}
	d3 := env.Connect(t, "off1", off.PrimaryKey)
	if err := d3.Publish("$iothub/twin/GET/?$rid=7", 0, nil); err != nil {
		t.Fatal(err)
	}
	if m := d3.Await(t, "$iothub/twin/res/#", 5*time.Second); !strings.Contains(string(m.Payload()), `"fw":"2.0"`) {
		t.Fatalf("off1 twin after reconnect: %s", m.Payload())
	}
	tw := a.must(200, "GET", "/twins/off1", nil).json(t)
	if tw["tags"].(map[string]any)["wave"] != float64(1) {
		t.Fatalf("off1 tags %v", tw["tags"])
	}
}

func TestJobRolloutRate(t *testing.T) {
	t.Parallel()
	clk := clock.NewManual(t0)
	env, _ := startClockHub(t, t.TempDir(), clk)
	a := newAPI(t, env)
	createDevices(t, env, "r", 7)

	a.createJob("paced", twinJob("*", map[string]any{"rollout": map[string]any{"type": "constant", "devicesPerMinute": 3}}))
	for done := 3; done < 7; done += 3 {
		j := a.waitJob("paced", fmt.Sprintf("%d done", done), func(j jobResp) bool { return j.Stats.SucceededCount == done })
		if j.Stats.PendingCount != 7-done || j.Status != "running" {
			t.Fatalf("after %d: %v", done, j)
		}
		clk.Advance(time.Minute)
	}
	a.waitJob("paced", "completed", func(j jobResp) bool { return j.Status == "completed" })
	perMinute := map[int]int{}
	for _, r := range a.deviceJobs("devices.jobs.jobId = 'paced'") {
		st, err := time.Parse(time.RFC3339Nano, r.StartTime)
		if err != nil {
			t.Fatalf("start time %q: %v", r.StartTime, err)
		}
		perMinute[int(st.Sub(t0)/time.Minute)]++
	}
	if perMinute[0] != 3 || perMinute[1] != 3 || perMinute[2] != 1 || len(perMinute) != 3 {
		t.Fatalf("devices started per minute: %v, want 3, 3, 1", perMinute)
	}
}

func TestJobAbortThreshold(t *testing.T) {
	t.Parallel()
	clk := clock.NewManual(t0)
	env, _ := startClockHub(t, t.TempDir(), clk)
	a := newAPI(t, env)
	createDevices(t, env, "x", 12) // none connected: every method call fails

	a.createJob("doomed", methodJob("*", map[string]any{
		"rollout": map[string]any{"type": "constant", "devicesPerMinute": 4},
		"abort":   map[string]any{"failureThresholdPercent": 50, "minDevices": 4},
	}))
	j := a.waitJob("doomed", "aborted", terminal)
	if j.Status != "failed" || !strings.HasPrefix(j.FailureReason, "aborted: 4 of 4 finished devices failed") ||
		j.Stats.DeviceCount != 12 || j.Stats.FailedCount != 12 || j.Stats.CancelledCount != 8 {
		t.Fatalf("aborted job: %v", j)
	}
	clk.Advance(5 * time.Minute)
	recs := a.deviceJobs("devices.jobs.jobId = 'doomed' AND devices.jobs.status = 'cancelled'")
	if len(recs) != 8 || recs[0].Error == nil || recs[0].Error.Code != "JobAborted" || recs[0].Attempts != 0 {
		t.Fatalf("cancelled records %d %+v", len(recs), recs)
	}
}

func TestJobRetryAndDeviceTimeout(t *testing.T) {
	t.Parallel()
	env := hubtest.Start(t)
	a := newAPI(t, env)
	flaky, mute := env.CreateDevice(t, "flaky"), env.CreateDevice(t, "mute")
	d := env.Connect(t, "flaky", flaky.PrimaryKey)
	var mu sync.Mutex
	calls := 0
	tok := d.Client.Subscribe("$iothub/methods/POST/#", 0, func(c mqtt.Client, m mqtt.Message) {
		mu.Lock()
		calls++
		status := 500
		if calls > 1 {
			status = 200
		}
		mu.Unlock()
		rid := m.Topic()[strings.Index(m.Topic(), "$rid=")+5:]
		c.Publish(fmt.Sprintf("$iothub/methods/res/%d/?$rid=%s", status, rid), 0, false, []byte(`{}`))
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	env.Connect(t, "mute", mute.PrimaryKey) // subscribed to methods, never answers

	a.createJob("retry", methodJob("deviceId IN ['flaky', 'mute']", map[string]any{
		"deviceTimeoutInSeconds": 1,
		"retry":                  map[string]any{"maxAttempts": 2, "on": []string{"failed"}},
	}))
	j := a.waitJob("retry", "finished", terminal)
	if j.Status != "completed" || j.Stats.SucceededCount != 1 || j.Stats.FailedCount != 1 {
		t.Fatalf("job %v", j)
	}
	recs := map[string]deviceJob{}
	for _, r := range a.deviceJobs("devices.jobs.jobId = 'retry'") {
		recs[r.DeviceID] = r
	}
	if r := recs["flaky"]; r.Status != "completed" || r.Attempts != 2 || r.Error != nil || r.Outcome.DeviceMethodResponse.Status != 200 {
		t.Errorf("flaky: %+v", r)
	}
	// A timeout is not retried when only "failed" is.
	if r := recs["mute"]; r.Status != "failed" || r.Attempts != 1 || r.Error == nil || r.Error.Code != "DeviceTimeout" {
		t.Errorf("mute: %+v", r)
	}
}

// TestJobRestartResumes stops the hub in the middle of a rollout and starts
// another on the same data directory. It also plays a crash: one record is
// put back to running after its patch was applied, another is set running
// before its patch. Each device's desired $version must go up exactly once.
func TestJobRestartResumes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := clock.NewManual(t0)
	env, stop := startClockHub(t, dir, clk)
	a := newAPI(t, env)
	ids := createDevices(t, env, "p", 8)

	a.createJob("resume", twinJob("*", map[string]any{"rollout": map[string]any{"type": "constant", "devicesPerMinute": 3}}))
	a.waitJob("resume", "3 done", func(j jobResp) bool { return j.Stats.SucceededCount == 3 })
	stop()

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "hub.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE jobs_devices SET status = 'running' WHERE job_id = 'resume' AND device_id = 'p02'`,               // applied, not recorded
		`UPDATE jobs_devices SET status = 'running', attempts = 1 WHERE job_id = 'resume' AND device_id = 'p03'`, // begun, not applied
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	env2, _ := startClockHub(t, dir, clk)
	a2 := newAPI(t, env2)
	// The new hub opens a fresh rollout window: p02 and p03 (settled first),
	// then p04, so 5 are done; the other 3 a minute later.
	j := a2.waitJob("resume", "5 done", func(j jobResp) bool { return j.Stats.SucceededCount == 5 })
	if j.Stats.PendingCount != 3 || j.Stats.RunningCount != 0 {
		t.Fatalf("after restart, first window: %v", j)
	}
	clk.Advance(time.Minute)
	j = a2.waitJob("resume", "completed", terminal)
	if j.Status != "completed" || j.Stats.SucceededCount != 8 {
		t.Fatalf("after restart: %v", j)
	}
	for _, id := range ids {
		if v := a2.desiredVersion(id); v != 2 {
			t.Errorf("%s: desired $version %v, want 2 (applied exactly once)", id, v)
		}
	}
	for _, r := range a2.deviceJobs("devices.jobs.jobId = 'resume'") {
		if r.Attempts != 1 {
			t.Errorf("%s: %d attempts, want 1", r.DeviceID, r.Attempts)
		}
	}
}

func TestDeviceJobsQuery(t *testing.T) {
	t.Parallel()
	env := hubtest.Start(t)
	a := newAPI(t, env)
	createDevices(t, env, "q", 3)
	a.createJob("tw", twinJob("deviceId != 'q02'", nil))
	a.createJob("me", methodJob("*", nil))
	a.waitJob("tw", "completed", terminal)
	a.waitJob("me", "completed", terminal)

	cases := []struct {
		where string
		want  []string // jobId/deviceId
	}{
		{"", []string{"me/q00", "me/q01", "me/q02", "tw/q00", "tw/q01"}},
		{"devices.jobs.deviceId = 'q01'", []string{"me/q01", "tw/q01"}},
		{"devices.jobs.jobId = 'tw' AND devices.jobs.status = 'completed'", []string{"tw/q00", "tw/q01"}},
		{"devices.jobs.jobType = 'scheduleDeviceMethod' AND devices.jobs.status = 'failed'", []string{"me/q00", "me/q01", "me/q02"}},
		{"deviceId IN ['q00', 'q02'] AND jobId = 'me'", []string{"me/q00", "me/q02"}},
		{"devices.jobs.createdTimeUtc > '2016-09-01' AND devices.jobs.jobId = 'tw'", []string{"tw/q00", "tw/q01"}},
		{"devices.jobs.error.code = 'DeviceNotOnline' AND deviceId = 'q00'", []string{"me/q00"}},
		{"devices.jobs.status = 'pending'", nil},
	}
	for _, tc := range cases {
		t.Run(tc.where, func(t *testing.T) {
			a := newAPI(t, env)
			var got []string
			for _, r := range a.deviceJobs(tc.where) {
				got = append(got, r.JobID+"/"+r.DeviceID)
				if r.Created == "" || r.LastUpdated == "" || r.JobType == "" {
					t.Errorf("record lacks fields: %+v", r)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Shape: exactly Azure's keys plus error and attempts.
	r := a.must(200, "POST", "/devices/query", map[string]string{"query": "SELECT TOP 1 * FROM devices.jobs"})
	var items []map[string]any
	decode(t, r.Body, &items)
	if len(items) != 1 {
		t.Fatalf("TOP 1: %s", r.Body)
	}
	var keys []string
	for k := range items[0] {
		keys = append(keys, k)
	}
	if len(keys) != 11 {
		t.Errorf("record keys %v", keys)
	}
	for _, bad := range []string{
		"SELECT deviceId FROM devices.jobs",
		"SELECT * FROM devices.jobs WHERE tags.site = 'a'",
		"SELECT * FROM devices.jobs WHERE devices.jobs.nope = 1",
	} {
		if r := a.do("POST", "/devices/query", map[string]string{"query": bad}); r.Status != 400 {
			t.Errorf("%s: %d %s", bad, r.Status, r.Body)
		}
	}
}

func TestJobList(t *testing.T) {
	t.Parallel()
	clk := clock.NewManual(t0)
	env, _ := startClockHub(t, t.TempDir(), clk)
	a := newAPI(t, env)
	createDevices(t, env, "l", 1)
	later := map[string]any{"startTime": t0.Add(time.Hour).Format(time.RFC3339)}
	for i := range 5 {
		a.createJob(fmt.Sprintf("tw%d", i), twinJob("*", later))
	}
	a.createJob("me0", methodJob("*", later))

	var ids []string
	cont := ""
	for {
		hdr := []string{"x-ms-max-item-count", "2"}
		if cont != "" {
			hdr = append(hdr, "x-ms-continuation", cont)
		}
		r := a.must(200, "GET", "/jobs/v2/query?jobType=scheduleUpdateTwin&jobStatus=scheduled", nil, hdr...)
		if r.Header.Get("x-ms-item-type") != "jobResponse" {
			t.Fatalf("item type %q", r.Header.Get("x-ms-item-type"))
		}
		var page []jobResp
		decode(t, r.Body, &page)
		for _, j := range page {
			ids = append(ids, j.JobID)
		}
		if cont = r.Header.Get("x-ms-continuation"); cont == "" {
			break
		}
	}
	if strings.Join(ids, ",") != "tw0,tw1,tw2,tw3,tw4" {
		t.Fatalf("listed %v", ids)
	}
	var all []jobResp
	decode(t, a.must(200, "GET", "/jobs/v2/query", nil).Body, &all)
	if len(all) != 6 {
		t.Fatalf("unfiltered list: %d jobs", len(all))
	}
	for _, q := range []string{"jobType=nope", "jobStatus=finished"} {
		if r := a.do("GET", "/jobs/v2/query?"+q, nil); r.Status != 400 {
			t.Errorf("%s: %d", q, r.Status)
		}
	}
}

func TestJobBadBodies(t *testing.T) {
	t.Parallel()
	env := hubtest.Start(t)
	a := newAPI(t, env)
	twin := `"updateTwin":{"properties":{"desired":{"a":1}}}`
	method := `"cloudToDeviceMethod":{"methodName":"m"}`
	cases := []struct {
		name, path, body string
		status           int
		want             string // in the error message
	}{
		{"empty", "j", ``, 400, "empty"},
		{"not JSON", "j", `{"type":`, 400, "not valid JSON"},
		{"array", "j", `[]`, 400, "not valid JSON"},
		{"no type", "j", `{"queryCondition":"*",` + twin + `}`, 400, "type: is required"},
		{"unknown type", "j", `{"type":"export","queryCondition":"*"}`, 400, `type: "export" is not supported`},
		{"type not string", "j", `{"type":7}`, 400, "type: want string"},
		{"no condition", "j", `{"type":"scheduleUpdateTwin",` + twin + `}`, 400, "queryCondition: is required"},
		{"bad condition", "j", `{"type":"scheduleUpdateTwin","queryCondition":"deviceId = = 1",` + twin + `}`, 400, "queryCondition:"},
		{"condition on unknown field", "j", `{"type":"scheduleUpdateTwin","queryCondition":"nope = 1",` + twin + `}`, 400, "queryCondition:"},
		{"no updateTwin", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*"}`, 400, "updateTwin: is required"},
		{"empty updateTwin", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{}}`, 400, "updateTwin: needs tags"},
		{"reported", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"properties":{"reported":{"a":1}}}}`, 400, "updateTwin.properties.reported"},
		{"desired not object", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"properties":{"desired":3}}}`, 400, "updateTwin.properties.desired"},
		{"tags not object", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"tags":"x"}}`, 400, "updateTwin.tags"},
		{"bad key", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"tags":{"a.b":1}}}`, 400, "updateTwin.tags"},
		{"etag", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"AAAA","tags":{"a":1}}}`, 400, "updateTwin.etag"},
		{"method in twin job", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*",` + twin + `,` + method + `}`, 400, "cloudToDeviceMethod: not allowed"},
		{"no method", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*"}`, 400, "cloudToDeviceMethod: is required"},
		{"bad method name", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"a/b"}}`, 400, "cloudToDeviceMethod.methodName"},
		{"response timeout", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"m","responseTimeoutInSeconds":0}}`, 400, "cloudToDeviceMethod.responseTimeoutInSeconds"},
		{"connect timeout type", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"m","connectTimeoutInSeconds":"5"}}`, 400, "cloudToDeviceMethod.connectTimeoutInSeconds"},
		{"start time", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"startTime":"tomorrow"}`, 400, "startTime"},
		{"max execution zero", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"maxExecutionTimeInSeconds":0}`, 400, "maxExecutionTimeInSeconds"},
		{"max execution string", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"maxExecutionTimeInSeconds":"1h"}`, 400, "maxExecutionTimeInSeconds: want int64"},
		{"device timeout", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"deviceTimeoutInSeconds":-1}`, 400, "deviceTimeoutInSeconds"},
		{"rollout type", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"rollout":{"type":"fast"}}`, 400, "rollout.type"},
		{"rollout rate", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"rollout":{"type":"constant"}}`, 400, "rollout.devicesPerMinute"},
		{"rollout factor", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"rollout":{"type":"exponential","baseRatePerMinute":1,"incrementFactor":1}}`, 400, "rollout.incrementFactor"},
		{"rollout criteria", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"rollout":{"type":"exponential","baseRatePerMinute":1,"incrementFactor":2}}`, 400, "rollout.rateIncreaseCriteria.numberOfSucceeded"},
		{"abort threshold", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"abort":{"failureThresholdPercent":150}}`, 400, "abort.failureThresholdPercent"},
		{"abort min", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"abort":{"failureThresholdPercent":10,"minDevices":-1}}`, 400, "abort.minDevices"},
		{"retry attempts", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"retry":{"maxAttempts":0,"on":["failed"]}}`, 400, "retry.maxAttempts"},
		{"retry on", "j", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"retry":{"maxAttempts":2,"on":["sometimes"]}}`, 400, "retry.on[0]"},
		{"jobId mismatch", "j", `{"jobId":"other","type":"scheduleDeviceMethod","queryCondition":"*",` + method + `}`, 400, "jobId"},
		{"bad job id", "a%20b", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `}`, 400, "jobId"},
		{"reserved job id", "query", `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `}`, 400, "reserved"},
		{"deep nesting", "j", `{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"tags":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}}`, 400, "updateTwin"},
		{"too large", "j", `{"type":"scheduleDeviceMethod","queryCondition":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "exceeds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t, env)
			r := a.do("PUT", "/jobs/v2/"+tc.path, tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if msg, _ := r.json(t)["Message"].(string); !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q does not mention %q", msg, tc.want)
			}
		})
	}
	if r := a.do("GET", "/jobs/v2/j", nil); r.Status != 404 || r.errorCode(t) != "JobNotFound" {
		t.Fatalf("no job may have been created: %d %s", r.Status, r.Body)
	}
	// Duplicate ids are refused; the right is ServiceConnect.
	body := `{"type":"scheduleDeviceMethod","queryCondition":"*",` + method + `,"startTime":"2999-01-01T00:00:00Z"}`
	a.must(200, "PUT", "/jobs/v2/dup", body)
	if r := a.do("PUT", "/jobs/v2/dup", body); r.Status != 409 || r.errorCode(t) != "JobAlreadyExists" {
		t.Fatalf("duplicate: %d %s", r.Status, r.Body)
	}
	if r := a.as("registryReadWrite").do("PUT", "/jobs/v2/other", body); r.Status != 403 {
		t.Fatalf("registryReadWrite created a job: %d %s", r.Status, r.Body)
	}
}
