package firmware

import (
	"errors"
	"fmt"
	"slices"
)

// Status is a device's firmware update state, reported as
// reported.firmware.status. The machine is modelled on LwM2M's firmware
// update object (5/0/3), with the gateway's download and verification steps
// made visible (docs/firmware.md, "Statuses").
type Status string

// Statuses, in the order an update moves through them.
const (
	StatusIdle        Status = "idle"        // no update in progress
	StatusDownloading Status = "downloading" // the gateway fetches the image (progress: bytes)
	StatusDownloaded  Status = "downloaded"  // the image is in the gateway's cache, digest checked
	StatusVerifying   Status = "verifying"   // signature, trust and compatibility with the device's identify data
	StatusApplying    Status = "applying"    // the image goes to the device through its plugin (progress: bytes)
	StatusRebooting   Status = "rebooting"   // the device restarts into the new image
	StatusConfirming  Status = "confirming"  // the gateway checks the device runs the new version
	StatusCurrent     Status = "current"     // the device runs the target version
	StatusFailed      Status = "failed"      // the update ended without success; result and reason say why
)

// next lists the statuses each status may move to (besides staying, and
// besides failed, which every status may move to: a request refused before
// anything started — untrusted key, wrong model — fails from idle or current).
var next = map[Status][]Status{
	StatusIdle:        {StatusDownloading, StatusDownloaded},
	StatusDownloading: {StatusDownloaded},
	StatusDownloaded:  {StatusVerifying},
	StatusVerifying:   {StatusApplying},
	StatusApplying:    {StatusRebooting},
	StatusRebooting:   {StatusConfirming},
	StatusConfirming:  {StatusCurrent},
	StatusCurrent:     {StatusIdle, StatusDownloading, StatusDownloaded},
	StatusFailed:      {StatusIdle, StatusDownloading, StatusDownloaded},
}

// ErrTransition is a status change the machine does not allow.
var ErrTransition = errors.New("firmware status transition not allowed")

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool { _, ok := next[s]; return ok }

// Transition checks a move from one status to another. Staying is allowed
// (progress updates); every status may fail (a refused request fails
// from idle or current, the device still running currentVersion); a new
// update starts from idle, current or failed.
func Transition(from, to Status) error {
	if !from.Valid() || !to.Valid() {
		return fmt.Errorf("%w: %q → %q: unknown status", ErrTransition, from, to)
	}
	if from == to || slices.Contains(next[from], to) {
		return nil
	}
	if to == StatusFailed {
		return nil
	}
	return fmt.Errorf("%w: %s → %s", ErrTransition, from, to)
}

// Result is the outcome code reported as reported.firmware.result.
type Result string

// Results. Each failure result comes with a human-readable reason.
const (
	ResultSuccess           Result = "success"
	ResultMalformedManifest Result = "malformedManifest"
	ResultUnsigned          Result = "unsigned"
	ResultBadSignature      Result = "badSignature"
	ResultUntrustedKey      Result = "untrustedKey"
	ResultIncompatible      Result = "incompatibleTarget"
	ResultDigestMismatch    Result = "digestMismatch"
	ResultOutOfStorage      Result = "outOfStorage"
	ResultTransferError     Result = "transferError"
	ResultDeviceRejected    Result = "deviceRejected"
	ResultBootFailed        Result = "bootFailed" // the new image did not boot and the device did not roll back
	ResultRolledBack        Result = "rolledBack" // the new image did not boot; the device runs the old version again
	ResultCancelled         Result = "cancelled"  // the gateway's job was cancelled, or its deadline passed, before the device ran the new version
	ResultInternal          Result = "internalError"
)

// ResultOf maps an error from this package to the result a device reports;
// nil is ResultSuccess and an error this package does not know is ResultInternal.
func ResultOf(err error) Result {
	switch {
	case err == nil:
		return ResultSuccess
	case errors.Is(err, ErrMalformed):
		return ResultMalformedManifest
	case errors.Is(err, ErrUnsigned):
		return ResultUnsigned
	case errors.Is(err, ErrBadSignature):
		return ResultBadSignature
	case errors.Is(err, ErrUntrustedKey):
		return ResultUntrustedKey
	case errors.Is(err, ErrIncompatible):
		return ResultIncompatible
	case errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrSizeMismatch):
		return ResultDigestMismatch
	case errors.Is(err, ErrCacheFull):
		return ResultOutOfStorage
	case errors.Is(err, ErrTransfer):
		return ResultTransferError
	}
	return ResultInternal
}
