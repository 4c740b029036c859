package bus

import (
	"math/rand/v2"
	"time"
)

// Breaker defaults.
const (
	DefaultThreshold  = 3
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = time.Minute
	DefaultJitter     = 0.2
)

// Policy configures the per-device circuit breaker. Zero fields take the
// defaults above.
type Policy struct {
	Threshold  int           // consecutive timeouts that open the breaker
	BackoffMin time.Duration // first back-off
	BackoffMax time.Duration // cap; each failed probe doubles the back-off up to it
	// Jitter spreads each back-off uniformly over ±Jitter/2 of its length
	// (0.2: ±10 %), so devices that died together do not probe together.
	// Negative means none.
	Jitter float64
	// Rand returns a number in [0, 1); default math/rand/v2.Float64. Tests
	// pin it.
	Rand func() float64
}

func (p *Policy) applyDefaults() {
	if p.Threshold <= 0 {
		p.Threshold = DefaultThreshold
	}
	if p.BackoffMin <= 0 {
		p.BackoffMin = DefaultBackoffMin
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = DefaultBackoffMax
	}
	if p.BackoffMax < p.BackoffMin {
		p.BackoffMax = p.BackoffMin
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = DefaultJitter
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
}

// backoff returns the back-off after level earlier failed probes:
// BackoffMin·2^level, capped at BackoffMax, then jittered (the jittered
// value may exceed the cap by at most Jitter/2).
func (p *Policy) backoff(level int) time.Duration {
	d := p.BackoffMin
	for i := 0; i < level && d < p.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.BackoffMax)
	if p.Jitter > 0 {
		f := 1 + p.Jitter*(p.Rand()-0.5)
		d = time.Duration(float64(d) * f)
	}
	return d
}
