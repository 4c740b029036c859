package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseUsername(t *testing.T) {
	tests := []struct {
		in      string
		want    username
		wantErr bool
	}{
		{in: "hub.test/dev1/?api-version=2021-04-12", want: username{host: "hub.test", device: "dev1"}},
		{in: "hub.test/dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.0&model-id=dtmi%3Ax%3By", want: username{host: "hub.test", device: "dev1"}},
		{in: "hub.test/dev1/", want: username{host: "hub.test", device: "dev1"}},
		{in: "hub.test/dev1", want: username{host: "hub.test", device: "dev1"}},
		{in: "hub.test:8883/dev1/?api-version=1", want: username{host: "hub.test:8883", device: "dev1"}},
		{in: "hub.test/dev1/mod1/?api-version=1", want: username{host: "hub.test", device: "dev1", module: "mod1"}},
		{in: "", wantErr: true},
		{in: "hub.test", wantErr: true},
		{in: "hub.test/", wantErr: true},
		{in: "/dev1/", wantErr: true},
		{in: "hub.test//?a=b", wantErr: true},
		{in: "a/b/c/d/", wantErr: true},
		{in: "hub.test/dev1//", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseUsername(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseUsername(%q) = %+v, want error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseUsername(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestSameHost(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"hub.test", "hub.test", true}, {"HUB.test", "hub.TEST", true}, {"hub.test:8883", "hub.test", true},
		{"hub.test", "hub.test:8883", true}, {"hub.test", "other.test", false}, {"[::1]:8883", "::1", true},
	}
	for _, tc := range tests {
		if got := sameHost(tc.a, tc.b); got != tc.want {
			t.Errorf("sameHost(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"$iothub/twin/res/#", "$iothub/twin/res/200/?$rid=1", true},
		{"$iothub/twin/res/#", "$iothub/twin/res", true},
		{"$iothub/methods/POST/#", "$iothub/methods/POST/reboot/?$rid=1", true},
		{"$iothub/methods/POST/#", "$iothub/twin/res/200/?$rid=1", false},
		{"devices/d/messages/devicebound/#", "devices/d/messages/devicebound/a=1", true},
		{"devices/d/messages/devicebound/#", "devices/e/messages/devicebound/a=1", false},
		{"devices/d/messages/devicebound/", "devices/d/messages/devicebound/", true},
		{"devices/d/messages/devicebound/", "devices/d/messages/devicebound/x", false},
		{"a/+/c", "a/b/c", true}, {"a/+/c", "a/b/d", false}, {"a/+", "a/b/c", false},
		{"#", "a/b", true}, {"#", "$iothub/twin/res/200", false}, {"+/x", "$iothub/x", false},
		{"a/#/b", "a/x/b", false}, {"a/b", "a/b/c", false}, {"a/b/c", "a/b", false},
		{"", "a", false}, {"a", "", false},
	}
	for _, tc := range tests {
		if got := matchFilter(tc.filter, tc.topic); got != tc.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	good := Options{
		TLS:      &tls.Config{Certificates: []tls.Certificate{{}}},
		Hostname: testHost, Auth: testAuth{}, Handler: newFakeHandler(),
	}
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{"no tls", func(o *Options) { o.TLS = nil }},
		{"tls without certificate", func(o *Options) { o.TLS = &tls.Config{} }},
		{"no hostname", func(o *Options) { o.Hostname = "" }},
		{"no auth", func(o *Options) { o.Auth = nil }},
		{"no handler", func(o *Options) { o.Handler = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			if _, err := New(o); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	if _, err := New(good); err != nil {
		t.Fatalf("New(valid): %v", err)
	}
}

func TestDispatcherOrderAndBackPressure(t *testing.T) {
	d := newDispatcher(2)
	var mu sync.Mutex
	got := map[string][]int{}
	release := make(chan struct{})
	for _, dev := range []string{"a", "b"} {
		for i := range 50 {
			d.request(dev, func() {
				if i == 0 && dev == "a" {
					<-release // a's first job blocks; b must still progress
				}
				mu.Lock()
				got[dev] = append(got[dev], i)
				mu.Unlock()
			})
			if dev == "a" && i == 1 {
				break // a is now at its limit (2): a third request would block
			}
		}
	}
	// b's 50 jobs complete although a is stuck.
	eventually(t, "device b drained", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["b"]) == 50
	})
	blocked := make(chan struct{})
	go func() {
		d.request("a", func() {
			mu.Lock()
			got["a"] = append(got["a"], 2)
			mu.Unlock()
		})
		close(blocked)
	}()
	close(release)
	<-blocked
	d.close()
	for dev, seq := range got {
		for i, v := range seq {
			if v != i {
				t.Fatalf("device %s ran out of order: %v", dev, seq)
			}
		}
	}
	if len(got["a"]) != 3 {
		t.Fatalf("device a ran %v, want [0 1 2]", got["a"])
	}
	if d.request("a", func() {}) {
		t.Fatal("request accepted after close")
	}
	select {
	case <-d.lifecycle("a", func() { t.Error("lifecycle job ran after close") }):
	default:
		t.Fatal("lifecycle after close did not report done")
	}
}

func TestQuietHandlerDropsPackets(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})})
	log.Warn("error processing packet", "client", "dev1", "pk", "password=hunter2")
	log.With("packet", "secret").Info("x")
	log.Error("boom", "will", "payload")
	out := buf.String()
	if strings.Contains(out, "hunter2") || strings.Contains(out, "secret") || strings.Contains(out, "payload") {
		t.Fatalf("packet attributes leaked: %s", out)
	}
	if !strings.Contains(out, "level=DEBUG msg=\"error processing packet\" client=dev1") || !strings.Contains(out, "level=ERROR msg=boom") {
		t.Fatalf("unexpected output: %s", out)
	}
}

func TestSendBeforeRunAndRunTwice(t *testing.T) {
	e := start(t, nil)
	if err := e.b.Send("nobody", "$iothub/twin/res/200/?$rid=1", nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send to absent device = %v, want ErrNotConnected", err)
	}
	if err := e.b.Run(context.Background()); !errors.Is(err, ErrAlreadyRun) {
		t.Fatalf("second Run = %v, want ErrAlreadyRun", err)
	}
	e.b.Disconnect("nobody") // no-op
	if e.b.Connected("nobody") || e.b.ConnectedCount() != 0 {
		t.Fatal("absent device reported connected")
	}
}

func TestRunListenError(t *testing.T) {
	b, err := New(Options{Addr: "256.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert(t).server}},
		Hostname: testHost, Auth: testAuth{}, Handler: newFakeHandler()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := b.Run(ctx); err == nil {
		t.Fatal("Run on an invalid address returned nil")
	}
	select {
	case <-b.Ready():
		t.Fatal("Ready closed although Run failed")
	case <-time.After(0):
	}
}
