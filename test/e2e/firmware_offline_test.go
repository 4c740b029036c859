package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/test/harness"
)

// localJob is a job as the gateway's local API lists it.
type localJob struct {
	ID, Kind, State, Reason string
}

// localJob fetches one job from the gateway's local API.
func (r *fwRig) localJob(t *testing.T, id string) localJob {
	t.Helper()
	resp, err := http.Get("http://" + r.api + "/v1/jobs/" + id)
	if err != nil {
		return localJob{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var j localJob
	_ = json.Unmarshal(b, &j)
	return j
}

// TestFirmwareHubDownDuringDownload: a technician asks the gateway for an
// update through its local API while the hub is down. The download cannot
// start; the job waits visibly (retry, reported.firmware downloading) and
// nothing reaches the device; when the hub is back the next attempt
// downloads, flashes and the hub learns the device is current.
func TestFirmwareHubDownDuringDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	r := newFwRig(t, 1)
	im := r.publish("2.0.0", "MCU-1", r.trustedKey, 16<<10, false)
	started := r.simCount(`smpsim upload started`)

	hubData, mqttAddr, httpsAddr := r.hub.DataDir, r.hub.MQTTAddr, r.hub.HTTPSAddr
	r.hub.Stop()

	st, body := r.invokeLocal("mcu-1", "firmwareUpdate", string(methodPayload(t, im, nil)))
	if st != 202 {
		t.Fatalf("firmwareUpdate through the local API: %d %s", st, body)
	}
	var acc struct {
		Payload struct {
			JobID string `json:"jobId"`
		} `json:"payload"`
		JobID string `json:"jobId"`
	}
	_ = json.Unmarshal([]byte(body), &acc)
	jobID := acc.Payload.JobID
	if jobID == "" {
		jobID = acc.JobID
	}
	if jobID == "" {
		t.Fatalf("no job id in %s", body)
	}
	r.eventually(t, 60*time.Second, "the job waits to retry the download", func() (bool, string) {
		j := r.localJob(t, jobID)
		return j.State == "waiting" && strings.Contains(j.Reason, "image transfer failed"), fmt.Sprintf("%+v", j)
	})
	if n := r.simCount(`smpsim upload started`); n != started {
		t.Fatalf("an upload started without an image")
	}

	r.hub = harness.StartHubOn(t, hubData, mqttAddr, httpsAddr)
	r.svc = r.hub.Service(t)
	r.watch(t, "mcu-1", 120*time.Second, func(fw map[string]any) bool { return fw["status"] == "current" && fw["currentVersion"] == "2.0.0" })
	if j := r.localJob(t, jobID); j.State != "succeeded" {
		t.Errorf("job %+v, want succeeded", j)
	}
}
