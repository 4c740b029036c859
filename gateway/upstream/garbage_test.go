package upstream

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// fakePaho records publishes; only Publish is used by the code under test.
type fakePaho struct {
	mqtt.Client
	mu   sync.Mutex
	pubs []string // "topic body"
}

func (f *fakePaho) Publish(topic string, _ byte, _ bool, payload any) mqtt.Token {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := payload.([]byte)
	f.pubs = append(f.pubs, topic+" "+string(b))
	return doneToken{}
}

func (f *fakePaho) published() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.pubs...)
}

type doneToken struct{}

func (doneToken) Wait() bool                     { return true }
func (doneToken) WaitTimeout(time.Duration) bool { return true }
func (doneToken) Done() <-chan struct{}          { c := make(chan struct{}); close(c); return c }
func (doneToken) Error() error                   { return nil }

// garbageClient is a Client with one live fake connection and no Run.
func garbageClient(t *testing.T, logs *syncBuffer, workers int) (*Client, *conn, *fakePaho) {
	t.Helper()
	c, err := New(Options{DeviceID: "gw-1", HostName: "hub", Key: "a2V5", Logger: testLogger(logs), MethodWorkers: workers})
	if err != nil {
		t.Fatal(err)
	}
	fp := &fakePaho{}
	cn := &conn{pc: fp, lost: make(chan error, 1), kick: make(chan error, 1), expiry: time.Now().Add(time.Hour)}
	cn.ctx, cn.cancel = context.WithCancel(context.Background())
	t.Cleanup(cn.cancel)
	// Run never runs here: no method worker may start, so calls stay queued
	// where the tests can see them.
	c.stopped = true
	c.goUp(cn)
	return c, cn, fp
}

// TestHubGarbage feeds what a broken hub could send straight into the
// message handlers: nothing panics, each case is logged clearly, and what
// cannot be placed in order recycles the connection.
func TestHubGarbage(t *testing.T) {
	cases := []struct {
		name    string
		route   string // twin, desired, method
		topic   string
		body    string
		log     string // expected log message
		resync  bool   // the connection is recycled
		publish string // expected answer prefix, if any
	}{
		{name: "twin response non-numeric status", route: "twin", topic: "$iothub/twin/res/abc/?$rid=1", body: `{}`, log: "unreadable twin response from hub"},
		{name: "twin response without rid", route: "twin", topic: "$iothub/twin/res/200/", log: "unreadable twin response from hub"},
		{name: "twin response unknown rid", route: "twin", topic: "$iothub/twin/res/200/?$rid=999", body: `{"desired":{},"reported":{}}`, log: "twin response for no pending request"},
		{name: "twin response bad version", route: "twin", topic: "$iothub/twin/res/204/?$rid=1&$version=v", log: "unreadable twin response from hub"},
		{name: "desired bad JSON", route: "desired", topic: "$iothub/twin/PATCH/properties/desired/?$version=3", body: `{"a":`, log: "unreadable desired notification", resync: true},
		{name: "desired missing version", route: "desired", topic: "$iothub/twin/PATCH/properties/desired/", body: `{"a":1}`, log: "unreadable desired notification", resync: true},
		{name: "desired array", route: "desired", topic: "$iothub/twin/PATCH/properties/desired/?$version=3", body: `[1]`, log: "unreadable desired notification", resync: true},
		{name: "desired non-numeric topic version", route: "desired", topic: "$iothub/twin/PATCH/properties/desired/?$version=x", body: `{"$version":3}`, log: "unreadable desired notification", resync: true},
		{name: "desired version mismatch", route: "desired", topic: "$iothub/twin/PATCH/properties/desired/?$version=4", body: `{"$version":3}`, log: "unreadable desired notification", resync: true},
		{name: "method without rid", route: "method", topic: "$iothub/methods/POST/reboot/", body: `{}`, log: "unreadable method request from hub"},
		{name: "method empty name", route: "method", topic: "$iothub/methods/POST//?$rid=1", body: `{}`, log: "unreadable method request from hub"},
		{name: "method payload not JSON", route: "method", topic: "$iothub/methods/POST/reboot/?$rid=5", body: `{nope`, log: "payload that is not JSON", publish: "$iothub/methods/res/400/?$rid=5 "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			c, cn, fp := garbageClient(t, logs, 1)
			// A real request is pending: garbage must not complete it.
			p := &pending{cn: cn, done: make(chan reply, 1)}
			c.pending["1"] = p
			switch tc.route {
			case "twin":
				c.onTwinResponse(cn, tc.topic, []byte(tc.body))
			case "desired":
				c.onDesired(cn, tc.topic, []byte(tc.body))
			case "method":
				c.onMethod(cn, tc.topic, []byte(tc.body))
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("log does not say %q:\n%s", tc.log, logs.String())
			}
			select {
			case err := <-cn.kick:
				if !tc.resync {
					t.Fatalf("connection recycled: %v", err)
				}
			default:
				if tc.resync {
					t.Fatal("connection not recycled")
				}
			}
			select {
			case r := <-p.done:
				t.Fatalf("pending request completed by garbage: %+v", r)
			default:
			}
			pubs := fp.published()
			if tc.publish == "" && len(pubs) != 0 {
				t.Fatalf("answered garbage: %q", pubs)
			}
			if tc.publish != "" && (len(pubs) != 1 || !strings.HasPrefix(pubs[0], tc.publish)) {
				t.Fatalf("published %q, want %q…", pubs, tc.publish)
			}
			select {
			case call := <-c.methods:
				t.Fatalf("garbage reached the method queue: %+v", call)
			default:
			}
		})
	}
}

// TestMethodQueueFull answers 503 at once when workers and queue are taken.
func TestMethodQueueFull(t *testing.T) {
	c, cn, fp := garbageClient(t, nil, 1)
	c.onMethod(cn, "$iothub/methods/POST/a/?$rid=1", []byte(`{}`)) // queued (no worker runs)
	c.onMethod(cn, "$iothub/methods/POST/b/?$rid=2", nil)
	if pubs := fp.published(); len(pubs) != 1 || !strings.HasPrefix(pubs[0], "$iothub/methods/res/503/?$rid=2 ") {
		t.Fatalf("published %q, want a 503 for rid 2", pubs)
	}
	call := <-c.methods
	if call.name != "a" || call.rid != "1" || string(call.payload) != "{}" {
		t.Fatalf("queued %+v", call)
	}
}

// TestDesiredQueueOverflow recycles the connection instead of blocking paho.
func TestDesiredQueueOverflow(t *testing.T) {
	c, cn, _ := garbageClient(t, nil, 1)
	for v := range maxQueuedPatches + 1 { // +1: Connected is queued too, but does not count
		c.onDesired(cn, "$iothub/twin/PATCH/properties/desired/?$version="+strconv.Itoa(v+1), []byte(`{"$version":`+strconv.Itoa(v+1)+`}`))
	}
	select {
	case err := <-cn.kick:
		if !strings.Contains(err.Error(), "queue full") {
			t.Fatalf("kick: %v", err)
		}
	default:
		t.Fatal("no resync after overflow")
	}
}
