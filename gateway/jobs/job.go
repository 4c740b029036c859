package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// State is where a job is in its life; see the package comment for the
// transitions.
type State string

// The states of a job.
const (
	StateQueued      State = "queued"      // accepted, not yet looked at by the scheduler
	StateWaiting     State = "waiting"     // held back; Job.Reason says why
	StateRunning     State = "running"     // the executor has it
	StateInterrupted State = "interrupted" // found running after a crash; its effect is being verified
	StateSucceeded   State = "succeeded"   // final
	StateFailed      State = "failed"      // final; Job.Error says why
	StateCancelled   State = "cancelled"   // final
)

// States lists every state, in the order of the state machine.
var States = []State{StateQueued, StateWaiting, StateRunning, StateInterrupted, StateSucceeded, StateFailed, StateCancelled}

// Final reports whether s is a final state: a job in it never changes again.
func (s State) Final() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled
}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Reason says why a job waits (or, for a few final states, how it ended).
type Reason string

// Reasons. The first five are the waiting reasons of the brief; the others
// are additions that say more than "queued".
const (
	ReasonNone       Reason = ""
	ReasonWindow     Reason = "window"      // disruptive and no maintenance window is open
	ReasonDeviceBusy Reason = "device-busy" // another job of the device is running
	ReasonInUse      Reason = "in-use"      // the device's in-use rule holds (or could not be checked)
	ReasonBusBusy    Reason = "bus-busy"    // another job runs on the same serial bus
	ReasonOffline    Reason = "offline"     // the device does not answer
	ReasonRetry      Reason = "retry"       // a retryable attempt failed; waiting for its back-off
	ReasonResume     Reason = "resume"      // queued again after a crash to resume (Resumer)
	ReasonVerify     Reason = "verify"      // interrupted: the device's state is being checked
	ReasonVerified   Reason = "verified"    // succeeded: an interrupted job found applied on the device
	ReasonDeadline   Reason = "deadline"    // failed: the deadline passed
)

// Source says who asked for a job.
type Source string

// Sources of jobs.
const (
	SourceHubMethod  Source = "hub-method" // a direct method from the hub
	SourceDesired    Source = "desired"    // a desired property change
	SourceTechnician Source = "technician" // the local API / CLI
)

// Kinds of jobs. A custom method is KindMethodPrefix + its name.
const (
	KindConfig       = "config"       // a desired.config version written to the device
	KindWrite        = "write"        // the write method: point values written on request
	KindReboot       = "reboot"       // reboot method
	KindFactoryReset = "factoryReset" // factoryReset method
	KindFirmware     = "firmware"     // firmware flash
	KindMethodPrefix = "method:"      // a profile's custom method, "method:<name>"
)

// Limits on what Submit accepts.
const (
	MaxPayload   = 1 << 20 // bytes of Spec.Payload
	MaxIDLen     = 256     // bytes of device, bus, key and kind
	MaxAttempts  = 100     // upper bound of Spec.MaxAttempts
	maxReasonLen = 4096    // bytes of a stored error message
)

// Errors returned by the queue. Compare with errors.Is.
var (
	ErrNotFound = errors.New("job not found")
	ErrInvalid  = errors.New("invalid job")
	ErrFinished = errors.New("job already finished")
)

// Errors an Executor returns (wrapped) to say the attempt did not start
// and nothing was sent to the device: the job goes back to waiting with
// the matching reason, and the attempt is not counted. An executor must
// not return them once a command may have reached the device (a reboot
// that timed out may have happened).
var (
	ErrInUse   = errors.New("device in use")
	ErrOffline = errors.New("device offline")
)

// ErrUnverifiable is returned (wrapped) by a Verifier that cannot tell
// from the device whether a job of this kind took effect: the interrupted
// job fails at once, and is not repeated.
var ErrUnverifiable = errors.New("cannot be verified on the device")

