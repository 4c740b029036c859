package bus

import (
	"context"
	"errors"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// BreakerState is the state of one device's circuit breaker.
type BreakerState int

// Breaker states.
const (
	BreakerClosed   BreakerState = iota // transactions run
	BreakerOpen                         // polls and writes fail fast until the back-off ends
	BreakerHalfOpen                     // one probe is running
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler so Stats encode readably.
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// outcome classifies a finished transaction for the breaker.
type outcome int

const (
	outcomeNeutral outcome = iota // says nothing about the device
	outcomeAnswer                 // the device answered (success or a device-level error)
	outcomeTimeout                // the device did not answer
)

// classify maps a transaction's error to an outcome; callerErr is the
// caller's ctx.Err() after the call (a deadline of the caller is not the
// device's fault).
func classify(err, callerErr error) outcome {
	if err == nil {
		return outcomeAnswer
	}
	switch plugins.CodeOf(err) {
	case plugins.CodeTimeout, plugins.CodeGatewayTarget:
		if callerErr != nil {
			return outcomeNeutral
		}
		return outcomeTimeout
	case plugins.CodeDeviceError, plugins.CodeInvalid, plugins.CodeNotFound, plugins.CodeInUse, plugins.CodeUnsupported:
		return outcomeAnswer
	}
	if errors.Is(err, context.DeadlineExceeded) && callerErr == nil {
		return outcomeTimeout
	}
	return outcomeNeutral
}

// breaker is one device's circuit breaker. It is a pure state machine: the
// scheduler holds its lock and passes the time in.
type breaker struct {
	state       BreakerState
	consecutive int           // consecutive timeouts while closed
	level       int           // how many times it opened without a successful probe
	openUntil   time.Time     // end of the current back-off
	lastBackoff time.Duration // length of the current back-off
	opens       uint64        // times it opened, for Stats
}

// admit says whether a poll or write may run now. It turns an expired open
// breaker into half-open: the admitted call is the probe.
func (b *breaker) admit(now time.Time) bool {
	switch b.state {
	case BreakerOpen:
		if now.Before(b.openUntil) {
			return false
		}
		b.state = BreakerHalfOpen
		return true
	case BreakerHalfOpen:
		return false // the probe is running
	}
	return true
}

// record feeds the outcome of a transaction; probe is true when the
// transaction was the half-open probe. A timeout that is not the probe
// counts only while closed, so a command timing out on an open breaker does
// not lengthen the back-off.
func (b *breaker) record(o outcome, probe bool, now time.Time, p *Policy) {
	switch o {
	case outcomeAnswer:
		b.state, b.consecutive, b.level = BreakerClosed, 0, 0
	case outcomeTimeout:
		switch {
		case probe:
			b.open(now, p)
		case b.state == BreakerClosed:
			b.consecutive++
			if b.consecutive >= p.Threshold {
				b.open(now, p)
			}
		}
	case outcomeNeutral:
		if probe && b.state == BreakerHalfOpen {
			b.state = BreakerOpen // openUntil has passed: the next call probes again
		}
	}
}

func (b *breaker) open(now time.Time, p *Policy) {
	d := p.backoff(b.level)
	b.state = BreakerOpen
	b.consecutive = 0
	b.level++
	b.lastBackoff = d
	b.openUntil = now.Add(d)
	b.opens++
}
