package localhub_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/drover-iot/drover/localhub/hubtest"
)

// answerMethods makes d answer every method with status and a payload derived from the request.
func answerMethods(t *testing.T, d *hubtest.Device, status int, reply func(name string, body []byte) string) {
	t.Helper()
	tok := d.Client.Subscribe("$iothub/methods/POST/#", 0, func(c mqtt.Client, m mqtt.Message) {
		// $iothub/methods/POST/{name}/?$rid={rid}
		rest := strings.TrimPrefix(m.Topic(), "$iothub/methods/POST/")
		name, q, _ := strings.Cut(rest, "/?")
		rid := strings.TrimPrefix(q, "$rid=")
		c.Publish(fmt.Sprintf("$iothub/methods/res/%d/?$rid=%s", status, rid), 0, false, reply(name, m.Payload()))
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe methods: %v", tok.Error())
	}
}

func TestDirectMethodRoundTrip(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	dev := env.CreateDevice(t, "pump-1")
	d := env.Connect(t, "pump-1", dev.PrimaryKey)
	answerMethods(t, d, 200, func(name string, body []byte) string {
		return fmt.Sprintf(`{"method":%q,"got":%s}`, name, body)
	})
	r := a.must(200, "POST", "/twins/pump-1/methods", `{"methodName":"reboot","payload":{"delay":3},"responseTimeoutInSeconds":10}`).json(t)
	if r["status"] != float64(200) || fmt.Sprint(r["payload"]) != "map[got:map[delay:3] method:reboot]" {
		t.Fatalf("method result %v", r)
	}
	// No payload: the device receives JSON null, never an empty body (the Node SDK parses it).
	r = a.must(200, "POST", "/twins/pump-1/methods", `{"methodName":"identify"}`).json(t)
	if fmt.Sprint(r["payload"]) != "map[got:<nil> method:identify]" {
		t.Fatalf("null payload: %v", r)
	}

	// Concurrent calls are matched to their own replies.
	var wg sync.WaitGroup
	errs := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp := a.do("POST", "/twins/pump-1/methods", fmt.Sprintf(`{"methodName":"m%d","payload":%d}`, i, i))
			want := fmt.Sprintf(`"payload":{"method":"m%d","got":%d}`, i, i)
			if resp.Status != 200 || !strings.Contains(string(resp.Body), want) {
				errs <- fmt.Sprintf("call %d: %d %s", i, resp.Status, resp.Body)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestDirectMethodOfflineTimeoutAndBadInput(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	dev := env.CreateDevice(t, "pump-1")

	// Not connected → 404 DeviceNotOnline.
	if c := a.must(404, "POST", "/twins/pump-1/methods", `{"methodName":"reboot"}`).errorCode(t); c != "DeviceNotOnline" {
		t.Fatalf("code %s", c)
	}
	// Unknown device → 404 DeviceNotFound.
	if c := a.must(404, "POST", "/twins/ghost/methods", `{"methodName":"reboot"}`).errorCode(t); c != "DeviceNotFound" {
		t.Fatalf("code %s", c)
	}

	// Connected but not subscribed to methods → 404.
	bare, err := env.TryConnect("pump-1", env.Token(t, "pump-1", dev.PrimaryKey, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a.must(404, "POST", "/twins/pump-1/methods", `{"methodName":"reboot"}`)
	bare.Client.Disconnect(10)

	// Subscribed but silent → 504 after the response timeout.
	d := env.Connect(t, "pump-1", dev.PrimaryKey)
	start := time.Now()
	if c := a.must(504, "POST", "/twins/pump-1/methods", `{"methodName":"reboot","responseTimeoutInSeconds":1}`).errorCode(t); c != "GatewayTimeout" {
		t.Fatalf("code %s", c)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("504 after %s, before the 1s timeout", el)
	}
	<-d.Messages("$iothub/methods/POST/#") // the request did reach the device

	// A device cannot answer a call made to another device, nor answer with garbage.
	other := env.CreateDevice(t, "other")
	o := env.Connect(t, "other", other.PrimaryKey)
	done := make(chan response, 1)
	go func() {
		done <- a.do("POST", "/twins/pump-1/methods", `{"methodName":"x","responseTimeoutInSeconds":2}`)
	}()
	req := d.Await(t, "$iothub/methods/POST/#", 5*time.Second)
	rid := req.Topic()[strings.Index(req.Topic(), "$rid=")+5:]
	if err := o.Publish("$iothub/methods/res/200/?$rid="+rid, 0, []byte(`{"hijack":true}`)); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Status != 504 {
		t.Fatalf("another device answered the call: %d %s", r.Status, r.Body)
	}
	go func() {
		done <- a.do("POST", "/twins/pump-1/methods", `{"methodName":"x","responseTimeoutInSeconds":5}`)
	}()
	req = d.Await(t, "$iothub/methods/POST/#", 5*time.Second)
	rid = req.Topic()[strings.Index(req.Topic(), "$rid=")+5:]
	if err := d.Publish("$iothub/methods/res/200/?$rid="+rid, 0, []byte(`{not json`)); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Status != 502 {
		t.Fatalf("garbage method response: %d %s", r.Status, r.Body)
	}

	for _, body := range []string{`{`, `{"payload":1}`, `{"methodName":"a/b"}`, `{"methodName":"m","responseTimeoutInSeconds":0}`,
		`{"methodName":"m","responseTimeoutInSeconds":301}`, `{"methodName":"m","connectTimeoutInSeconds":-1}`,
		`{"methodName":"m","payload":"` + strings.Repeat("x", 130*1024) + `"}`} {
		r := a.do("POST", "/twins/pump-1/methods", body)
		if r.Status != 400 && r.Status != 413 {
			t.Errorf("body %.60q: status %d, want 400/413: %s", body, r.Status, r.Body)
		}
	}
}

// TestDirectMethodConnectTimeout: connectTimeoutInSeconds waits for a device that comes online.
func TestDirectMethodConnectTimeout(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	dev := env.CreateDevice(t, "late")
	done := make(chan response, 1)
	go func() {
		done <- a.do("POST", "/twins/late/methods", `{"methodName":"hello","responseTimeoutInSeconds":10,"connectTimeoutInSeconds":20}`)
	}()
	// The device connects, then subscribes: the hub must wait for both within the connect timeout.
	d, err := env.TryConnect("late", env.Token(t, "late", dev.PrimaryKey, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Client.Disconnect(10)
	answerMethods(t, d, 201, func(string, []byte) string { return `"hi"` })
	r := <-done
	if r.Status != 200 || !strings.Contains(string(r.Body), `"status":201`) {
		t.Fatalf("connect-timeout call: %d %s", r.Status, r.Body)
	}
}
