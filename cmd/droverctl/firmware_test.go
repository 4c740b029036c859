package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/hubtest"
	"github.com/drover-iot/drover/localhub/store"
)

// lineSignal is a writer that closes first when its first line arrives.
type lineSignal struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan struct{}
	once  sync.Once
}

func (l *lineSignal) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	if bytes.Contains(l.buf.Bytes(), []byte("\n")) {
		l.once.Do(func() { close(l.first) })
	}
	return n, err
}

func (l *lineSignal) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestFirmwareCommands(t *testing.T) {
	c := newCtl(t)
	ctx := context.Background()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "fw.key")

	var key struct{ KeyFile, KeyID, PublicKey string }
	c.okJSON(&key, "firmware", "keygen", keyFile)
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v (want mode 0600)", st, err)
	}
	trusted, err := firmware.NewKeySet(key.PublicKey)
	if err != nil || key.KeyID == "" {
		t.Fatalf("keygen printed %+v: %v", key, err)
	}
	c.fails("exists (use --force", "firmware", "keygen", keyFile)

	img := make([]byte, 64<<10)
	rand.Read(img)
	imgFile := filepath.Join(dir, "mcu-2.1.0.bin")
	os.WriteFile(imgFile, img, 0o644)

	var im serviceclient.Image
	c.okJSON(&im, "firmware", "upload", imgFile, "--version", "2.1.0", "--manufacturer", "Acme Labs", "--model", "mcu-7", "--model", "mcu-8", "--key", keyFile)
	if im.ID != "Acme-Labs/mcu-7/2.1.0" || im.File.Size != int64(len(img)) || im.File.Name != "mcu-2.1.0.bin" || len(im.Compatibility) != 2 || im.KeyID != key.KeyID {
		t.Fatalf("uploaded %+v", im)
	}
	c.fails("ImageAlreadyExists", "firmware", "upload", imgFile, "--version", "2.1.0", "--manufacturer", "Acme Labs", "--model", "mcu-7", "--key", keyFile)
	os.WriteFile(filepath.Join(dir, "bad.key"), []byte("not a key"), 0o600)
	c.fails("bad ed25519 key", "firmware", "upload", imgFile, "--version", "2.1.1", "--manufacturer", "A", "--model", "m", "--key", filepath.Join(dir, "bad.key"))
	c.fails("updateId.version", "firmware", "upload", imgFile, "--version", "2.1 beta", "--manufacturer", "A", "--model", "m", "--key", keyFile)
	c.fails(`required flag(s) "key"`, "firmware", "upload", imgFile, "--version", "2.1.1", "--manufacturer", "A", "--model", "m")

	out := c.ok("firmware", "list")
	for _, want := range []string{"Acme-Labs/mcu-7/2.1.0", "Acme Labs mcu-7, Acme Labs mcu-8", im.File.SHA256[:12], key.KeyID} {
		if !strings.Contains(out, want) {
			t.Errorf("firmware list lacks %q:\n%s", want, out)
		}
	}
	if out := c.ok("firmware", "list", "--model", "pump"); strings.Contains(out, "mcu-7") {
		t.Errorf("list --model pump shows mcu images:\n%s", out)
	}
	out = c.ok("firmware", "show", "2.1.0")
	for _, want := range []string{"Acme-Labs/mcu-7/2.1.0", im.File.SHA256, "/firmware/content/"} {
		if !strings.Contains(out, want) {
			t.Errorf("firmware show lacks %q:\n%s", want, out)
		}
	}
	s, err := firmware.Parse([]byte(c.ok("firmware", "show", "Acme-Labs/mcu-7/2.1.0", "--manifest")))
	if err != nil {
		t.Fatal(err)
	}
	if err := trusted.Verify(s); err != nil {
		t.Errorf("uploaded manifest does not verify with the keygen public key: %v", err)
	}
	c.fails("no image of version 9.9", "firmware", "show", "9.9")

	// A fleet: three mcu-7 at plant1, one at plant2, a pump at plant1.
	st2 := c.env.Hub.Store()
	devs := map[string]*hubtest.Device{}
	for _, d := range []struct{ id, site, model string }{
		{"mcu-1", "plant1", "mcu-7"}, {"mcu-2", "plant1", "mcu-7"}, {"mcu-3", "plant1", "mcu-7"},
		{"mcu-4", "plant2", "mcu-7"}, {"pump-1", "plant1", "pump"},
	} {
		dev, err := st2.CreateDevice(ctx, store.Device{ID: d.id})
		if err != nil {
			t.Fatal(err)
		}
		devs[d.id] = c.env.Connect(t, d.id, dev.PrimaryKey)
		if _, err := st2.PatchTwin(ctx, d.id, map[string]any{"site": d.site}, nil, "*"); err != nil {
			t.Fatal(err)
		}
		if _, err := st2.PatchReported(ctx, d.id, map[string]any{"device": map[string]any{"manufacturer": "Acme Labs", "model": d.model}}); err != nil {
			t.Fatal(err)
		}
	}
	c.fails("no image of version 2.1.0 for model pump", "firmware", "deploy", "--version", "2.1.0", "--model", "pump", "--query", "*")
	c.fails("--abort-threshold", "firmware", "deploy", "--version", "2.1.0", "--model", "mcu-7", "--query", "*", "--abort-threshold", "200%")

	var job serviceclient.Job
	c.okJSON(&job, "firmware", "deploy", "--version", "2.1.0", "--model", "mcu-7", "--query", "tags.site = 'plant1'",
		"--job-id", "fw-mcu", "--rate", "100/min", "--abort-threshold", "60%", "--abort-min", "2")
	if job.QueryCondition != "(tags.site = 'plant1') AND properties.reported.device.model = 'mcu-7'" || job.AwaitReported == nil ||
		job.Abort == nil || job.Rollout == nil || job.MaxExecutionTimeInSeconds != 86400 {
		t.Fatalf("deploy job %+v", job)
	}
	// The targeted devices are told (desired notification), and each stays
	// running in the job until it reports the outcome.
	for _, id := range []string{"mcu-1", "mcu-2", "mcu-3"} {
		devs[id].Await(t, "$iothub/twin/PATCH/properties/desired/#", 10*time.Second)
	}
	c.okJSON(&job, "job", "show", "fw-mcu")
	if job.DeviceJobStatistics.RunningCount != 3 || job.Done() {
		t.Fatalf("deployment before any report: %+v", job.DeviceJobStatistics)
	}
	for id, want := range map[string]bool{"mcu-1": true, "mcu-3": true, "mcu-4": false, "pump-1": false} {
		tw, err := st2.GetTwin(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		fw, ok := tw.Desired.Props["firmware"].(map[string]any)
		if ok != want {
			t.Errorf("%s desired.firmware present = %v, want %v", id, ok, want)
			continue
		}
		if !ok {
			continue
		}
		if fw["version"] != "2.1.0" || fw["sha256"] != im.File.SHA256 || fw["url"] != im.URL {
			t.Errorf("%s desired.firmware = %v", id, fw)
		}
		raw, _ := json.Marshal(fw)
		target, err := firmware.ParseDesired(raw)
		if err != nil {
			t.Fatalf("%s: desired.firmware does not parse as a gateway reads it: %v", id, err)
		}
		if target.Deployment != "fw-mcu" {
			t.Errorf("%s: deployment %q", id, target.Deployment)
		}
		if err := trusted.Verify(target.Manifest); err != nil {
			t.Errorf("%s: the manifest in desired.firmware does not verify after the twin round trip: %v", id, err)
		}
	}

	// Gateways report: one current, one applying, one failed; mcu-4 is not targeted.
	report := func(id string, fw map[string]any) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"firmware": fw})
		d := devs[id]
		if err := d.Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", 0, b); err != nil {
			t.Fatal(err)
		}
		if m := d.Await(t, "$iothub/twin/res/#", 10*time.Second); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/204/") {
			t.Fatalf("reported patch of %s: %s %s", id, m.Topic(), m.Payload())
		}
	}
	report("mcu-1", map[string]any{"status": "current", "currentVersion": "2.1.0", "result": "success", "deployment": "fw-mcu"})
	report("mcu-2", map[string]any{"status": "applying", "pendingVersion": "2.1.0", "currentVersion": "2.0.0", "progress": 40, "deployment": "fw-mcu"})
	report("mcu-3", map[string]any{"status": "failed", "pendingVersion": "2.1.0", "currentVersion": "2.0.0", "result": "digestMismatch", "reason": "bad bytes", "deployment": "fw-mcu"})
	report("mcu-4", map[string]any{"status": "current", "currentVersion": "2.0.0"})
	golden(t, "firmware_status", []byte(c.ok("firmware", "status", "--version", "2.1.0")))
	var fs fleetStatus
	c.okJSON(&fs, "firmware", "status", "--version", "2.1.0", "--model", "mcu-7")
	if fs.Total != 3 || fs.Counts["current"] != 1 || fs.Counts["applying"] != 1 || fs.Counts["failed: digestMismatch"] != 1 {
		t.Errorf("status JSON %+v", fs)
	}

	// --watch follows until mcu-2 ends.
	w := &lineSignal{first: make(chan struct{})}
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append(c.globals(), "firmware", "status", "--version", "2.1.0", "--watch", "--interval", "10ms"), w, &errb, func(string) string { return "" })
	}()
	<-w.first
	report("mcu-2", map[string]any{"status": "current", "currentVersion": "2.1.0", "pendingVersion": nil, "progress": 100})
	if code := <-done; code != 0 {
		t.Fatalf("status --watch: exit %d: %s", code, errb.String())
	}
	if out := w.String(); !strings.Contains(out, "firmware 2.1.0: 1/3 current, 1 failed, 1 in progress\n") || !strings.Contains(out, "2/3 current, 1 failed, 0 in progress") {
		t.Errorf("status --watch output:\n%s", out)
	}
	// The deployment ends with the devices' outcomes: 1 of 3 failed stays under the 60% abort threshold.
	c.okJSON(&job, "job", "show", "fw-mcu", "--watch", "--interval", "10ms")
	if s := job.DeviceJobStatistics; job.Status != serviceclient.JobCompleted || s.SucceededCount != 2 || s.FailedCount != 1 {
		t.Errorf("deployment after the reports: %+v", job)
	}

	c.ok("firmware", "delete", "2.1.0")
	if out := c.ok("firmware", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("list after delete: %s", out)
	}
	c.fails("ImageNotFound", "firmware", "delete", "Acme-Labs/mcu-7/2.1.0")
}

