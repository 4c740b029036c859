package e2e

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/serviceclient"
)

// TestFirmwareFleetRollout rolls firmware out to a fleet of MCUs behind one
// gateway as one hub job (droverctl firmware deploy with a rollout rate and
// an abort threshold): a good version reaches every device at the pace the
// rollout allows, and a version that fails to boot trips the abort
// threshold, leaving the devices it never started on the old version and
// the ones it did rolled back to it.
func TestFirmwareFleetRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	const (
		n    = 8
		size = 16 << 10
		good = "1.1.0"
		bad  = "1.2.0" // devsim crashes this version at boot: MCUboot reverts it
	)
	ctx := context.Background()
	r := newFwRig(t, n, "--fault", "fail-boot="+bad)

	t.Run("good version reaches every device at the rollout's pace", func(t *testing.T) {
		r.publish(good, "MCU-1", r.trustedKey, size, false)
		// A rate that grows with successes (2 devices per minute, doubled
		// after every 2 that succeed) paces the fleet in waves inside one
		// rollout window, so pacing shows without waiting out a minute.
		const base, factor, every = 2, 2, 2
		r.mustCtl("firmware", "deploy", "--version", good, "--model", "MCU-1", "--query", "*", "--job-id", "fleet-good",
			"--rate", fmt.Sprintf("%d/min", base), "--rate-factor", fmt.Sprint(factor), "--rate-every", fmt.Sprint(every),
			"--abort-threshold", "50%", "--abort-min", "2")

		// Follow the rollout as an operator would, through firmware status;
		// every answer must add up.
		var seen []string
		r.eventually(t, 150*time.Second, "the rollout completes", func() (bool, string) {
			out := r.mustCtl("firmware", "status", "--version", good)
			parseFleetStatus(t, good, out)
			if line := strings.SplitN(out, "\n", 2)[0]; len(seen) == 0 || seen[len(seen)-1] != line {
				seen = append(seen, line)
			}
			j, err := r.svc.GetJob(ctx, "fleet-good")
			return err == nil && j.Done(), fmt.Sprintf("job %+v (%v); %s", j, err, out)
		})
		t.Logf("firmware status lines seen: %q", seen)
		if j, err := r.svc.GetJob(ctx, "fleet-good"); err != nil || j.Status != serviceclient.JobCompleted || j.DeviceJobStatistics.SucceededCount != n {
			t.Fatalf("job %+v (%v): want completed with %d succeeded", j, err, n)
		}
		st := parseFleetStatus(t, good, r.mustCtl("firmware", "status", "--version", good))
		if want := (fleetStatus{current: n, total: n, counts: map[string]int{"current": n}}); !st.equal(want) {
			t.Errorf("firmware status at the end: %+v, want %+v", st, want)
		}

		recs, err := r.svc.DeviceJobs(ctx, "fleet-good")
		if err != nil || len(recs) != n {
			t.Fatalf("device records: %d, %v", len(recs), err)
		}
		checkPace(t, recs, base, factor, every)
		for i := range n {
			id := fmt.Sprintf("mcu-%d", i+1)
			if fw := r.firmware(id); fw["status"] != "current" || fw["currentVersion"] != good || fw["result"] != "success" || fw["deployment"] != "fleet-good" {
				t.Errorf("%s reported.firmware %v", id, fw)
			}
		}
	})

	t.Run("bad version trips the abort threshold", func(t *testing.T) {
		r.publish(bad, "MCU-1", r.trustedKey, size, false)
		started := r.simCount(`smpsim upload started`)
		// A constant rate of 2 a minute: the first two devices start at
		// once, the rest wait for the next window, and the abort comes first.
		r.mustCtl("firmware", "deploy", "--version", bad, "--model", "MCU-1", "--query", "*", "--job-id", "fleet-bad",
			"--rate", "2/min", "--abort-threshold", "50%", "--abort-min", "2")
		var j *serviceclient.Job
		r.eventually(t, 90*time.Second, "the rollout ends", func() (bool, string) {
			var err error
			j, err = r.svc.GetJob(ctx, "fleet-bad")
			recs, _ := r.svc.DeviceJobs(ctx, "fleet-bad")
			return err == nil && j.Done(), fmt.Sprintf("job %+v (%v); records %+v; mcu-1 %v; mcu-2 %v", j, err, recs, r.firmware("mcu-1"), r.firmware("mcu-2"))
		})
		if j.Status != serviceclient.JobFailed || j.DeviceJobStatistics.FailedCount != n || j.DeviceJobStatistics.CancelledCount != n-2 {
			t.Fatalf("job %+v: want failed, 2 records failed and the rest cancelled", j)
		}
		if out := r.mustCtl("job", "show", "fleet-bad"); !strings.Contains(out, "at or above the abort threshold of 50%") {
			t.Errorf("job show: want the abort's reason:\n%s", out)
		}
		recs, err := r.svc.DeviceJobs(ctx, "fleet-bad")
		if err != nil || len(recs) != n {
			t.Fatalf("device records: %d, %v", len(recs), err)
		}
		var failed, cancelled []string
		for _, d := range recs {
			code := ""
			if d.Error != nil {
				code = d.Error.Code
			}
			switch {
			case d.Status == "failed" && code == "DeviceReportedFailure":
				failed = append(failed, d.DeviceID)
			case d.Status == "cancelled" && code == "JobAborted":
				cancelled = append(cancelled, d.DeviceID)
			default:
				t.Errorf("record %s: status %s, error %+v", d.DeviceID, d.Status, d.Error)
			}
		}
		if len(failed) != 2 || len(cancelled) != n-2 {
			t.Fatalf("failed %v, cancelled %v: want the 2 started devices failed and the other %d cancelled", failed, cancelled, n-2)
		}
		for _, id := range failed {
			if fw := r.firmware(id); fw["status"] != "failed" || fw["result"] != "rolledBack" || fw["currentVersion"] != good || fw["deployment"] != "fleet-bad" {
				t.Errorf("%s reported.firmware %v: want failed, rolledBack, %s current", id, fw, good)
			}
		}
		for _, id := range cancelled {
			tw, err := r.svc.GetTwin(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if v := path(tw.Properties.Desired, "firmware", "version"); v != good {
				t.Errorf("%s desired.firmware.version %v: a device the job never started must not be told", id, v)
			}
			if fw := r.firmware(id); fw["status"] != "current" || fw["currentVersion"] != good {
				t.Errorf("%s reported.firmware %v: want %s current still", id, fw, good)
			}
		}
		if got := r.simCount(`smpsim upload started`) - started; got != 2 {
			t.Errorf("%d uploads started, want 2 (the devices the job started)", got)
		}
		st := parseFleetStatus(t, bad, r.mustCtl("firmware", "status", "--version", bad))
		if want := (fleetStatus{failed: 2, total: 2, counts: map[string]int{"failed: rolledBack": 2}}); !st.equal(want) {
			t.Errorf("firmware status: %+v, want %+v", st, want)
		}
	})
}

