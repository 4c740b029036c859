package bridges

import (
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/clock"
)

// TestRealClock runs the poller and a reboot watch on real time with
// short intervals; the waits are on events, the intervals only pace them.
func TestRealClock(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Clock = clock.Real{}
		o.RebootProbe, o.RebootTimeout = 10*time.Millisecond, time.Minute
	})
	h.plug.now = time.Now
	h.b.cycleDone = nil
	h.add(DeviceSpec{ID: "pump-1", Bus: "rs485", Points: []PointSpec{{Name: "temperature", Poll: 20 * time.Millisecond}}})
	h.plug.set("pump-1", "temperature", 20)
	h.run()
	h.plug.log.Await(t, waitLimit, "three polls", func(l []txn) bool { return len(ops(l, "read", "")) >= 3 })

	h.plug.with("pump-1", func(d *fakeDev) { d.afterRbt = 1 })
	if st, body := h.invoke("pump-1", "reboot", ""); st != 200 {
		t.Fatalf("reboot = %d %v", st, body)
	}
	h.sink.Await(t, waitLimit, "reboot done", func(evs []event) bool {
		s := sections(evs, "pump-1", "reboot")
		return len(s) == 2 && s[1]["status"] == ManageDone
	})
}
