package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/plugins"
)

// TestFlashError: what a failed flash becomes, from the plugin's code and
// the last phase it reported — a deferral, a retry that resumes, or a
// final failure with the result the device reports.
func TestFlashError(t *testing.T) {
	for _, c := range []struct {
		name      string
		err       error
		phase     string
		wantIs    error
		result    firmware.Result
		retryable bool
	}{
		{"in-use rule holds", plugins.Errorf(plugins.CodeInUse, "running == true"), "", jobs.ErrInUse, "", false},
		{"port gone", plugins.Errorf(plugins.CodeUnavailable, "open /dev/ttyUSB0: no such file"), plugins.PhaseUploading, jobs.ErrOffline, "", false},
		{"silent mid-upload resumes", plugins.Errorf(plugins.CodeTimeout, "no answer"), plugins.PhaseUploading, nil, firmware.ResultTransferError, true},
		{"silent after the reset", plugins.Errorf(plugins.CodeTimeout, "did not answer within 2m of its reset"), plugins.PhaseRebooting, nil, firmware.ResultBootFailed, false},
		{"rolled back", plugins.Errorf(plugins.CodeDeviceError, "rolled-back: device mcu-1 runs 1.0.0 again"), plugins.PhaseRolledBack, nil, firmware.ResultRolledBack, false},
		{"rolled back, event lost", plugins.Errorf(plugins.CodeDeviceError, "rolled-back: device mcu-1 runs 1.0.0 again"), plugins.PhaseConfirming, nil, firmware.ResultRolledBack, false},
		{"device refuses the image", plugins.Errorf(plugins.CodeDeviceError, "image upload rc 3"), plugins.PhaseUploading, nil, firmware.ResultDeviceRejected, false},
		{"not an image for this plugin", plugins.Errorf(plugins.CodeInvalid, "not an MCUboot image"), "", nil, firmware.ResultDeviceRejected, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err, retry := flashError(fmt.Errorf("flash mcu-1: %w", c.err), c.phase)
			if retry != c.retryable {
				t.Errorf("retryable %v, want %v", retry, c.retryable)
			}
			if c.wantIs != nil && !errors.Is(err, c.wantIs) {
				t.Errorf("%v is not %v", err, c.wantIs)
			}
			if c.result != "" && resultOf(err) != c.result {
				t.Errorf("result %s, want %s", resultOf(err), c.result)
			}
			if !errors.Is(err, c.err) {
				t.Errorf("%v lost the plugin's error", err)
			}
		})
	}
}

// TestResultOfLibraryErrors: the library's errors keep their codes through
// the gateway's wrapping.
func TestResultOfLibraryErrors(t *testing.T) {
	for err, want := range map[error]firmware.Result{
		fmt.Errorf("check: %w", firmware.ErrUntrustedKey):    firmware.ResultUntrustedKey,
		fmt.Errorf("fetch: %w", firmware.ErrDigestMismatch):  firmware.ResultDigestMismatch,
		fmt.Errorf("fetch: %w", firmware.ErrCacheFull):       firmware.ResultOutOfStorage,
		fwFailure{firmware.ResultCancelled, errors.New("x")}: firmware.ResultCancelled,
	} {
		if got := resultOf(err); got != want {
			t.Errorf("resultOf(%v) = %s, want %s", err, got, want)
		}
	}
}