// fleetStatus is what `droverctl firmware status` prints: its progress line
// and the devices per status of its table.
type fleetStatus struct {
	current, total, failed, inProgress int
	counts                             map[string]int
}

func (s fleetStatus) equal(o fleetStatus) bool {
	if s.current != o.current || s.total != o.total || s.failed != o.failed || s.inProgress != o.inProgress || len(s.counts) != len(o.counts) {
		return false
	}
	for k, v := range o.counts {
		if s.counts[k] != v {
			return false
		}
	}
	return true
}

var (
	fleetLineRE = regexp.MustCompile(`^firmware (\S+): (\d+)/(\d+) current, (\d+) failed, (\d+) in progress$`)
	// A table row: a status (failures carry their result, "failed: rolledBack") and a count.
	fleetRowRE = regexp.MustCompile(`^(\S.*?)\s+(\d+)$`)
)

// parseFleetStatus reads firmware status output and checks that it adds
// up: the rows sum to the total, and the line's counts are the rows'.
func parseFleetStatus(t *testing.T, version, out string) fleetStatus {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	m := fleetLineRE.FindStringSubmatch(lines[0])
	if m == nil || m[1] != version {
		t.Fatalf("firmware status: first line %q, want the progress of %s:\n%s", lines[0], version, out)
	}
	atoi := func(s string) int { v, _ := strconv.Atoi(s); return v }
	s := fleetStatus{current: atoi(m[2]), total: atoi(m[3]), failed: atoi(m[4]), inProgress: atoi(m[5]), counts: map[string]int{}}
	sum, cur, failed := 0, 0, 0
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "STATUS") {
			continue
		}
		rm := fleetRowRE.FindStringSubmatch(l)
		if rm == nil {
			t.Fatalf("firmware status: row %q:\n%s", l, out)
		}
		k, v := rm[1], atoi(rm[2])
		s.counts[k] = v
		sum += v
		switch {
		case k == "current":
			cur += v
		case k == "failed" || strings.HasPrefix(k, "failed:"):
			failed += v
		}
	}
	if sum != s.total || cur != s.current || failed != s.failed || s.current+s.failed+s.inProgress != s.total {
		t.Fatalf("firmware status does not add up (rows %d, current %d, failed %d):\n%s", sum, cur, failed, out)
	}
	return s
}

// checkPace checks the hub's device records against the rollout's rule:
// within one rollout window (a minute from the first start), the k-th
// device (from 0) may start only once base × factor^⌊s/every⌋ > k, where s
// counts the devices that had succeeded by then (end time at or before
// its start). It also wants the records to show the waves: some device
// started only after another had finished.
func checkPace(t *testing.T, recs []serviceclient.DeviceJob, base int, factor float64, every int) {
	t.Helper()
	type span struct {
		id         string
		start, end time.Time
	}
	var spans []span
	for _, d := range recs {
		s, err1 := time.Parse(time.RFC3339Nano, d.StartTimeUtc)
		e, err2 := time.Parse(time.RFC3339Nano, d.EndTimeUtc)
		if err1 != nil || err2 != nil || e.Before(s) {
			t.Fatalf("record %s: start %q, end %q", d.DeviceID, d.StartTimeUtc, d.EndTimeUtc)
		}
		spans = append(spans, span{d.DeviceID, s, e})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	var timeline []string
	for _, s := range spans {
		timeline = append(timeline, fmt.Sprintf("%s %+.1fs…%+.1fs", s.id, s.start.Sub(spans[0].start).Seconds(), s.end.Sub(spans[0].start).Seconds()))
	}
	t.Logf("device records, from the first start: %s", strings.Join(timeline, ", "))
	rate := func(succeeded int) int { return int(float64(base) * math.Pow(factor, float64(succeeded/every))) }
	first := spans[0].start
	for k, s := range spans {
		if !s.start.Before(first.Add(time.Minute)) {
			break // a new window: the count starts afresh
		}
		succeeded := 0
		for _, o := range spans {
			if !o.end.After(s.start) {
				succeeded++
			}
		}
		if k >= rate(succeeded) {
			t.Errorf("%s started as device %d with %d succeeded: the rate then allowed %d", s.id, k+1, succeeded, rate(succeeded))
		}
	}
	if last := spans[len(spans)-1]; !last.start.After(spans[0].end) {
		t.Errorf("every device started before the first finished: no pacing shows")
	}
}
