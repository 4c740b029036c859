// Package jobs is the gateway's durable local job queue: every action on a
// field device (a desired config version, a write, reboot, factory reset,
// firmware flash or custom method) is a row in the gateway's SQLite database (tables
// jobs_*), run by a scheduler that respects maintenance windows, the
// device's in-use rule, one job per device and one job per serial bus, and
// that never repeats a reboot or reset blindly after a crash.
//
// # States
//
//	queued ──► waiting(reason) ──► running ──► succeeded
//	   │  ▲         │   ▲             │  ├───► failed     (error; reason "deadline" when the deadline passed)
//	   │  └─────────┘   └─────────────┘  └───► cancelled
//	   │        retry / in-use / offline
//	   └──► cancelled | failed (deadline, corrupt row)   from queued or waiting
//
//	running ──(crash or shutdown)──► queued(resume)                 Resumable kind: Execute again, Resumes+1
//	                            └──► interrupted(verify) ──► succeeded(verified) | failed | cancelled
//
// Waiting reasons: window (disruptive, unforced, no maintenance window
// open), offline (Options.Online says so, or the executor returned
// ErrOffline), device-busy (another job of the device is running),
// bus-busy (another job runs on the same serial bus), in-use (the in-use
// rule held or could not be checked right before a disruptive job, or the
// executor returned ErrInUse; re-checked after Options.Recheck or Poke),
// retry (a retryable error; back-off base·2^(n-1) capped, with jitter).
// Deferrals (in-use, offline) do not count as attempts; a job deferred
// forever is ended by its deadline. Succeeded, failed and cancelled are
// final: a final job never changes again and is never re-run, and a Spec
// Key makes Submit return an existing job instead of a duplicate.
//
// # Scheduling
//
// Run makes passes over the pending jobs in submission order; a pass runs
// after every Submit, Cancel, job end, Poke, and at the next instant
// something becomes due (a window opening, a back-off or re-check ending,
// a deadline) on the injected Clock. A job that cannot run does not block
// later jobs of the same device that can. The in-use rule is checked in
// the job's goroutine, right before Execute, after the device and bus were
// claimed, so nothing else runs on the device between check and command.
// A running job whose deadline passes has its context cancelled and fails
// with "deadline" (unless the executor still succeeds).
//
// # Crash safety
//
// A job is stored "running" (attempts+1) before Execute is called, and its
// outcome is stored when Execute returns, each in its own synchronous
// commit. Progress in between is only informative: it is throttled per job
// (Options.ProgressEvery) and the updates of all running jobs are merged
// into one transaction per ProgressEvery, committed with
// synchronous=NORMAL (progress.go); a crash may lose the last of them. Run first looks for jobs left
// "running": the process that ran them died. A job of a kind the
// executor's Resumer calls resumable is queued again (reason "resume") and
// Execute sees Resumes > 0, up to Options.MaxResumes times. Any other job
// becomes "interrupted": the executor's Verifier checks the device, and
// the job ends succeeded (reason "verified") when the change is there, or
// failed ("interrupted; device state verified: not applied") when it is
// not, or at once when the Verifier says its kind cannot be checked
// (ErrUnverifiable); the queue never runs it again. A job stopped by a
// clean shutdown is treated the same way at the next Run.
//
// # Notifications
//
// Subscribe delivers every stored change (latest state per job, in commit
// order) from a goroutine owned by Run, so the gateway can mirror progress
// into reported properties. Await lets a caller wait for one job to reach
// a state (a method answering inline when its job ends quickly).
package jobs