// Job is one action on a field device, as stored.
type Job struct {
	ID          string          `json:"id"`
	Key         string          `json:"key,omitempty"` // idempotency key given at Submit
	Kind        string          `json:"kind"`
	Device      string          `json:"device"`
	Bus         string          `json:"bus,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Source      Source          `json:"source"`
	Disruptive  bool            `json:"disruptive,omitempty"`
	Force       bool            `json:"force,omitempty"`
	State       State           `json:"state"`
	Reason      Reason          `json:"reason,omitempty"`
	Attempts    int             `json:"attempts"`    // executions started (deferred ones not counted)
	MaxAttempts int             `json:"maxAttempts"` // attempts allowed for retryable errors
	Resumes     int             `json:"resumes,omitempty"`
	Progress    int             `json:"progress"` // 0..100
	Message     string          `json:"message,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"` // why it failed; for a waiting job the last error
	// CancelRequested is set by Cancel on a running job until it ends.
	CancelRequested bool      `json:"cancelRequested,omitempty"`
	NotBefore       time.Time `json:"notBefore,omitzero"` // not started again before (back-off, re-checks)
	Deadline        time.Time `json:"deadline,omitzero"`
	Created         time.Time `json:"created,omitzero"`
	Started         time.Time `json:"started,omitzero"` // last attempt
	Ended           time.Time `json:"ended,omitzero"`
	Updated         time.Time `json:"updated,omitzero"`
	// Version counts the stored changes of the job: of two copies, the
	// one with the higher Version is newer.
	Version int64 `json:"version"`

	verifyAttempts int
	corrupt        string // why the stored row cannot run, "" when fine
}

// Method returns the method name of a "method:<name>" job, else "".
func (j Job) Method() string {
	name, ok := strings.CutPrefix(j.Kind, KindMethodPrefix)
	if !ok {
		return ""
	}
	return name
}

// Spec is what Submit needs to create a job.
type Spec struct {
	Kind    string          // config, write, reboot, factoryReset, firmware or method:<name>
	Device  string          // required
	Bus     string          // the device's bus: jobs on one serial bus run one at a time
	Payload json.RawMessage // JSON; empty means null
	Source  Source          // default SourceTechnician
	// Disruptive jobs wait for a maintenance window and the in-use rule.
	// reboot, factoryReset and firmware are always disruptive.
	Disruptive bool
	// Force skips the maintenance window and the in-use rule.
	Force bool
	// MaxAttempts bounds retries of retryable errors; 0 means Options.MaxAttempts.
	MaxAttempts int
	// Deadline, when set, fails the job if it has not finished by then.
	Deadline time.Time
	// Key, when set, makes Submit idempotent: a job with the same key that
	// is still stored is returned instead of creating another (even a
	// finished one, so a completed job is never re-run).
	Key string
	// Supersede cancels the device's queued and waiting jobs of the same
	// kind (an older desired config is replaced by a newer one).
	Supersede bool
}

// disruptiveKinds are always disruptive.
var disruptiveKinds = map[string]bool{KindReboot: true, KindFactoryReset: true, KindFirmware: true}

// builtinKinds are the kinds besides method:<name>.
var builtinKinds = map[string]bool{KindConfig: true, KindWrite: true, KindReboot: true, KindFactoryReset: true, KindFirmware: true}

// normalize checks s and fills its defaults; errors wrap ErrInvalid.
func (s *Spec) normalize(defaultAttempts int) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case builtinKinds[s.Kind]:
	case strings.HasPrefix(s.Kind, KindMethodPrefix):
		name := strings.TrimPrefix(s.Kind, KindMethodPrefix)
		if name == "" || strings.ContainsFunc(name, badIDRune) {
			return bad("kind %q: want method:<name> with a non-empty name without spaces or control characters", s.Kind)
		}
	default:
		return bad("unknown kind %q (want config, write, reboot, factoryReset, firmware or method:<name>)", s.Kind)
	}
	for _, f := range []struct{ name, v string }{{"kind", s.Kind}, {"device", s.Device}, {"bus", s.Bus}, {"key", s.Key}} {
		if len(f.v) > MaxIDLen || !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, badIDRune) {
			return bad("%s %q: at most %d bytes of UTF-8 without spaces or control characters", f.name, f.v, MaxIDLen)
		}
	}
	if s.Device == "" {
		return bad("device is required")
	}
	switch s.Source {
	case "":
		s.Source = SourceTechnician
	case SourceHubMethod, SourceDesired, SourceTechnician:
	default:
		return bad("unknown source %q (want hub-method, desired or technician)", s.Source)
	}
	p := bytes.TrimSpace(s.Payload)
	switch {
	case len(p) > MaxPayload:
		return bad("payload of %d bytes is over the limit of %d", len(p), MaxPayload)
	case len(p) == 0:
		p = []byte("null")
	case !json.Valid(p):
		return bad("payload is not valid JSON")
	}
	s.Payload = json.RawMessage(bytes.Clone(p))
	if s.MaxAttempts < 0 || s.MaxAttempts > MaxAttempts {
		return bad("maxAttempts %d out of range 0..%d", s.MaxAttempts, MaxAttempts)
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = defaultAttempts
	}
	if disruptiveKinds[s.Kind] {
		s.Disruptive = true
	}
	return nil
}

func badIDRune(r rune) bool {
	return r <= ' ' || r == 0x7f || r == utf8.RuneError
}

// Filter selects jobs for List. Zero fields match everything.
type Filter struct {
	Device string
	Kind   string
	States []State
	// Limit bounds the answer (newest first); 0 means 1000.
	Limit int
}

// truncate bounds a stored message.
func truncate(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	s = s[:maxReasonLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
