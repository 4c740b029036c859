package jobs

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/store"
)

var base = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPacerConstant(t *testing.T) {
	p := newPacer(&store.JobRollout{Type: store.RolloutConstant, DevicesPerMinute: 2})
	steps := []struct {
		now  time.Duration // offset of now
		want time.Duration // offset of next
	}{
		{0, 0}, {0, 0}, // two start in the first window
		{10 * time.Second, time.Minute}, // the third waits for the next window
		{time.Minute, time.Minute},      // the window has closed
		{70 * time.Second, 70 * time.Second},
		{80 * time.Second, 2 * time.Minute},
	}
	for i, s := range steps {
		next := p.next(base.Add(s.now), 0)
		if !next.Equal(base.Add(s.want)) {
			t.Fatalf("step %d: next(%v) = %v, want %v", i, s.now, next.Sub(base), s.want)
		}
		if next.Equal(base.Add(s.now)) {
			p.start(next)
		}
	}
}

func TestPacerExponentialRate(t *testing.T) {
	p := newPacer(&store.JobRollout{Type: store.RolloutExponential, BaseRatePerMinute: 2, IncrementFactor: 1.5,
		DevicesPerMinute: 10, RateIncreaseCriteria: &store.JobRateIncrease{NumberOfSucceeded: 3}})
	cases := []struct{ succeeded, want int }{
		{0, 2}, {2, 2}, {3, 3}, {6, 4}, {9, 6}, {12, 10}, {1000000, 10},
	}
	for _, c := range cases {
		if got := p.rate(c.succeeded); got != c.want {
			t.Errorf("rate(%d) = %d, want %d", c.succeeded, got, c.want)
		}
	}
	uncapped := newPacer(&store.JobRollout{Type: store.RolloutExponential, BaseRatePerMinute: 1, IncrementFactor: 5,
		RateIncreaseCriteria: &store.JobRateIncrease{NumberOfSucceeded: 1}})
	if got := uncapped.rate(1 << 30); got <= 0 {
		t.Fatalf("uncapped rate overflowed: %d", got)
	}
	if unlimited := newPacer(nil); !unlimited.next(base, 0).Equal(base) {
		t.Fatal("no rollout must never wait")
	}
}

func TestShouldAbort(t *testing.T) {
	a := &store.JobAbort{FailureThresholdPercent: 50, MinDevices: 4}
	cases := []struct {
		name string
		t    tally
		want bool
	}{
		{"nothing done", tally{}, false},
		{"below minDevices", tally{failed: 3}, false},
		{"at threshold", tally{succeeded: 2, failed: 2}, true},
		{"below threshold", tally{succeeded: 3, failed: 2}, false},
		{"all failed", tally{failed: 10}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, why := shouldAbort(a, c.t); got != c.want || got == (why == "") {
				t.Fatalf("shouldAbort(%+v) = %v %q", c.t, got, why)
			}
		})
	}
	if got, _ := shouldAbort(nil, tally{failed: 5}); got {
		t.Fatal("no abort criteria must never abort")
	}
}

func TestShouldRetry(t *testing.T) {
	r := &store.JobRetry{MaxAttempts: 3, On: []string{store.RetryOnTimeout}}
	cases := []struct {
		kind    failKind
		attempt int
		want    bool
	}{
		{failTimeout, 1, true}, {failTimeout, 2, true}, {failTimeout, 3, false},
		{failFailed, 1, false}, {failFinal, 1, false}, {failNone, 1, false},
	}
	for _, c := range cases {
		if got := shouldRetry(r, c.kind, c.attempt); got != c.want {
			t.Errorf("shouldRetry(kind %d, attempt %d) = %v", c.kind, c.attempt, got)
		}
	}
	if shouldRetry(nil, failFailed, 1) {
		t.Error("no retry policy must never retry")
	}
}

func TestContains(t *testing.T) {
	doc := obj(t, `{"a":1,"b":{"c":"x","d":[1,2]},"e":null}`)
	cases := []struct {
		patch string
		want  bool
	}{
		{`{}`, true},
		{`{"a":1}`, true},
		{`{"a":2}`, false},
		{`{"b":{"c":"x"}}`, true},
		{`{"b":{"d":[1,2]}}`, true},
		{`{"b":{"d":[2,1]}}`, false},
		{`{"gone":null}`, true},
		{`{"a":null}`, false},
		{`{"b":{"c":{"deep":1}}}`, false},
		{`{"new":1}`, false},
	}
	for _, c := range cases {
		if got := contains(doc, obj(t, c.patch)); got != c.want {
			t.Errorf("contains(doc, %s) = %v, want %v", c.patch, got, c.want)
		}
	}
}

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := twin.DecodeObject([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDecodePatch(t *testing.T) {
	p := &store.JobTwinPatch{Tags: json.RawMessage(`{"site":"a"}`), Properties: &store.JobTwinProperties{Desired: json.RawMessage(`{"fw":"2","$version":4}`)}}
	tags, desired, err := decodePatch(p)
	if err != nil || tags["site"] != "a" || desired["fw"] != "2" || desired["$version"] != nil {
		t.Fatalf("decodePatch = %v %v %v", tags, desired, err)
	}
	for _, bad := range []*store.JobTwinPatch{nil, {Tags: json.RawMessage(`[1]`)}, {Properties: &store.JobTwinProperties{Desired: json.RawMessage(`{`)}}} {
		if _, _, err := decodePatch(bad); err == nil {
			t.Errorf("decodePatch(%+v) accepted", bad)
		}
	}
}
