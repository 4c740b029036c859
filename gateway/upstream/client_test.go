package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/hubtest"
	"github.com/drover-iot/drover/localhub/store"
)

func TestTwinGetAndPatchReported(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	c := start(t, hubOptions(t, env, "gw-1", rec))
	ctx := await(t, rec.connected, 10*time.Second, "Connected")
	if !c.Connected() {
		t.Fatal("Connected() = false after Handler.Connected")
	}

	desired, reported, err := c.GetTwin(ctx)
	if err != nil {
		t.Fatalf("GetTwin: %v", err)
	}
	v0 := num(t, reported["$version"])
	if _, ok := desired["$version"]; !ok {
		t.Fatalf("desired without $version: %v", desired)
	}

	v1, err := c.PatchReported(ctx, map[string]any{"health": map[string]any{"ok": true, "load": 0.5}})
	if err != nil {
		t.Fatalf("PatchReported: %v", err)
	}
	if v1 <= v0 {
		t.Fatalf("reported $version %d after patch, was %d", v1, v0)
	}
	v2, err := c.PatchReported(ctx, map[string]any{"health": map[string]any{"load": nil}})
	if err != nil || v2 != v1+1 {
		t.Fatalf("second PatchReported = %d, %v; want %d", v2, err, v1+1)
	}
	_, reported, err = c.GetTwin(ctx)
	if err != nil {
		t.Fatalf("GetTwin: %v", err)
	}
	if got := num(t, reported["$version"]); got != v2 {
		t.Fatalf("GET reported $version %d, PatchReported said %d", got, v2)
	}
	h, _ := reported["health"].(map[string]any)
	if h["ok"] != true || h["load"] != nil {
		t.Fatalf("reported.health = %v, want ok:true without load", reported["health"])
	}

	// A patch the hub refuses comes back as a StatusError with the body's errorCode.
	deep := map[string]any{}
	for cur, i := deep, 0; i < 12; i++ {
		next := map[string]any{}
		cur["k"] = next
		cur = next
	}
	_, err = c.PatchReported(ctx, deep)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 400 || se.Code == 0 || se.Message == "" {
		t.Fatalf("too deep patch: %v, want a StatusError 400 with code and message", err)
	}
}

func TestDesiredPatchesInOrder(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	start(t, hubOptions(t, env, "gw-1", rec))
	await(t, rec.connected, 10*time.Second, "Connected")
	svc := service(t, env)

	const n = 30
	ctx := context.Background()
	var last int64
	for i := range n {
		tw, err := svc.UpdateTwin(ctx, "gw-1", serviceclient.Twin{Properties: serviceclient.TwinProperties{
			Desired: map[string]any{"config": map[string]any{"seq": i, "name": fmt.Sprintf("p%d", i)}},
		}}, "")
		if err != nil {
			t.Fatalf("UpdateTwin %d: %v", i, err)
		}
		last = int64(tw.Properties.Desired["$version"].(float64))
	}
	var prev int64
	for i := range n {
		ev := await(t, rec.desired, 10*time.Second, fmt.Sprintf("desired patch %d", i))
		if ev.version <= prev {
			t.Fatalf("patch %d has version %d after %d", i, ev.version, prev)
		}
		prev = ev.version
		if _, ok := ev.patch["$version"]; ok {
			t.Fatalf("patch %d still carries $version: %v", i, ev.patch)
		}
		cfg, _ := ev.patch["config"].(map[string]any)
		if cfg == nil || num(t, cfg["seq"]) != int64(i) || cfg["name"] != fmt.Sprintf("p%d", i) {
			t.Fatalf("patch %d = %v", i, ev.patch)
		}
	}
	if prev != last {
		t.Fatalf("last notified version %d, service says %d", prev, last)
	}
}

