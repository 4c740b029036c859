package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/jobs"
)

// closedWindow is a desired.maintenance section whose only window opens
// 12 hours from now: closed for the whole test.
func closedWindow() map[string]any {
	at := time.Now().UTC().Add(12 * time.Hour)
	return map[string]any{"windows": []any{map[string]any{
		"cron": fmt.Sprintf("%d %d * * *", at.Minute(), at.Hour()), "duration": "1m", "timezone": "UTC"}}}
}

// cacheApplied stores a twin whose desired document at version was applied
// before the restart, as the twin sync leaves it.
func cacheApplied(t *testing.T, s *stack, id string, desired map[string]any, version int64) {
	t.Helper()
	ctx := context.Background()
	if err := s.d.cache.Put(ctx, id, desired, map[string]any{}, version); err != nil {
		t.Fatal(err)
	}
	if err := s.d.cache.SetApplied(ctx, id, version); err != nil {
		t.Fatal(err)
	}
}

// TestRestartRestoresDesiredState: after a restart with the hub's desired
// unchanged (so the twin sync applies nothing), what desired had set up
// in the gateway comes back from the twin cache, with no uplink: the
// gateway's overlay (a device added remotely runs again) and a device's
// maintenance windows (a disruptive job still waits for them).
func TestRestartRestoresDesiredState(t *testing.T) {
	dir := t.TempDir()
	s1 := newStack(t, dir, stackOptions{initial: pumpInitial})
	overlay := map[string]any{"devices": []any{map[string]any{"id": "pump-3", "bus": "line1", "address": 3, "profile": "pump", "poll": "50ms"}}}
	cacheApplied(t, s1, "gw-test", map[string]any{"config": overlay}, 7)
	cacheApplied(t, s1, "pump-1", map[string]any{"maintenance": closedWindow()}, 3)
	s1.stop()

	s := newStack(t, dir, stackOptions{initial: pumpInitial})
	if s.d.childLink("pump-3") == nil || s.d.cfg.Device("pump-3") == nil {
		t.Fatal("pump-3, added by the cached overlay, is not running after the restart")
	}
	s.awaitOnline("pump-3")

	st, body := s.method("pump-1", "eco", "")
	if st != 202 || body["reason"] != string(jobs.ReasonWindow) {
		t.Fatalf("eco on pump-1 = %d %v, want 202 waiting for its restored window", st, body)
	}
	if _, err := s.d.jobs.Cancel(context.Background(), fmt.Sprint(body["jobId"])); err != nil {
		t.Fatal(err)
	}
	if st, body := s.method("pump-2", "eco", ""); st != 200 {
		t.Fatalf("eco on pump-2 (no windows) = %d %v, want 200", st, body)
	}
}

// TestRestartRejectsStaleOverlay: a cached overlay that no longer fits the
// local file is not applied; the gateway runs the file and says why.
func TestRestartRejectsStaleOverlay(t *testing.T) {
	dir := t.TempDir()
	s1 := newStack(t, dir, stackOptions{initial: pumpInitial})
	bad := map[string]any{"devices": []any{map[string]any{"id": "pump-3", "bus": "gone", "address": 3, "profile": "pump"}}}
	cacheApplied(t, s1, "gw-test", map[string]any{"config": bad}, 8)
	s1.stop()

	s := newStack(t, dir, stackOptions{initial: pumpInitial})
	if s.d.cfg.Device("pump-3") != nil || s.d.childLink("pump-1") == nil {
		t.Fatal("a stale overlay was applied, or the local file's devices do not run")
	}
	patch := s.d.restoreGatewayDesired(context.Background())
	ov, _ := patch["configOverlay"].(map[string]any)
	if ov["status"] != "rejected" || ov["version"] != int64(8) || fmt.Sprint(ov["errors"]) == "[]" {
		t.Fatalf("restore report = %v", patch)
	}
}

// TestReconcileRedeliversDesiredConfig: a device restarted by an overlay
// change that makes it another unit (here a new address: maybe a replaced
// unit) gets its desired config written again, as the twin sync would not
// deliver it, unchanged; one restarted for its poll interval does not.
func TestReconcileRedeliversDesiredConfig(t *testing.T) {
	s := newStack(t, t.TempDir(), stackOptions{initial: pumpInitial})
	s.awaitOnline("pump-1")
	desired := map[string]any{"config": map[string]any{"setpoint": json.Number("23.5")}}
	cacheApplied(t, s, "pump-1", desired, 4)
	s.desired("pump-1", desired, 4)
	s.awaitConfig("pump-1", bridges.ConfigApplied, 4)
	before := len(s.jobsOf("pump-1"))
	reconcile := func(overlay string) {
		t.Helper()
		next, err := config.Merge(s.d.base, []byte(overlay))
		if err != nil {
			t.Fatal(err)
		}
		s.d.reconcileMu.Lock()
		err = s.d.reconcile(next)
		s.d.reconcileMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}

	// A new poll interval restarts the bridge but writes nothing: the
	// config job would be queued by now (submission is synchronous).
	link := s.d.childLink("pump-1")
	reconcile(`{"devices":[{"id":"pump-1","poll":"80ms"}]}`)
	if n := len(s.jobsOf("pump-1")); n != before {
		t.Fatalf("%d jobs after a poll-only change, want %d", n, before)
	}
	// Only the field side restarted: the uplink (link and its connection)
	// is the same, so the hub sees no disconnect.
	if s.d.childLink("pump-1") != link {
		t.Fatal("the device's uplink was restarted for a poll change")
	}

	reconcile(`{"devices":[{"id":"pump-1","poll":"80ms","address":9}]}`)
	// The re-attached unit starts from the profile's initial values.
	s.changes.Await(t, waitLimit, "a new config job for pump-1 succeeded", func(js []jobs.Job) bool {
		n := 0
		for _, j := range js {
			if j.Device == "pump-1" && j.Kind == jobs.KindConfig && j.State == jobs.StateSucceeded {
				n++
			}
		}
		return n >= 2
	})
	if v := s.plug.value(t, "pump-1", "setpoint"); fmt.Sprint(v) != "23.5" {
		t.Fatalf("setpoint after the restart = %v, want 23.5", v)
	}
	if n := len(s.jobsOf("pump-1")); n != before+1 {
		t.Fatalf("%d jobs, want %d", n, before+1)
	}
}
