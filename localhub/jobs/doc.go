// Package jobs runs localhub's Jobs v2: scheduled twin updates
// (scheduleUpdateTwin) and direct method calls (scheduleDeviceMethod) over
// the devices matching a query condition [IoT Hub REST, "Jobs v2"], with
// Drover's AWS IoT Jobs style rollout control on top.
//
// # Lifecycle of a job
//
// A job is created queued (or scheduled, when its startTime is in the
// future). At its start time the engine snapshots the matching devices into
// one pending record per device (store.StartJob), in one transaction with the
// job's move to running; from then on the device set never changes. Each
// record goes pending → running → completed | failed | cancelled, and a
// record that is finished is never touched again, so a hub that stops and
// starts continues a job where it was: pending records are dispatched, and a
// record found running (the hub stopped while it was in flight) is settled
// without repeating side effects: a twin patch whose content is already in
// the twin is marked completed without writing it again, and a method call is
// marked failed (code Interrupted) rather than invoked twice (at most once).
//
// # Rules
//
//   - Twin jobs apply tags and the desired patch with store.PatchTwin and
//     notify a connected device through the hub's normal desired-patch path;
//     a device that is not connected is updated too and catches up on its
//     next twin GET.
//   - Method jobs fail a device that is not connected (DeviceNotOnline), as
//     Azure does, unless connectTimeoutInSeconds lets it connect in time. A
//     device that answers with a status of 400 or more is recorded as failed
//     with its response in the outcome (Drover's choice; it is what abort
//     thresholds need).
//   - maxExecutionTimeInSeconds counts from the job's start time. When it
//     passes, the job ends failed (failureReason says why), pending devices
//     are cancelled (code JobTimeout) and method calls in flight are
//     abandoned and failed.
//   - cancel ends the job cancelled at once: pending devices are cancelled in
//     the same transaction, devices already running finish and record their
//     result.
//   - rollout limits devices started per minute window (constant, or
//     exponential growing with successes); abort ends the job failed
//     ("aborted") once at least minDevices devices have finished and the
//     failed share reaches failureThresholdPercent; deviceTimeoutInSeconds
//     bounds each device's attempt; retry repeats a failed or timed-out
//     attempt up to maxAttempts attempts in all, after the other devices.
//   - Terminal jobs are deleted 30 days after they end (Azure's retention).
//
// Time comes from a Clock so that tests can drive schedules, rollouts and
// deadlines with a clock.Manual.
package jobs
