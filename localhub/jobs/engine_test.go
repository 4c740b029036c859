package jobs

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/localhub/service"
	"github.com/drover-iot/drover/localhub/store"
)

// fakeDevices answers method calls from a function; it records desired notifications.
type fakeDevices struct {
	mu      sync.Mutex
	invoke  func(ctx context.Context, id string) (int, json.RawMessage, error)
	started chan string
	desired map[string]int
}

func (f *fakeDevices) InvokeMethod(ctx context.Context, id, _ string, _ json.RawMessage, _, _ time.Duration) (int, json.RawMessage, error) {
	if f.started != nil {
		f.started <- id
	}
	return f.invoke(ctx, id)
}

func (f *fakeDevices) DesiredChanged(id string, _ map[string]any, _ int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.desired == nil {
		f.desired = map[string]int{}
	}
	f.desired[id]++
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestEngineStopMidCall stops the engine while method calls hang: the calls
// are abandoned and recorded as Interrupted, the job stays running, a new
// engine on the same database finishes it without calling those devices
// again, and no goroutine is left behind.
func TestEngineStopMidCall(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "hub.db")
	st := openStore(t, path)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := st.CreateDevice(t.Context(), store.Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	hang := &fakeDevices{started: make(chan string, 3), invoke: func(ctx context.Context, _ string) (int, json.RawMessage, error) {
		<-ctx.Done()
		return 0, nil, ctx.Err()
	}}
	clk := clock.NewManual(base)
	e := New(Options{Store: st, Devices: hang, Clock: clk, Workers: 2})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	job := store.Job{ID: "j", Type: store.JobDeviceMethod, Spec: store.JobSpec{QueryCondition: "*", MaxExecutionTimeInSeconds: 3600,
		CloudToDeviceMethod: &store.JobMethod{MethodName: "m", ResponseTimeoutInSeconds: 30}}}
	if _, err := e.CreateJob(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	<-hang.started
	<-hang.started // two workers busy, the third device waits
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	j, err := st.GetJob(t.Context(), "j")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != store.JobRunning || j.Stats.FailedCount != 2 || j.Stats.PendingCount != 1 {
		t.Fatalf("after stop: %s %+v", j.Status, j.Stats)
	}
	recs, err := st.JobDevices(t.Context(), "j", store.DeviceJobFailed, "", 10)
	if err != nil || len(recs) != 2 || recs[0].Error.Code != "Interrupted" {
		t.Fatalf("interrupted records %+v %v", recs, err)
	}

	ok := &fakeDevices{started: make(chan string, 3), invoke: func(context.Context, string) (int, json.RawMessage, error) {
		return 200, json.RawMessage(`{}`), nil
	}}
	e2 := New(Options{Store: st, Devices: ok, Clock: clk})
	ctx2, cancel2 := context.WithCancel(t.Context())
	done2 := make(chan error, 1)
	go func() { done2 <- e2.Run(ctx2) }()
	if id := <-ok.started; id != "c" {
		t.Fatalf("resumed job called %s", id)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if j, _ = st.GetJob(t.Context(), "j"); store.JobTerminal(j.Status) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline: the store has no change events
	}
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	if j.Status != store.JobCompleted || j.Stats.SucceededCount != 1 || j.Stats.FailedCount != 2 || len(ok.started) != 0 {
		t.Fatalf("after resume: %s %+v, extra calls %d", j.Status, j.Stats, len(ok.started))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestClassify maps method failures to retry kinds and codes.
func TestClassify(t *testing.T) {
	cases := []struct {
		name  string
		cause error
		err   error
		kind  failKind
		code  string
	}{
		{"not online", nil, service.ErrDeviceNotOnline, failFailed, "DeviceNotOnline"},
		{"response timeout", nil, service.ErrMethodTimeout, failTimeout, "GatewayTimeout"},
		{"bad response", nil, service.ErrBadResponse, failFailed, "BadDeviceResponse"},
		{"device timeout", errDeviceTimeout, context.Canceled, failTimeout, "DeviceTimeout"},
		{"job timeout", errJobTimeout, context.Canceled, failFinal, "JobTimeout"},
		{"hub stopped", errHubStopped, context.Canceled, failFinal, "Interrupted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(t.Context())
			if c.cause != nil {
				cancel(c.cause)
			} else {
				defer cancel(nil)
			}
			if kind, code, _ := classify(ctx, c.err); kind != c.kind || code != c.code {
				t.Fatalf("classify = %d %s, want %d %s", kind, code, c.kind, c.code)
			}
		})
	}
}