func TestFirmwareStatusFold(t *testing.T) {
	rows := []json.RawMessage{
		json.RawMessage(`{"n":2}`),                                                                // never reported
		json.RawMessage(`{"status":"current","current":"1.0","n":4}`),                             // still on the old version
		json.RawMessage(`{"status":"downloading","pending":"2.0","current":"1.0","n":3}`),         // working on it
		json.RawMessage(`{"status":"failed","pending":"1.5","current":"1.0","result":"x","n":1}`), // an earlier attempt
		json.RawMessage(`{"status":"failed","pending":"2.0","current":"1.0","result":"bootFailed","n":1}`),
		json.RawMessage(`{"status":"failed","pending":"2.0","n":1}`),
		json.RawMessage(`{"status":7,"pending":"2.0","n":1}`),
		json.RawMessage(`{"status":"current","current":"2.0","n":5}`),
	}
	s, err := foldStatus("2.0", rows)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"pending": 8, "downloading": 3, "failed: bootFailed": 1, "failed": 1, "current": 5}
	if len(s.Counts) != len(want) || s.Total != 18 {
		t.Errorf("counts %v total %d, want %v total 18", s.Counts, s.Total, want)
	}
	for k, n := range want {
		if s.Counts[k] != n {
			t.Errorf("%s: %d, want %d", k, s.Counts[k], n)
		}
	}
	if got := sortedStatuses(s.Counts); strings.Join(got, ",") != "pending,downloading,current,failed,failed: bootFailed" {
		t.Errorf("order %v", got)
	}
	if got := deployCondition(" * ", "it's"); got != `properties.reported.device.model = 'it\'s'` {
		t.Errorf("deployCondition = %s", got)
	}
}