// TestReachable: the reporter accepts statuses further along the machine
// (a plugin that skips phases) and flags moves backwards.
func TestReachable(t *testing.T) {
	for _, c := range []struct {
		from, to firmware.Status
		want     bool
	}{
		{firmware.StatusIdle, firmware.StatusDownloading, true},
		{firmware.StatusVerifying, firmware.StatusCurrent, true}, // image already running: only confirmed
		{firmware.StatusApplying, firmware.StatusConfirming, true},
		{firmware.StatusConfirming, firmware.StatusApplying, false},
		{firmware.StatusCurrent, firmware.StatusDownloaded, true}, // a new update
		{firmware.StatusApplying, firmware.StatusFailed, true},
	} {
		if got := reachable(c.from, c.to); got != c.want {
			t.Errorf("reachable(%s, %s) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

// TestJobShare: the job's progress never goes backwards along the statuses.
func TestJobShare(t *testing.T) {
	last := -1
	for _, st := range []firmware.Status{firmware.StatusIdle, firmware.StatusDownloading, firmware.StatusDownloaded, firmware.StatusVerifying,
		firmware.StatusApplying, firmware.StatusRebooting, firmware.StatusConfirming, firmware.StatusCurrent} {
		for _, p := range []int{0, 50, 100} {
			got := jobShare(st, p)
			if got < last || got > 100 {
				t.Fatalf("jobShare(%s, %d) = %d after %d", st, p, got, last)
			}
			last = got
		}
	}
}

// firmwareStack is a stack whose gateway trusts a fresh key and holds
// image in its firmware cache (no hub: the job finds the image cached).
func firmwareStack(t *testing.T, initial map[string]any, image []byte) (*stack, ed25519.PrivateKey) {
	t.Helper()
	s := newStack(t, t.TempDir(), stackOptions{initial: initial})
	if err := s.d.openFirmware(s.d.cfg); err != nil {
		t.Fatal(err)
	}
	priv, err := firmware.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := priv.Public().(ed25519.PublicKey)
	if s.d.fw.keys, err = firmware.NewKeySet(firmware.EncodePublicKey(pub)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(image)
	p := filepath.Join(s.d.cfg.Gateway.DataDir, "firmware", "images", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(p, image, 0o600); err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// updatePayload is a firmwareUpdate payload for image signed by priv for
// the Fake's devices (Drover / fake).
func updatePayload(t *testing.T, priv ed25519.PrivateKey, version string, image []byte, force bool) string {
	t.Helper()
	sum := sha256.Sum256(image)
	signed, err := firmware.Sign(firmware.Manifest{
		UpdateID:      firmware.UpdateID{Provider: "Drover", Name: "fake", Version: version},
		Compatibility: []firmware.Compatibility{{Manufacturer: "Drover", Model: "fake"}},
		File:          firmware.File{Name: "fake.bin", Size: int64(len(image)), SHA256: hex.EncodeToString(sum[:])},
		CreatedAt:     time.Now(),
	}, priv)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"url": "/firmware/content/" + signed.File.SHA256, "sha256": signed.File.SHA256, "manifest": signed, "force": force})
	return string(b)
}

// TestFirmwareJobRules: a firmware update is disruptive — it waits while
// the device's in-use rule holds, without spending attempts or touching the
// device, and a forced one runs; the cached image is flashed without a
// download and the device reports current.
func TestFirmwareJobRules(t *testing.T) {
	image := []byte("fake firmware image 2.0.0")
	s, priv := firmwareStack(t, map[string]any{"setpoint": json.Number("20.5"), "mode": 1, "running": true}, image)
	s.awaitOnline("pump-1")
	s.reports.Await(t, waitLimit, "pump-1 identified", func(rs []report) bool { return section(rs, "pump-1", "device")["model"] == "fake" })

	st, body := s.method("pump-1", "firmwareUpdate", updatePayload(t, priv, "2.0.0", image, false))
	id, _ := body["jobId"].(string)
	if st != 202 || id == "" {
		t.Fatalf("firmwareUpdate = %d %v, want 202 with a job id", st, body)
	}
	j := s.awaitJob(id, "waiting in-use", func(j jobs.Job) bool { return j.State == jobs.StateWaiting && j.Reason == jobs.ReasonInUse })
	if j.Kind != jobs.KindFirmware || j.Attempts != 0 || len(s.plug.flashes.All()) != 0 {
		t.Fatalf("job %+v, %d flashes: want a firmware job deferred before any flash", j, len(s.plug.flashes.All()))
	}
	if _, err := s.d.jobs.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	s.awaitFirmware("cancelled update reported", "pump-1", func(fw map[string]any) bool {
		return fw["status"] == "failed" && fw["result"] == "cancelled"
	})

	st, body = s.method("pump-1", "firmwareUpdate", updatePayload(t, priv, "2.0.0", image, true))
	id, _ = body["jobId"].(string)
	if st != 202 || id == "" {
		t.Fatalf("forced firmwareUpdate = %d %v", st, body)
	}
	s.awaitJob(id, "succeeded", func(j jobs.Job) bool { return j.State == jobs.StateSucceeded })
	s.awaitFirmware("current reported", "pump-1", func(fw map[string]any) bool {
		return fw["status"] == "current" && fw["currentVersion"] == "2.0.0" && fw["result"] == "success"
	})
	if n := len(s.plug.flashes.All()); n != 1 {
		t.Fatalf("%d flashes, want 1", n)
	}

	// Garbage payloads are refused by the method, and queue nothing.
	for _, p := range []string{`{"url": 7}`, `{}`, `{"version": "9.9.9"}`, `not json`} {
		if st, body := s.method("pump-1", "firmwareUpdate", p); st != 400 && st != 404 {
			t.Errorf("firmwareUpdate %s = %d %v, want 400 or 404", p, st, body)
		}
	}
	if n := len(s.d.jobsOfKind(t, "pump-1", jobs.KindFirmware)); n != 2 {
		t.Errorf("%d firmware jobs, want the 2 accepted", n)
	}
}

func (d *Daemon) jobsOfKind(t *testing.T, device, kind string) []jobs.Job {
	t.Helper()
	js, err := d.jobs.List(context.Background(), jobs.Filter{Device: device, Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// awaitFirmware polls the device's cached reported.firmware: the firmware
// job reports through the device's link (twin cache and outbox), which the
// stack's sink recorder does not see.
func (s *stack) awaitFirmware(what, device string, ok func(fw map[string]any) bool) {
	s.t.Helper()
	deadline := time.Now().Add(waitLimit)
	var fw map[string]any
	for time.Now().Before(deadline) {
		fw, _ = s.twinReported(device)["firmware"].(map[string]any)
		if ok(fw) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%s: not within %s; reported.firmware %v", what, waitLimit, fw)
}

// TestFirmwareImageOverCacheBound: an image no eviction can make room for
// fails at once with outOfStorage, before any download or flash.
func TestFirmwareImageOverCacheBound(t *testing.T) {
	image := []byte("an image larger than this gateway's cache")
	s, priv := firmwareStack(t, map[string]any{"running": false}, image)
	s.d.fw.cacheMax = int64(len(image) - 1)
	s.awaitOnline("pump-1")
	s.reports.Await(t, waitLimit, "pump-1 identified", func(rs []report) bool { return section(rs, "pump-1", "device")["model"] == "fake" })
	st, body := s.method("pump-1", "firmwareUpdate", updatePayload(t, priv, "3.0.0", image, true))
	id, _ := body["jobId"].(string)
	if st != 202 {
		t.Fatalf("firmwareUpdate = %d %v", st, body)
	}
	j := s.awaitJob(id, "failed", func(j jobs.Job) bool { return j.State == jobs.StateFailed })
	if j.Attempts != 1 {
		t.Errorf("%d attempts, want 1: no retry can make room", j.Attempts)
	}
	s.awaitFirmware("outOfStorage reported", "pump-1", func(fw map[string]any) bool {
		return fw["status"] == "failed" && fw["result"] == "outOfStorage"
	})
	if n := len(s.plug.flashes.All()); n != 0 {
		t.Errorf("%d flashes", n)
	}
}

// TestDesiredFirmwareJobPerDevice: one deployment's desired.firmware,
// delivered to two children of the gateway, queues a job for each (the
// queue's idempotency keys are gateway-wide), and both are flashed; the
// same document delivered again queues nothing more.
func TestDesiredFirmwareJobPerDevice(t *testing.T) {
	image := []byte("fake firmware image 4.0.0")
	s, priv := firmwareStack(t, map[string]any{"running": false}, image)
	var p struct {
		URL      string          `json:"url"`
		SHA256   string          `json:"sha256"`
		Manifest json.RawMessage `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(updatePayload(t, priv, "4.0.0", image, false)), &p); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"version": "4.0.0", "updateId": map[string]any{"provider": "Drover", "name": "fake", "version": "4.0.0"},
		"url": p.URL, "sha256": p.SHA256, "size": len(image), "manifest": p.Manifest, "deployment": "fleet-1"}
	devices := []string{"pump-1", "pump-2"}
	for _, id := range devices {
		s.awaitOnline(id)
		s.reports.Await(t, waitLimit, id+" identified", func(rs []report) bool { return section(rs, id, "device")["model"] == "fake" })
	}
	for range 2 {
		for _, id := range devices {
			s.d.desiredFirmware(id, s.d.childLink(id), doc)
		}
	}
	for _, id := range devices {
		js := s.d.jobsOfKind(t, id, jobs.KindFirmware)
		if len(js) != 1 {
			t.Fatalf("%s: %d firmware jobs, want 1", id, len(js))
		}
		s.awaitJob(js[0].ID, "succeeded", func(j jobs.Job) bool { return j.State == jobs.StateSucceeded })
		s.awaitFirmware(id+" current", id, func(fw map[string]any) bool {
			return fw["status"] == "current" && fw["currentVersion"] == "4.0.0" && fw["deployment"] == "fleet-1"
		})
	}
	if got := s.plug.flashes.All(); len(got) != 2 {
		t.Errorf("flashes %v, want one per device", got)
	}
}

// TestFirmwareDownloadsUncachedImage: an image the cache does not hold is
// downloaded from the hub's content path (as the gateway, for the device)
// and flashed.
func TestFirmwareDownloadsUncachedImage(t *testing.T) {
	image := []byte("fake firmware image 5.0.0, served by the hub")
	s, priv := firmwareStack(t, map[string]any{"running": false}, []byte("another image, cached"))
	var gets atomic.Int32
	hub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/firmware/content/") || r.URL.Query().Get("deviceId") != "pump-1" {
			http.NotFound(w, r)
			return
		}
		gets.Add(1)
		http.ServeContent(w, r, "image", time.Time{}, strings.NewReader(string(image)))
	}))
	defer hub.Close()
	s.d.fw.client, s.d.fw.hubBase = hub.Client(), hub.URL
	s.d.fw.authorize = func(*http.Request) error { return nil }
	s.awaitOnline("pump-1")
	s.reports.Await(t, waitLimit, "pump-1 identified", func(rs []report) bool { return section(rs, "pump-1", "device")["model"] == "fake" })

	st, body := s.method("pump-1", "firmwareUpdate", updatePayload(t, priv, "5.0.0", image, false))
	id, _ := body["jobId"].(string)
	if st != 202 || id == "" {
		t.Fatalf("firmwareUpdate = %d %v", st, body)
	}
	j := s.awaitJob(id, "ended", func(j jobs.Job) bool { return j.State.Final() })
	if j.State != jobs.StateSucceeded {
		t.Fatalf("job %s/%s: %s", j.State, j.Reason, j.Error)
	}
	s.awaitFirmware("current reported", "pump-1", func(fw map[string]any) bool {
		return fw["status"] == "current" && fw["currentVersion"] == "5.0.0"
	})
	if gets.Load() == 0 {
		t.Error("the image was not downloaded")
	}
}

// TestFailedPatchKeepsVersion: a failure report names the version that
// failed in pendingVersion (firmware status counts it as that version's
// failure, not as a device not reached yet), and null when unknown.
func TestFailedPatchKeepsVersion(t *testing.T) {
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, version string
		want          any
	}{
		{"known version", "1.2.0", "1.2.0"},
		{"unreadable desired document", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := failedPatch(fwFailure{firmware.ResultRolledBack, errors.New("reverted")}, c.version, "dep-1", now)
			if p["pendingVersion"] != c.want || p["status"] != "failed" || p["result"] != "rolledBack" || p["deployment"] != "dep-1" {
				t.Errorf("failedPatch(version %q) = %v, want pendingVersion %v", c.version, p, c.want)
			}
		})
	}
}