func TestMethodRoundTrip(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	rec.method = func(ctx context.Context, name string, payload json.RawMessage) (int, any) {
		switch name {
		case "boom":
			panic("handler bug")
		case "bad":
			return 200, func() {} // cannot be encoded
		case "missing":
			return 404, map[string]string{"message": "no such point"}
		}
		return 200, map[string]any{"method": name, "got": payload}
	}
	start(t, hubOptions(t, env, "gw-1", rec))
	await(t, rec.connected, 10*time.Second, "Connected")
	svc := service(t, env)
	ctx := context.Background()

	cases := []struct {
		name    string
		method  string
		payload string
		status  int
		want    string
	}{
		{"echo", "reboot", `{"delay":3}`, 200, `{"got":{"delay":3},"method":"reboot"}`},
		{"no payload", "identify", ``, 200, `{"got":null,"method":"identify"}`},
		{"handler status", "missing", `1`, 404, `{"message":"no such point"}`},
		{"handler panic", "boom", `{}`, 500, `{"message":"method handler failed"}`},
		{"unencodable response", "bad", `{}`, 500, `{"message":"method response cannot be encoded"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := serviceclient.MethodRequest{MethodName: tc.method, ResponseTimeoutInSeconds: 10}
			if tc.payload != "" {
				req.Payload = json.RawMessage(tc.payload)
			}
			r, err := svc.InvokeMethod(ctx, "gw-1", req)
			if err != nil {
				t.Fatalf("InvokeMethod %s: %v", tc.method, err)
			}
			got, _ := json.Marshal(r.Payload)
			if r.Status != tc.status || string(got) != tc.want {
				t.Fatalf("InvokeMethod %s = %d %s, want %d %s", tc.method, r.Status, got, tc.status, tc.want)
			}
		})
	}
}

func TestMethodsDoNotBlockTwinTraffic(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	release := make(chan struct{})
	var client *Client
	rec.method = func(ctx context.Context, name string, _ json.RawMessage) (int, any) {
		if name == "twin" { // a handler may use the client itself
			_, rep, err := client.GetTwin(ctx)
			if err != nil {
				return 500, err.Error()
			}
			return 200, rep["$version"]
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return 200, nil
	}
	o := hubOptions(t, env, "gw-1", rec)
	o.MethodWorkers = 2
	client = start(t, o)
	ctx := await(t, rec.connected, 10*time.Second, "Connected")
	svc := service(t, env)

	// Two slow calls occupy both workers; a twin GET still gets through.
	type res struct {
		r   *serviceclient.MethodResponse
		err error
	}
	slow := make(chan res, 2)
	for range 2 {
		go func() {
			r, err := svc.InvokeMethod(context.Background(), "gw-1", serviceclient.MethodRequest{MethodName: "slow", ResponseTimeoutInSeconds: 20})
			slow <- res{r, err}
		}()
	}
	if _, _, err := client.GetTwin(ctx); err != nil {
		t.Fatalf("GetTwin while methods run: %v", err)
	}
	close(release)
	for range 2 {
		r := await(t, slow, 20*time.Second, "slow method result")
		if r.err != nil || r.r.Status != 200 {
			t.Fatalf("slow method: %+v %v", r.r, r.err)
		}
	}
	r, err := svc.InvokeMethod(context.Background(), "gw-1", serviceclient.MethodRequest{MethodName: "twin", ResponseTimeoutInSeconds: 10})
	if err != nil || r.Status != 200 {
		t.Fatalf("method using GetTwin: %+v %v", r, err)
	}
}

func TestTelemetryWithProperties(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	c := start(t, hubOptions(t, env, "gw-1", rec))
	ctx := await(t, rec.connected, 10*time.Second, "Connected")
	before := c.Stats()
	props := iothubtopic.Properties{
		{Name: iothubtopic.SysMessageID, Value: "m-1"},
		{Name: iothubtopic.SysContentType, Value: "application/json"},
		{Name: iothubtopic.SysContentEncoding, Value: "utf-8"},
		{Name: "point", Value: "temp/1 & more"},
	}
	body := []byte(`{"temperature":21.5}`)
	if err := c.SendTelemetry(ctx, body, props); err != nil {
		t.Fatalf("SendTelemetry: %v", err)
	}
	msgs, err := env.Hub.Store().TelemetryAfter(ctx, "gw-1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("hub has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.MessageID != "m-1" || m.ContentType != "application/json" || m.ContentEncoding != "utf-8" ||
		m.Properties["point"] != "temp/1 & more" || string(m.Body) != string(body) {
		t.Fatalf("stored message %+v", m)
	}
	s := c.Stats()
	if s.Published != before.Published+1 || s.Acked != before.Acked+1 {
		t.Fatalf("stats %+v after one send (before %+v)", s, before)
	}
	big := make([]byte, maxTelemetry)
	if err := c.SendTelemetry(ctx, big, nil); err == nil || isNotConnected(err) {
		t.Fatalf("oversized SendTelemetry: %v", err)
	}
}

func TestOfflineCallsFailFast(t *testing.T) {
	c, err := New(Options{DeviceID: "d1", HostName: "localhost", Address: "127.0.0.1:1", Key: "a2V5"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, _, err := c.GetTwin(ctx); !isNotConnected(err) {
		t.Fatalf("GetTwin: %v", err)
	}
	if _, err := c.PatchReported(ctx, nil); !isNotConnected(err) {
		t.Fatalf("PatchReported: %v", err)
	}
	if err := c.SendTelemetry(ctx, nil, nil); !isNotConnected(err) {
		t.Fatalf("SendTelemetry: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("offline calls took %s", el)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := c.WaitConnected(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitConnected: %v", err)
	}
}

func TestTokenRenewal(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	o := hubOptions(t, env, "gw-1", rec)
	o.TokenTTL = 3 * time.Second
	logs := &syncBuffer{}
	o.Logger = testLogger(logs)
	c := start(t, o)

	deadline := time.After(8 * time.Second)
	connects := 0
	var downAt time.Time
	for connects < 2 {
		select {
		case ctx := <-rec.connected:
			connects++
			// The session is gone only for the reconnect itself: a renewal
			// reconnects at once, without backoff (a few ms when idle; the
			// bound leaves room for a loaded race-enabled run).
			if gap := time.Since(downAt); !downAt.IsZero() && gap > 5*time.Second {
				t.Fatalf("renewal reconnect took %s", gap)
			}
			// The session works between renewals.
			if _, _, err := c.GetTwin(ctx); err != nil && !isNotConnected(err) {
				t.Fatalf("GetTwin after connect %d: %v", connects, err)
			}
		case err := <-rec.disconnected:
			if !errors.Is(err, ErrTokenRenewal) {
				t.Fatalf("disconnected by %v, want only renewals", err)
			}
			downAt = time.Now()
		case <-deadline:
			t.Fatalf("%d connects within 8s, want 2 (stats %+v)", connects, c.Stats())
		}
	}
	s := c.Stats()
	if s.ConnectFailures != 0 {
		t.Fatalf("hub rejected a connect: %+v", s)
	}
	if s.LastError != "" {
		t.Fatalf("renewal recorded an error: %+v", s)
	}
	if !s.TokenExpiry.After(time.Now()) {
		t.Fatalf("token expiry %s is not in the future", s.TokenExpiry)
	}
	for _, secret := range []string{"SharedAccessSignature", "sig=", o.Key} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log shows %q:\n%s", secret, logs.String())
		}
	}
}

func TestHubRestart(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	c := start(t, hubOptions(t, env, "gw-1", rec))
	ctx := await(t, rec.connected, 10*time.Second, "Connected")
	if _, err := c.PatchReported(ctx, map[string]any{"before": 1}); err != nil {
		t.Fatal(err)
	}

	env.Stop(t)
	if err := await(t, rec.disconnected, 10*time.Second, "Disconnected"); err == nil {
		t.Fatal("Disconnected(nil) after the hub stopped")
	}
	if _, _, err := c.GetTwin(context.Background()); !isNotConnected(err) {
		t.Fatalf("GetTwin with the hub down: %v", err)
	}
	// Let the client fail at least once against the closed port.
	eventually(t, 10*time.Second, "a failed reconnect", func() bool { return c.Stats().ConnectFailures > 0 })

	env2 := hubtest.StartWith(t, hubtest.Options{DataDir: env.DataDir, MQTTAddr: env.MQTTAddr, HTTPSAddr: env.HTTPSAddr})
	if env2.MQTTAddr != env.MQTTAddr {
		t.Fatalf("new hub on %s, old on %s", env2.MQTTAddr, env.MQTTAddr)
	}
	ctx = await(t, rec.connected, 15*time.Second, "Connected after the restart")
	_, reported, err := c.GetTwin(ctx)
	if err != nil {
		t.Fatalf("GetTwin after restart: %v", err)
	}
	if num(t, reported["before"]) != 1 {
		t.Fatalf("reported after restart: %v", reported)
	}
	if s := c.Stats(); s.Connects != 2 || s.Disconnects != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDisabledIdentity(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	logs := &syncBuffer{}
	o := hubOptions(t, env, "child-7", rec)
	o.Logger = testLogger(logs)
	st := env.Hub.Store()
	if _, _, err := st.UpdateDevice(context.Background(), store.Device{ID: "child-7", Status: "disabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	c := start(t, o)
	eventually(t, 10*time.Second, "two refused connects", func() bool { return c.Stats().ConnectFailures >= 2 })
	if c.Connected() {
		t.Fatal("connected while disabled")
	}
	if s := c.Stats(); !strings.Contains(s.LastError, ErrUnauthorized.Error()) {
		t.Fatalf("last error %q does not say unauthorized", s.LastError)
	}
	if os.Getenv("DROVER_TEST_LOG") == "" {
		mustContain(t, logs.String(), "level=WARN", "upstream connect refused", "device=child-7")
	}
	if _, _, err := st.UpdateDevice(context.Background(), store.Device{ID: "child-7", Status: "enabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	await(t, rec.connected, 10*time.Second, "Connected after enabling")
}

func TestRevocationDropsAndRetries(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	c := start(t, hubOptions(t, env, "child-8", rec))
	await(t, rec.connected, 10*time.Second, "Connected")
	svc := service(t, env)
	d, err := svc.GetDevice(context.Background(), "child-8")
	if err != nil {
		t.Fatal(err)
	}
	d.Status = serviceclient.StatusDisabled
	if _, err := svc.UpdateDevice(context.Background(), *d, ""); err != nil {
		t.Fatal(err)
	}
	if err := await(t, rec.disconnected, 10*time.Second, "Disconnected after disabling"); err == nil {
		t.Fatal("Disconnected(nil)")
	}
	eventually(t, 10*time.Second, "a refused reconnect", func() bool { return c.Stats().ConnectFailures > 0 })
	d.Status = serviceclient.StatusEnabled
	if _, err := svc.UpdateDevice(context.Background(), *d, ""); err != nil {
		t.Fatal(err)
	}
	await(t, rec.connected, 10*time.Second, "Connected after re-enabling")
}

func TestProxyReset(t *testing.T) {
	env := hubtest.Start(t)
	p := startProxy(t, env.MQTTAddr)
	rec := newRecorder()
	o := hubOptions(t, env, "gw-1", rec)
	o.Address = p.addr()
	c := start(t, o)
	await(t, rec.connected, 10*time.Second, "Connected")

	p.reset()
	if err := await(t, rec.disconnected, 10*time.Second, "Disconnected after reset"); err == nil {
		t.Fatal("Disconnected(nil) after a reset")
	}
	ctx := await(t, rec.connected, 10*time.Second, "Connected after reset")
	if _, _, err := c.GetTwin(ctx); err != nil {
		t.Fatalf("GetTwin after reconnect: %v", err)
	}

	// A GET waiting for its answer when the link is cut fails at once.
	p.stall()
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _, err := c.GetTwin(ctx)
		res <- err
	}()
	eventually(t, 5*time.Second, "the GET to be pending", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending) == 1
	})
	cut := time.Now()
	p.reset()
	if err := await(t, res, 5*time.Second, "GetTwin result"); !isNotConnected(err) {
		t.Fatalf("GetTwin across a reset: %v, want ErrNotConnected", err)
	}
	if el := time.Since(cut); el > 2*time.Second {
		t.Fatalf("pending GetTwin failed %s after the reset", el)
	}
	await(t, rec.connected, 10*time.Second, "Connected after the second reset")
}

func TestProxyStallDetectedByKeepAlive(t *testing.T) {
	env := hubtest.Start(t)
	p := startProxy(t, env.MQTTAddr)
	rec := newRecorder()
	o := hubOptions(t, env, "gw-1", rec)
	o.Address = p.addr()
	o.KeepAlive = time.Second
	c := start(t, o)
	await(t, rec.connected, 10*time.Second, "Connected")

	p.stall()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := c.GetTwin(ctx) // swallowed by the stalled link
	if !isNotConnected(err) {
		t.Fatalf("GetTwin across a stall: %v, want ErrNotConnected", err)
	}
	if el := time.Since(began); el > 8*time.Second {
		t.Fatalf("stall noticed after %s", el)
	}
	if err := await(t, rec.disconnected, 5*time.Second, "Disconnected after stall"); err == nil {
		t.Fatal("Disconnected(nil) after a stall")
	}
	ctx2 := await(t, rec.connected, 10*time.Second, "Connected after stall")
	if _, _, err := c.GetTwin(ctx2); err != nil {
		t.Fatalf("GetTwin after reconnect: %v", err)
	}
}

func TestRequestTimeout(t *testing.T) {
	env := hubtest.Start(t)
	p := startProxy(t, env.MQTTAddr)
	rec := newRecorder()
	o := hubOptions(t, env, "gw-1", rec)
	o.Address = p.addr()
	c := start(t, o)
	await(t, rec.connected, 10*time.Second, "Connected")
	p.stall() // keep-alive 60s: nothing notices for a while
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err := c.GetTwin(ctx)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetTwin on a stalled link: %v, want ErrTimeout", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.SendTelemetry(ctx, []byte("x"), nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("SendTelemetry on a stalled link: %v, want ErrTimeout", err)
	}
}

func TestRunStopsCleanly(t *testing.T) {
	env := hubtest.Start(t)
	rec := newRecorder()
	c, err := New(hubOptions(t, env, "gw-1", rec))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	await(t, rec.connected, 10*time.Second, "Connected")
	if err := c.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Run: %v", err)
	}
	cancel()
	if err := await(t, done, 10*time.Second, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := await(t, rec.disconnected, time.Second, "Disconnected"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Disconnected(%v), want context.Canceled", err)
	}
	if c.Connected() {
		t.Fatal("still connected after Run returned")
	}
	if _, _, err := c.GetTwin(context.Background()); !isNotConnected(err) {
		t.Fatalf("GetTwin after Run: %v", err)
	}
}

// orderedHandler reads the twin in Connected, as the gateway does, and
// records every Handler call in order.
type orderedHandler struct {
	c       **Client
	release chan struct{}
	calls   chan string
}

func (h *orderedHandler) Connected(ctx context.Context) {
	desired, _, err := (*h.c).GetTwin(ctx)
	if err != nil {
		h.calls <- "connected: " + err.Error()
		return
	}
	h.calls <- fmt.Sprintf("connected: desired $version %v", desired["$version"])
	<-h.release // patches sent meanwhile must wait for this call to return
}
func (h *orderedHandler) Disconnected(err error) { h.calls <- "disconnected" }
func (h *orderedHandler) DesiredPatch(patch map[string]any, version int64) {
	h.calls <- fmt.Sprintf("desired %d", version)
}
func (h *orderedHandler) Method(context.Context, string, json.RawMessage) (int, any) { return 200, nil }

func TestConnectedBeforeDesired(t *testing.T) {
	env := hubtest.Start(t)
	var c *Client
	h := &orderedHandler{c: &c, release: make(chan struct{}), calls: make(chan string, 10)}
	o := hubOptions(t, env, "gw-1", h)
	var err error
	if c, err = New(o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		await(t, done, 10*time.Second, "Run to return")
	}()

	if got := await(t, h.calls, 10*time.Second, "Connected"); got != "connected: desired $version 1" {
		t.Fatalf("first call %q", got)
	}
	svc := service(t, env)
	tw, err := svc.UpdateTwin(context.Background(), "gw-1", serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"a": 1}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-h.calls:
		t.Fatalf("%q delivered while Connected was still running", got)
	case <-time.After(200 * time.Millisecond): // absence of an event: nothing to await
	}
	close(h.release)
	want := fmt.Sprintf("desired %v", tw.Properties.Desired["$version"])
	if got := await(t, h.calls, 10*time.Second, "DesiredPatch"); got != want {
		t.Fatalf("after Connected: %q, want %q", got, want)
	}
}
