package upstream

import (
	"testing"
	"time"

	"github.com/drover-iot/drover/localhub/hubtest"
)

// TestGroupNudgesMembersWhenTheHubReturns: after a hub outage, a member
// whose backoff would keep it away for an hour reconnects as soon as another
// member of its group gets through; outside a group it stays away.
func TestGroupNudgesMembersWhenTheHubReturns(t *testing.T) {
	env := hubtest.Start(t)
	g := NewGroup()
	fastRec, slowRec, loneRec := newRecorder(), newRecorder(), newRecorder()

	fast := hubOptions(t, env, "gw-fast", fastRec)
	fast.Group = g
	slow := hubOptions(t, env, "child-slow", slowRec)
	slow.Group = g
	slow.BackoffMin, slow.BackoffMax = time.Hour, time.Hour
	lone := hubOptions(t, env, "child-lone", loneRec)
	lone.BackoffMin, lone.BackoffMax = time.Hour, time.Hour

	cf, cs, cl := start(t, fast), start(t, slow), start(t, lone)
	for _, r := range []*recorder{fastRec, slowRec, loneRec} {
		await(t, r.connected, 10*time.Second, "Connected")
	}

	env.Stop(t)
	for _, r := range []*recorder{fastRec, slowRec, loneRec} {
		await(t, r.disconnected, 10*time.Second, "Disconnected")
	}
	// The slow ones are now in an hour-long backoff (a lost connection backs
	// off before the first retry); the fast one keeps failing against the
	// closed port.
	eventually(t, 10*time.Second, "a failed reconnect of the fast member", func() bool { return cf.Stats().ConnectFailures > 0 })

	hubtest.StartWith(t, hubtest.Options{DataDir: env.DataDir, MQTTAddr: env.MQTTAddr, HTTPSAddr: env.HTTPSAddr})
	await(t, fastRec.connected, 15*time.Second, "fast member reconnected")
	await(t, slowRec.connected, 15*time.Second, "slow member reconnected after the nudge")
	if !cs.Connected() {
		t.Fatal("slow member not connected")
	}
	if cl.Connected() {
		t.Fatal("a client outside the group left its hour-long backoff")
	}
}

// TestGroupCounting: only the first member up after all were down nudges.
func TestGroupCounting(t *testing.T) {
	g := NewGroup()
	a, b, c := &Client{nudges: make(chan time.Duration, 1)}, &Client{nudges: make(chan time.Duration, 1)}, &Client{nudges: make(chan time.Duration, 1)}
	for _, m := range []*Client{a, b, c} {
		g.join(m)
	}
	nudged := func(m *Client) bool {
		select {
		case <-m.nudges:
			return true
		default:
			return false
		}
	}
	g.up(a)
	if nudged(a) || !nudged(b) || !nudged(c) {
		t.Fatal("first member up should nudge the others only")
	}
	g.up(b) // a is still up: nobody is nudged
	if nudged(a) || nudged(c) {
		t.Fatal("a second member up nudged")
	}
	g.down()
	g.down()
	g.leave(c)
	g.up(b)
	if !nudged(a) || nudged(c) {
		t.Fatal("after all were down, b up should nudge a and not c, which left")
	}
}
