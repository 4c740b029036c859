// Package bus arbitrates one half-duplex field bus: a Scheduler runs one
// transaction at a time, in priority order, and keeps a circuit breaker per
// device so that a dead device costs at most one timeout per back-off period.
//
// A Scheduler has no goroutine of its own: Do runs the transaction in the
// caller's goroutine once the bus is granted, and the finishing transaction
// hands the bus to the next waiter. So there is nothing to start or stop,
// and a caller that gives up (its ctx ends while queued) simply leaves the
// queue.
//
// Ordering rule: PriorityCommand (operator or technician) before
// PriorityWrite (desired configuration) before PriorityPoll; first come,
// first served within a priority. A running transaction is never preempted.
//
// Breaker rule, per device (see breaker.go):
//
//	closed    --Threshold consecutive timeouts-->  open (back-off d)
//	open      --d elapsed, next poll/write-->      half-open (that call is the probe)
//	half-open --probe answered-->                  closed (back-off reset)
//	half-open --probe timed out-->                 open (back-off doubled, capped, jittered)
//
// While open or half-open, poll and write transactions for the device fail
// at once with ErrBackoff and never touch the bus. Command transactions
// always run (a technician may poke a dead device); their answer closes the
// breaker, their timeout does not lengthen the back-off.
//
// A "timeout" is an error whose plugins.CodeOf is CodeTimeout or
// CodeGatewayTarget, or a context.DeadlineExceeded from a deadline inside
// the transaction while the caller's own ctx is still alive. A success or
// an answer from the device (CodeDeviceError, CodeInvalid, CodeNotFound,
// CodeInUse, CodeUnsupported) resets the count; other errors (the bus or
// plugin is unavailable, busy, the caller gave up) leave it unchanged.
package bus
