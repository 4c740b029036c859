package soak

import (
	"testing"
	"time"
)

// TestNetworkCut puts a TCP proxy between the gateway and the hub's MQTT
// listener and cuts the link while both processes stay up: first by
// stalling it (no bytes move, sockets stay open), then by resetting it
// (both sides closed, reconnects refused), each for a few seconds. A
// desired setpoint is written during each cut. It asserts that the cut held
// data back (the outbox grew), that the desired change is applied on the
// device and reported after the link is restored, and the same no-loss
// accounting as the soak: every accepted telemetry id at the hub, outbox
// drained, nothing dropped, duplicates within the in-flight bound.
func TestNetworkCut(t *testing.T) {
	e := newEnv(t)
	began := time.Now()
	p := startProxy(t, e.mqttAddr)
	e.upstream = p.Addr()
	e.start()
	e.waitFlowing()

	want := map[string]float64{}
	for i, mode := range []proxyMode{modeStall, modeReset} {
		e.pause(e.between(500*time.Millisecond, 1500*time.Millisecond))
		accepts := p.Accepts()
		cut := e.between(3*time.Second, 6*time.Second)
		p.SetMode(mode)
		cutAt := time.Now()
		id := e.devices[i%len(e.devices)]
		v := 30 + float64(i)*0.5
		e.setDesired(id, v)
		want[id] = v
		// Polled during the cut: the outbox must hold what cannot leave.
		maxDepth := 0
		for time.Since(cutAt) < cut {
			if d, _, err := e.outboxDepth(); err == nil && d > maxDepth {
				maxDepth = d
			}
			e.pause(100 * time.Millisecond)
		}
		p.SetMode(modePass)
		restored := time.Now()
		if maxDepth == 0 {
			t.Errorf("outbox stayed empty during a %s cut of %s: the cut did not hold anything back", mode, cut.Round(time.Millisecond))
		}
		e.checkConverged(map[string]float64{id: v})
		t.Logf("%s cut of %s: outbox peaked at %d; desired %s.setpoint=%v applied and reported %s after the restore; %d new upstream connections",
			mode, cut.Round(time.Millisecond), maxDepth, id, v, time.Since(restored).Round(time.Millisecond), p.Accepts()-accepts)
	}
	e.checkConverged(want)
	e.checkJobs()
	a := e.account(e.drain())
	t.Logf("telemetry: %s", a)
	t.Logf("run time %s", time.Since(began).Round(time.Millisecond))
	a.check(t, 2, 0, len(e.devices))
}
