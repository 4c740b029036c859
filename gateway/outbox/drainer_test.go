package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a pair of Senders that log what was delivered and signal when
// a number of deliveries was reached.
type recorder struct {
	mu    sync.Mutex
	sent  []Entry
	fail  func(e Entry) error // nil: deliver everything
	want  int
	done  chan struct{}
	fired bool
}

func newRecorder(want int) *recorder { return &recorder{want: want, done: make(chan struct{})} }

func (r *recorder) send(_ context.Context, e Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(e); err != nil {
			return err
		}
	}
	r.sent = append(r.sent, e)
	if len(r.sent) >= r.want && !r.fired {
		r.fired = true
		close(r.done)
	}
	return nil
}

func (r *recorder) entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// runDrainer runs d until the recorder saw its deliveries (or a deadline)
// and then stops it.
func runDrainer(t *testing.T, d *Drainer, r *recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Errorf("drainer delivered %d of %d", len(r.entries()), r.want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("drainer run: %v", err)
	}
}

func newDrainer(t *testing.T, o *Outbox, r *recorder, opts DrainerOptions) *Drainer {
	t.Helper()
	opts.Telemetry, opts.Reported = r.send, r.send
	if opts.MinBackoff == 0 {
		opts.MinBackoff = time.Millisecond
	}
	d, err := NewDrainer(o, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkFIFO fails unless each identity's telemetry went out in accept order
// with no gaps and no repeats.
func checkFIFO(t *testing.T, sent []Entry, perIdentity int) {
	t.Helper()
	seen := map[string][]string{}
	for _, e := range sent {
		if e.Kind == Telemetry {
			seen[e.Identity] = append(seen[e.Identity], string(e.Body))
		}
	}
	for id, got := range seen {
		var want []string
		for i := range perIdentity {
			want = append(want, fmt.Sprintf("%s-%03d", id, i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("identity %s sent %v, want %v", id, got, want)
		}
	}
}

func fill(t *testing.T, o *Outbox, ids []string, each int) {
	t.Helper()
	for i := range each {
		for _, id := range ids {
			accept(t, o, tel(id, fmt.Sprintf("%s-%03d", id, i)))
		}
	}
}

func TestDrainerOrderAndAck(t *testing.T) {
	o, _ := openTemp(t, Options{})
	ids := []string{"a", "b", "c"}
	fill(t, o, ids, 50)
	for _, id := range ids {
		accept(t, o, rep(id, `{"points":{"t":1}}`))
		accept(t, o, rep(id, `{"points":{"t":2}}`)) // merged
	}
	r := newRecorder(3*50 + 3)
	d := newDrainer(t, o, r, DrainerOptions{Batch: 7})
	runDrainer(t, d, r)
	sent := r.entries()
	checkFIFO(t, sent, 50)
	// Each identity's (merged) reported state went out before its telemetry backlog.
	for _, id := range ids {
		i := slices.IndexFunc(sent, func(e Entry) bool { return e.Identity == id })
		if sent[i].Kind != Reported || string(sent[i].Body) != `{"points":{"t":2}}` {
			t.Fatalf("identity %s: first sent %s %s, want the merged reported patch", id, sent[i].Kind, sent[i].Body)
		}
	}
	if s := stats(t, o); s.Depth != 0 || s.Acked != 153 {
		t.Fatalf("outbox after drain %+v", s)
	}
	if ds := d.Stats(); ds.Sent != 153 || ds.Failures != 0 {
		t.Fatalf("drainer stats %+v", ds)
	}
}

func TestDrainerFailureKeepsOrder(t *testing.T) {
	o, _ := openTemp(t, Options{})
	fill(t, o, []string{"a", "b"}, 40)
	var failures atomic.Int64
	r := newRecorder(80)
	r.fail = func(e Entry) error {
		// Every 9th delivery attempt of a fails (as a dropped connection does).
		if e.Identity == "a" && failures.Add(1)%9 == 0 {
			return errors.New("not connected")
		}
		return nil
	}
	d := newDrainer(t, o, r, DrainerOptions{Batch: 5})
	runDrainer(t, d, r)
	checkFIFO(t, r.entries(), 40)
	if d.Stats().Failures == 0 {
		t.Fatal("no failure was injected")
	}
	if s := stats(t, o); s.Depth != 0 {
		t.Fatalf("left %d entries", s.Depth)
	}
}

func TestDrainerUndeliverable(t *testing.T) {
	o, _ := openTemp(t, Options{})
	accept(t, o, rep("a", `{"bad":1}`))
	accept(t, o, tel("a", "a-000"))
	r := newRecorder(1)
	r.fail = func(e Entry) error {
		if e.Kind == Reported {
			return fmt.Errorf("hub answered 400: %w", ErrUndeliverable)
		}
		return nil
	}
	d := newDrainer(t, o, r, DrainerOptions{})
	runDrainer(t, d, r)
	s := stats(t, o)
	if s.Depth != 0 || s.DroppedRejected != 1 || s.Acked != 1 {
		t.Fatalf("stats %+v: want the refused patch dropped and counted", s)
	}
}

// An identity with live data is not starved behind another's backlog.
func TestDrainerFairness(t *testing.T) {
	o, _ := openTemp(t, Options{})
	fill(t, o, []string{"big"}, 600)
	fill(t, o, []string{"live"}, 3)
	r := newRecorder(603)
	d := newDrainer(t, o, r, DrainerOptions{Rate: 2000, Burst: 1, Workers: 4, Batch: 16})
	runDrainer(t, d, r)
	sent := r.entries()
	last := slices.IndexFunc(sent, func(e Entry) bool { return string(e.Body) == "live-002" })
	if last < 0 || last > 64 {
		t.Fatalf("live's last message went out at position %d of %d, want within the first rounds", last, len(sent))
	}
	t.Logf("live's last message went out at position %d", last)
	var big []string
	for _, e := range sent {
		if e.Identity == "big" {
			big = append(big, string(e.Body))
		}
	}
	if !slices.IsSorted(big) || len(big) != 600 {
		t.Fatalf("big sent out of order or incomplete (%d)", len(big))
	}
}

func TestDrainerRate(t *testing.T) {
	o, _ := openTemp(t, Options{})
	fill(t, o, []string{"a", "b", "c", "d"}, 25)
	r := newRecorder(100)
	d := newDrainer(t, o, r, DrainerOptions{Rate: 400, Burst: 1})
	start := time.Now()
	runDrainer(t, d, r)
	// 100 messages at 400/s with a bucket of 1 take at least ~247 ms.
	if el := time.Since(start); el < 240*time.Millisecond {
		t.Fatalf("100 messages at 400/s took %v: rate not enforced", el)
	}
}

func TestDrainerReady(t *testing.T) {
	o, _ := openTemp(t, Options{})
	fill(t, o, []string{"up", "down"}, 5)
	var downReady atomic.Bool
	r := newRecorder(5)
	d := newDrainer(t, o, r, DrainerOptions{Ready: func(id string) bool { return id == "up" || downReady.Load() }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-r.done
	if got := r.entries(); slices.ContainsFunc(got, func(e Entry) bool { return e.Identity == "down" }) {
		t.Fatalf("sent for an identity that was not ready: %v", bodies(got))
	}
	r.mu.Lock()
	r.want, r.fired, r.done = 10, false, make(chan struct{})
	wait := r.done
	r.mu.Unlock()
	downReady.Store(true)
	d.Wake()
	select {
	case <-wait:
	case <-time.After(10 * time.Second):
		t.Fatal("identity not drained after Wake")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(mustKind(t, r.entries(), Telemetry)); n != 10 {
		t.Fatalf("sent %d", n)
	}
}

func TestNewDrainerRefusesBadOptions(t *testing.T) {
	o, _ := openTemp(t, Options{})
	nop := func(context.Context, Entry) error { return nil }
	for name, opts := range map[string]DrainerOptions{
		"no senders":    {},
		"no reported":   {Telemetry: nop},
		"negative rate": {Telemetry: nop, Reported: nop, Rate: -1},
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if _, err := NewDrainer(o, opts); err == nil {
				t.Fatalf("NewDrainer(%s) succeeded", name)
			}
		})
	}
}
