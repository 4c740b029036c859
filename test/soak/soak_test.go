package soak

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// fault is one kind of disruption of a soak cycle.
type fault int

const (
	hubTerm fault = iota // hub stopped with SIGTERM, restarted on the same data dir and ports
	hubKill              // hub SIGKILLed, restarted likewise
	gwKill               // gateway SIGKILLed at a random moment, restarted
	numFaults
)

func (f fault) String() string {
	return [...]string{"hub SIGTERM", "hub SIGKILL", "gateway SIGKILL"}[f]
}

func cycles(t *testing.T) int {
	s := os.Getenv("DROVER_SOAK_CYCLES")
	if s == "" {
		return 3
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("DROVER_SOAK_CYCLES=%q: want a positive number", s)
	}
	return n
}

// between returns a random duration in [lo, hi): the fault schedule, not synchronisation.
func (e *env) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(e.rng.Int64N(int64(hi-lo)))
}

// pause lets the system run for d while faults are scheduled.
func (e *env) pause(d time.Duration) {
	select {
	case <-time.After(d):
	case <-e.ctx.Done():
	}
}

// TestSoakNoLoss runs hub, simulator and gateway as real processes while the
// hub is stopped (SIGTERM or SIGKILL) and restarted on the same data and
// ports, and the gateway is SIGKILLed at random moments and restarted, and
// desired setpoints are written during the faults. Afterwards it asserts:
// every telemetry message id the gateway's outbox accepted is stored at the
// hub (0 lost), the outbox is drained with nothing dropped, duplicates are
// within the in-flight window per fault, per-device order holds, each
// device's twin equals the device (last desired setpoint in the register,
// reported config applied at the current desired version, reported points
// equal the registers), and every local job ended in a final state.
//
// It runs once per outbox durability mode in DROVER_SOAK_DURABILITY
// (comma-separated; default spill, batched and every_message). Under spill
// the loss assertion is the spill bound (see accounting.check).
func TestSoakNoLoss(t *testing.T) {
	modes := []string{"spill", "batched", "every_message"}
	if v := os.Getenv("DROVER_SOAK_DURABILITY"); v != "" {
		modes = strings.Split(v, ",")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { soakNoLoss(t, mode) })
	}
}

func soakNoLoss(t *testing.T, mode string) {
	e := newEnv(t)
	e.durability = mode
	n := cycles(t)
	began := time.Now()
	e.start()
	e.waitFlowing()

	want := map[string]float64{}
	writes := 0
	desire := func() {
		id := e.devices[e.rng.IntN(len(e.devices))]
		v := 15 + float64(writes)*0.25 // exact in float32
		writes++
		e.setDesired(id, v)
		want[id] = v
	}

	count := map[fault]int{}
	// Every kind of fault occurs once in each group of numFaults cycles, in random order.
	var order []fault
	for i := 0; i < n; i++ {
		if i%int(numFaults) == 0 {
			order = order[:0]
			for _, j := range e.rng.Perm(int(numFaults)) {
				order = append(order, fault(j))
			}
		}
		f := order[i%int(numFaults)]
		count[f]++
		e.pause(e.between(300*time.Millisecond, 2500*time.Millisecond))
		switch f {
		case hubTerm, hubKill:
			e.stopHub(f == hubKill)
			e.pause(e.between(100*time.Millisecond, 3*time.Second))
			e.startHub()
			// Written before the gateway has reconnected (most of the time):
			// it must learn the change from the twin it fetches on reconnect.
			if e.rng.IntN(2) == 0 {
				desire()
			}
		case gwKill:
			e.killGateway()
			if e.rng.IntN(2) == 0 {
				desire() // written while the gateway is down
			}
			e.pause(e.between(0, time.Second))
			e.startGateway()
		}
		t.Logf("cycle %d/%d: %s (t=%s)", i+1, n, f, time.Since(began).Round(time.Millisecond))
	}
	if writes == 0 {
		desire()
	}
	// One more change after the chaos, so the last write always meets a running system.
	desire()

	e.checkConverged(want)
	e.checkJobs()
	a := e.account(e.drain())
	t.Logf("faults: %d cycles (%d hub SIGTERM, %d hub SIGKILL, %d gateway SIGKILL), %d gateway starts, %d desired writes, %d plugin processes outlived the gateway",
		n, count[hubTerm], count[hubKill], count[gwKill], e.gwStarts, writes, e.orphans)
	t.Logf("telemetry: %s", a)
	t.Logf("run time %s", time.Since(began).Round(time.Millisecond))
	a.check(t, n, count[gwKill], len(e.devices))
}
