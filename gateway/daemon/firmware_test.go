package daemon

import (
	"errors"
	"fmt"
	"testing"

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
		{"port gone", plugins.Errorf(plugins.CodeUnavailable, "open /dev/ttyUSB0: no such file"), phaseUploading, jobs.ErrOffline, "", false},
		{"silent mid-upload resumes", plugins.Errorf(plugins.CodeTimeout, "no answer"), phaseUploading, nil, firmware.ResultTransferError, true},
		{"silent after the reset", plugins.Errorf(plugins.CodeTimeout, "did not answer within 2m of its reset"), phaseRebooting, nil, firmware.ResultBootFailed, false},
		{"rolled back", plugins.Errorf(plugins.CodeDeviceError, "rolled-back: device mcu-1 runs 1.0.0 again"), phaseRolledBack, nil, firmware.ResultRolledBack, false},
		{"rolled back, event lost", plugins.Errorf(plugins.CodeDeviceError, "rolled-back: device mcu-1 runs 1.0.0 again"), phaseConfirming, nil, firmware.ResultRolledBack, false},
		{"device refuses the image", plugins.Errorf(plugins.CodeDeviceError, "image upload rc 3"), phaseUploading, nil, firmware.ResultDeviceRejected, false},
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