// TestFirmwareDeployAborts: a rollout whose updates fail stops at the abort
// threshold. Stand-in gateways answer every desired.firmware with a failed
// report (as a gateway will for a bad image); the deployment ends failed,
// the devices still awaited are cancelled, and devices it never reached keep
// their twin untouched.
func TestFirmwareDeployAborts(t *testing.T) {
	c := newCtl(t)
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "fw.key")
	c.ok("firmware", "keygen", keyFile)
	img := make([]byte, 4096)
	rand.Read(img)
	os.WriteFile(filepath.Join(dir, "bad.bin"), img, 0o644)
	c.ok("firmware", "upload", filepath.Join(dir, "bad.bin"), "--version", "3.0.0", "--manufacturer", "Acme", "--model", "mcu-7", "--key", keyFile)

	const n = 40 // more than the 32 devices a job has in flight
	st := c.env.Hub.Store()
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range n {
		id := fmt.Sprintf("mcu-%02d", i)
		dev, err := st.CreateDevice(ctx, store.Device{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.PatchReported(ctx, id, map[string]any{"device": map[string]any{"manufacturer": "Acme", "model": "mcu-7"}}); err != nil {
			t.Fatal(err)
		}
		d := c.env.Connect(t, id, dev.PrimaryKey)
		wg.Add(1)
		go func() { // stand-in gateway for this device: every update fails its digest check
			defer wg.Done()
			select {
			case m := <-d.Messages("$iothub/twin/PATCH/properties/desired/#"):
				var p struct {
					Firmware firmware.Desired `json:"firmware"`
				}
				if json.Unmarshal(m.Payload(), &p) != nil {
					return
				}
				b, _ := json.Marshal(map[string]any{"firmware": firmware.Reported{
					Status: firmware.StatusFailed, PendingVersion: &p.Firmware.Version, Deployment: &p.Firmware.Deployment,
					Result: ptr(firmware.ResultDigestMismatch), Reason: ptr("image digest does not match the manifest"),
				}})
				_ = d.Publish("$iothub/twin/PATCH/properties/reported/?$rid=fw", 0, b)
			case <-ctx.Done():
			}
		}()
	}
	_, errs := c.fails("aborted", "firmware", "deploy", "--version", "3.0.0", "--model", "mcu-7", "--query", "*", "--job-id", "fw-bad",
		"--abort-threshold", "20%", "--abort-min", "5", "--wait", "--interval", "10ms")
	if !strings.Contains(errs, "at or above the abort threshold of 20%") {
		t.Errorf("deploy error: %s", errs)
	}
	// The job is failed at once; the devices it was awaiting are settled
	// (cancelled) right after.
	var job serviceclient.Job
	for {
		c.okJSON(&job, "job", "show", "fw-bad")
		if job.DeviceJobStatistics.RunningCount == 0 {
			break
		}
	}
	s := job.DeviceJobStatistics
	if job.Status != serviceclient.JobFailed || s.FailedCount-s.CancelledCount < 5 || s.CancelledCount < n-36 || s.RunningCount+s.PendingCount != 0 {
		t.Errorf("aborted deployment: %+v", job)
	}
	untouched := 0
	for i := range n {
		tw, err := st.GetTwin(ctx, fmt.Sprintf("mcu-%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := tw.Desired.Props["firmware"]; !ok {
			untouched++
		}
	}
	if untouched < n-36 {
		t.Errorf("%d devices kept their twin untouched, want at least %d (never started)", untouched, n-36)
	}
	var fs fleetStatus
	c.okJSON(&fs, "firmware", "status", "--version", "3.0.0")
	if fs.Counts["failed: digestMismatch"] < 5 || fs.Total != n-untouched {
		t.Errorf("fleet status %+v (untouched %d)", fs, untouched)
	}
}

func ptr[T any](v T) *T { return &v }

func TestFirmwareGoldenOutput(t *testing.T) {
	im := serviceclient.Image{
		ID: "acme/mcu-7/2.1.0", UpdateID: firmware.UpdateID{Provider: "acme", Name: "mcu-7", Version: "2.1.0"},
		Compatibility: []firmware.Compatibility{{Manufacturer: "Acme", Model: "mcu-7"}, {Manufacturer: "Acme", Model: "mcu-8"}},
		File:          firmware.File{Name: "mcu-2.1.0.bin", Size: 262144, SHA256: "6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d"},
		CreatedAt:     "2026-12-06T01:02:03Z", KeyID: "fe812c12f3ab4ce6", UploadedTime: "2026-12-06T01:05:00.0000000Z",
		URL: "/firmware/content/6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d",
	}
	for _, tc := range []struct {
		name   string
		render func(w io.Writer) error
	}{
		{"firmware_show", func(w io.Writer) error { return renderImage(w, &im) }},
		{"firmware_list", func(w io.Writer) error {
			return renderImageList(w, []serviceclient.Image{im, {ID: "x/y/1", UpdateID: firmware.UpdateID{Version: "1"}}})
		}},
		{"firmware_list_empty", func(w io.Writer) error { return renderImageList(w, nil) }},
		{"firmware_status_empty", func(w io.Writer) error { return renderFleet(w, fleetStatus{Version: "9.9", Counts: map[string]int{}}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.render(&buf); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, buf.Bytes())
		})
	}
}

// TestDeploying: --watch goes on while a deployment of the version has not
// ended (a --rate rollout reaches the fleet in waves), and only then.
func TestDeploying(t *testing.T) {
	twin := func(status, desired string) serviceclient.Job {
		return serviceclient.Job{Status: status, UpdateTwin: &serviceclient.JobTwinPatch{
			Properties: &serviceclient.JobTwinPatchDesired{Desired: json.RawMessage(desired)}}}
	}
	for _, c := range []struct {
		name string
		jobs []serviceclient.Job
		want bool
	}{
		{"running deployment of V", []serviceclient.Job{twin("running", `{"firmware":{"version":"2.1.0"}}`)}, true},
		{"queued deployment of V", []serviceclient.Job{twin("queued", `{"firmware":{"version":"2.1.0"}}`)}, true},
		{"ended deployment of V", []serviceclient.Job{twin("completed", `{"firmware":{"version":"2.1.0"}}`)}, false},
		{"deployment of another version", []serviceclient.Job{twin("running", `{"firmware":{"version":"2.0.0"}}`)}, false},
		{"config job", []serviceclient.Job{twin("running", `{"config":{"interval":5}}`)}, false},
		{"garbage desired", []serviceclient.Job{twin("running", `[1,2`)}, false},
		{"method job", []serviceclient.Job{{Status: "running"}}, false},
		{"none", nil, false},
	} {
		if got := deploying(c.jobs, "2.1.0"); got != c.want {
			t.Errorf("%s: deploying = %v, want %v", c.name, got, c.want)
		}
	}
}
