package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

func TestConnect(t *testing.T) {
	e := start(t, nil)
	const secret = "wrong-secret-4711"
	tests := []struct {
		name, id, user, pass string
		opts                 []clientOpt
		reason               string // "" = accepted
	}{
		{name: "ok", id: "ok1", user: user("ok1"), pass: goodPass},
		{name: "no api-version", id: "ok2", user: testHost + "/ok2/", pass: goodPass},
		{name: "no trailing slash", id: "ok3", user: testHost + "/ok3", pass: goodPass},
		{name: "port and extra params", id: "ok4", user: testHost + ":8883/ok4/?api-version=2021-04-12&DeviceClientType=x%2F1", pass: goodPass},
		{name: "host case", id: "ok5", user: "HUB.Test/ok5/?api-version=2018-06-30", pass: goodPass},
		{name: "will on own telemetry", id: "ok6", user: user("ok6"), pass: goodPass,
			opts: []clientOpt{func(o *paho.ClientOptions) { o.SetWill("devices/ok6/messages/events/", "bye", 1, false) }}},
		{name: "bad password", id: "bad1", user: user("bad1"), pass: secret, reason: "authentication failed"},
		{name: "expired token", id: "bad2", user: user("bad2"), pass: "expires:-1s", reason: "token expired"},
		{name: "missing password", id: "bad3", user: user("bad3"), pass: "", reason: "missing password"},
		{name: "username names other device", id: "bad4", user: user("other"), pass: goodPass, reason: "username names another device"},
		{name: "username names other hub", id: "bad5", user: "evil.test/bad5/" + apiVersion, pass: goodPass, reason: "username names another hub"},
		{name: "malformed username", id: "bad6", user: "garbage", pass: goodPass, reason: "malformed username"},
		{name: "module client id", id: "bad7/m1", user: testHost + "/bad7/m1/" + apiVersion, pass: goodPass, reason: "module identities are not supported"},
		{name: "invalid client id", id: "bad 8", user: testHost + "/bad 8/" + apiVersion, pass: goodPass, reason: "client id is not a valid device id"},
		{name: "will on other topic", id: "bad9", user: user("bad9"), pass: goodPass, reason: "will topic",
			opts: []clientOpt{func(o *paho.ClientOptions) { o.SetWill("devices/other/messages/events/", "x", 0, false) }}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.dial(t, tc.id, tc.user, tc.pass, tc.opts...)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("connect %s: %v", tc.id, err)
				}
				e.h.await(t, "connected", tc.id)
				if !e.b.Connected(tc.id) {
					t.Fatalf("Connected(%q) = false", tc.id)
				}
				c.Disconnect(0)
				e.h.await(t, "disconnected", tc.id)
				return
			}
			if !errors.Is(err, pahopackets.ErrorRefusedNotAuthorised) {
				t.Fatalf("connect %s: error %v, want CONNACK not authorized", tc.id, err)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, fmt.Sprintf("device=%q", tc.id)) && !strings.Contains(logs, "device="+tc.id) {
				t.Fatalf("refusal of %s not logged with device id:\n%s", tc.id, logs)
			}
			if !strings.Contains(logs, tc.reason) {
				t.Fatalf("refusal reason %q not logged:\n%s", tc.reason, logs)
			}
			if e.h.count("connected", tc.id) != 0 {
				t.Fatalf("handler saw a connect of refused %s", tc.id)
			}
		})
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Fatal("a password reached the log")
	}
}

func TestMQTT5And31Refused(t *testing.T) {
	e := start(t, nil)
	for _, v := range []byte{3, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			conn := rawDial(t, e)
			cp := connectPacket(fmt.Sprint("v", v), user(fmt.Sprint("v", v)), goodPass)
			cp.ProtocolVersion = v
			if v == 3 {
				cp.ProtocolName = "MQIsdp"
			}
			if err := cp.Write(conn); err != nil {
				t.Fatal(err)
			}
			// Answer is a CONNACK refusal (or, for v5 framing, just a close); never a session.
			pk, err := pahopackets.ReadPacket(conn)
			if err == nil {
				if ack, ok := pk.(*pahopackets.ConnackPacket); !ok || ack.ReturnCode == 0 {
					t.Fatalf("protocol %d accepted: %v", v, pk)
				}
			}
			if e.h.count("connected", fmt.Sprint("v", v)) != 0 {
				t.Fatalf("protocol %d got a session", v)
			}
		})
	}
}

func TestTakeover(t *testing.T) {
	h := newFakeHandler()
	e := start(t, h)
	c1 := e.mustDial(t, "dev1")
	c2 := e.mustDial(t, "dev1")
	c1.awaitLost(t, waitLong)
	if !e.b.Connected("dev1") || e.b.ConnectedCount() != 1 {
		t.Fatalf("after takeover Connected=%v count=%d", e.b.Connected("dev1"), e.b.ConnectedCount())
	}
	// The new connection works, and replies reach it.
	in := newInbox()
	h.onTwinGet = nil
	c2.subscribe(t, iothubtopic.FilterTwinResponses, 0, in.add)
	wait(t, c2.Publish(iothubtopic.TwinGet("t1"), 1, false, ""), "twin get")
	h.await(t, "twin-get", "dev1")
	if err := e.b.Send("dev1", iothubtopic.TwinResponse(200, "t1", 0), []byte("{}")); err != nil {
		t.Fatalf("Send after takeover: %v", err)
	}
	if got := in.next(t); got != "$iothub/twin/res/200/?$rid=t1 {}" {
		t.Fatalf("got %q", got)
	}
	if n := h.count("disconnected", "dev1"); n != 0 {
		t.Fatalf("kicked session reported %d disconnects", n)
	}
	c2.Disconnect(0)
	h.await(t, "disconnected", "dev1")
	if e.b.Connected("dev1") {
		t.Fatal("still connected after the last session ended")
	}
	var kinds []string
	h.mu.Lock()
	for _, ev := range h.all {
		if ev.device == "dev1" && (ev.kind == "connected" || ev.kind == "disconnected") {
			kinds = append(kinds, ev.kind)
		}
	}
	h.mu.Unlock()
	if strings.Join(kinds, ",") != "connected,connected,disconnected" {
		t.Fatalf("lifecycle events %v", kinds)
	}
}

func TestTokenExpiryDropsSessionAndSendsWill(t *testing.T) {
	e := start(t, nil)
	c, err := e.dial(t, "dev1", user("dev1"), "expires:300ms", func(o *paho.ClientOptions) {
		o.SetWill("devices/dev1/messages/events/%24.ct=text%2Fplain", "gone", 1, true)
	})
	if err != nil {
		t.Fatal(err)
	}
	c.awaitLost(t, 3*time.Second)
	will := e.h.await(t, "telemetry", "dev1")
	if v, _ := will.msg.Props.Get(willMessageType); v != "Will" || will.body != "gone" || !will.msg.Retain {
		t.Fatalf("will forwarded as %+v", will.msg)
	}
	if ct, _ := will.msg.Props.Get(iothubtopic.SysContentType); ct != "text/plain" {
		t.Fatalf("will props %v", will.msg.Props)
	}
	e.h.await(t, "disconnected", "dev1")
	if !strings.Contains(e.logs.String(), "device token expired") {
		t.Fatal("expiry not logged")
	}
}

func TestPublishRefusedDisconnects(t *testing.T) {
	e := start(t, nil)
	tests := []struct {
		name  string
		topic string
		qos   byte
	}{
		{"other device telemetry qos0", "devices/dev2/messages/events/", 0},
		{"other device telemetry qos1", "devices/dev2/messages/events/", 1},
		{"own telemetry qos2", "devices/%s/messages/events/", 2},
		{"c2d topic", "devices/%s/messages/devicebound/", 0},
		{"desired patch", "$iothub/twin/PATCH/properties/desired/?$version=3", 1},
		{"twin get without rid", "$iothub/twin/GET/", 0},
		{"custom topic", "plant/line1", 0},
		{"sys topic", "$SYS/broker/load", 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("pub%d", i)
			topic := tc.topic
			if strings.Contains(topic, "%s") {
				topic = fmt.Sprintf(topic, id)
			}
			c := e.mustDial(t, id)
			c.Publish(topic, tc.qos, false, "x")
			c.awaitLost(t, waitLong)
			e.h.await(t, "disconnected", id)
			if n := e.h.count("telemetry", id) + e.h.count("telemetry", "dev2"); n != 0 {
				t.Fatalf("handler got %d telemetry calls", n)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "publish refused") {
		t.Fatal("refused publishes not logged")
	}
}

func TestSubscribeACL(t *testing.T) {
	e := start(t, nil)
	c := e.mustDial(t, "dev1")
	tests := []struct {
		filter string
		qos    byte
		want   byte
	}{
		{"devices/dev1/messages/devicebound/#", 1, 1},
		{"devices/dev1/messages/devicebound/", 0, 0},
		{iothubtopic.FilterTwinResponses, 0, 0},
		{iothubtopic.FilterDesiredPatches, 2, 1},
		{iothubtopic.FilterMethodRequests, 1, 1},
		{"devices/dev2/messages/devicebound/#", 1, 0x80},
		{"devices/+/messages/devicebound/#", 1, 0x80},
		{"#", 0, 0x80},
		{"$iothub/#", 0, 0x80},
		{"$iothub/twin/res/+", 0, 0x80},
		{"devices/dev1/messages/events/#", 0, 0x80},
		{"$SYS/#", 0, 0x80},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			if got := c.subscribe(t, tc.filter, tc.qos, nil); got != tc.want {
				t.Fatalf("SUBACK for %q = %#x, want %#x", tc.filter, got, tc.want)
			}
		})
	}
	if !c.IsConnectionOpen() || !e.b.Connected("dev1") {
		t.Fatal("refused subscriptions dropped the connection")
	}
	if !strings.Contains(e.logs.String(), "subscription refused") {
		t.Fatal("refused subscriptions not logged")
	}
}

// brokerRef lets a Handler reach the broker started after it.
type brokerRef struct{ p atomic.Pointer[Broker] }

func TestTwinGetReplyReachesOnlyTheAsker(t *testing.T) {
	h := newFakeHandler()
	var ref brokerRef
	h.onTwinGet = func(d, rid string) {
		if err := ref.p.Load().Send(d, iothubtopic.TwinResponse(200, rid, 0), []byte(`{"desired":{},"reported":{}}`)); err != nil {
			t.Errorf("Send reply to %s: %v", d, err)
		}
	}
	e := start(t, h)
	ref.p.Store(e.b)
	in1, in2 := newInbox(), newInbox()
	c1, c2 := e.mustDial(t, "dev1"), e.mustDial(t, "dev2")
	c1.subscribe(t, iothubtopic.FilterTwinResponses, 0, in1.add)
	c2.subscribe(t, iothubtopic.FilterTwinResponses, 0, in2.add)

	ask := func(c *client, in *inbox, rid string) {
		t.Helper()
		wait(t, c.Publish(iothubtopic.TwinGet(rid), 1, false, ""), "twin get")
		want := iothubtopic.TwinResponse(200, rid, 0) + ` {"desired":{},"reported":{}}`
		if got := in.next(t); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	ask(c1, in1, "r1")
	ask(c2, in2, "r2") // had r1 leaked to dev2 it would have arrived first
	ask(c1, in1, "r3") // had r2 leaked to dev1 it would have arrived first

	// Send refuses what the device did not subscribe to, and absent devices.
	if err := e.b.Send("dev1", iothubtopic.MethodRequest("reboot", "1"), []byte("null")); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("Send unsubscribed = %v", err)
	}
	if err := e.b.Send("dev9", iothubtopic.TwinResponse(200, "1", 0), nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send absent = %v", err)
	}
	if err := e.b.Send("dev1", iothubtopic.FilterTwinResponses, nil); !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("Send wildcard = %v", err)
	}
}

func TestMethodResponseRouted(t *testing.T) {
	e := start(t, nil)
	c := e.mustDial(t, "dev1")
	in := newInbox()
	c.subscribe(t, iothubtopic.FilterMethodRequests, 0, func(topic string, payload []byte) {
		in.add(topic, payload)
		r, _ := iothubtopic.Parse("dev1", iothubtopic.MethodResponse(200, strings.TrimPrefix(topic, "$iothub/methods/POST/reboot/?$rid=")))
		c.Publish(r.Topic("dev1"), 0, false, `{"ok":true}`)
	})
	if err := e.b.Send("dev1", iothubtopic.MethodRequest("reboot", "m7"), []byte(`{"force":true}`)); err != nil {
		t.Fatal(err)
	}
	if got := in.next(t); got != `$iothub/methods/POST/reboot/?$rid=m7 {"force":true}` {
		t.Fatalf("device got %q", got)
	}
	ev := e.h.await(t, "method-res", "dev1")
	if ev.rid != "m7" || ev.status != 200 || ev.body != `{"ok":true}` {
		t.Fatalf("method response %+v", ev)
	}
}

func TestReportedPatchOrderUnderLoad(t *testing.T) {
	h := newFakeHandler()
	h.onReported = func(string, string, []byte) { runtime.Gosched() }
	e := start(t, h)
	const devices, patches = 4, 300
	var wg sync.WaitGroup
	for d := range devices {
		id := fmt.Sprintf("dev%d", d)
		c := e.mustDial(t, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks := make([]paho.Token, 0, patches)
			for i := range patches {
				// Telemetry in between: it takes the synchronous path and must not disturb order.
				if i%50 == 0 {
					c.Publish(iothubtopic.Telemetry(id, nil), 0, false, "t")
				}
				toks = append(toks, c.Publish(iothubtopic.ReportedPatch(fmt.Sprint(i)), byte(i%2), false, fmt.Sprintf(`{"n":%d}`, i)))
			}
			for _, tok := range toks {
				tok.WaitTimeout(waitLong)
			}
		}()
	}
	wg.Wait()
	eventually(t, "all patches handled", func() bool {
		n := 0
		for d := range devices {
			n += h.count("reported", fmt.Sprintf("dev%d", d))
		}
		return n == devices*patches
	})
	next := map[string]int{}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.all {
		if ev.kind != "reported" {
			continue
		}
		if want := fmt.Sprint(next[ev.device]); ev.rid != want || ev.body != fmt.Sprintf(`{"n":%s}`, want) {
			t.Fatalf("device %s: got patch %s, want %s", ev.device, ev.rid, want)
		}
		next[ev.device]++
	}
}

func TestTelemetryPubackFollowsHandler(t *testing.T) {
	h := newFakeHandler()
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // before start's cleanup in LIFO order: never leave the handler stuck
	h.onTelemetry = func(d string, _ Message) error {
		switch d {
		case "slow":
			entered <- struct{}{}
			<-gate
		case "failing":
			return errors.New("store is full")
		}
		return nil
	}
	e := start(t, h)
	t.Cleanup(release)
	slow, other := e.mustDial(t, "slow"), e.mustDial(t, "other")

	tok := slow.Publish("devices/slow/messages/events/%24.mid=1&k=v", 1, true, []byte{0, 1, 2})
	<-entered
	// Another device is served meanwhile: a full publish round trip.
	wait(t, other.Publish(iothubtopic.Telemetry("other", nil), 1, false, "hi"), "other telemetry")
	select {
	case <-tok.Done():
		t.Fatal("PUBACK arrived before Handler.Telemetry returned")
	default:
	}
	release()
	wait(t, tok, "slow telemetry")
	ev := h.await(t, "telemetry", "slow")
	if ev.body != "\x00\x01\x02" || !ev.msg.Retain || ev.msg.Topic != "devices/slow/messages/events/%24.mid=1&k=v" {
		t.Fatalf("message %+v", ev.msg)
	}
	if mid, _ := ev.msg.Props.Get(iothubtopic.SysMessageID); mid != "1" || ev.msg.Props.App()["k"] != "v" {
		t.Fatalf("props %+v", ev.msg.Props)
	}

	// A Telemetry error means no PUBACK and a dropped connection.
	failing := e.mustDial(t, "failing")
	ftok := failing.Publish(iothubtopic.Telemetry("failing", nil), 1, false, "x")
	failing.awaitLost(t, waitLong)
	if ftok.WaitTimeout(0) && ftok.Error() == nil {
		t.Fatal("failed telemetry was acknowledged")
	}
}

func TestDisconnectDropsWithinASecond(t *testing.T) {
	e := start(t, nil)
	c := e.mustDial(t, "dev1", func(o *paho.ClientOptions) { o.SetWill("devices/dev1/messages/events/", "w", 0, false) })
	other := e.mustDial(t, "dev2")
	e.b.Disconnect("dev1")
	c.awaitLost(t, time.Second)
	e.h.await(t, "disconnected", "dev1")
	if e.b.Connected("dev1") || !e.b.Connected("dev2") || !other.IsConnectionOpen() {
		t.Fatal("wrong sessions after Disconnect")
	}
	if n := e.h.count("telemetry", "dev1"); n != 0 {
		t.Fatalf("will of a revoked device forwarded (%d telemetry)", n)
	}
}

// rawDial opens a TLS connection to the broker.
func rawDial(t *testing.T, e *env) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: cert(t).pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(waitLong))
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func connectPacket(id, username, password string) *pahopackets.ConnectPacket {
	cp := pahopackets.NewControlPacket(pahopackets.Connect).(*pahopackets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.ClientIdentifier, cp.CleanSession, cp.Keepalive = id, true, 30
	cp.UsernameFlag, cp.Username = true, username
	cp.PasswordFlag, cp.Password = true, []byte(password)
	return cp
}

// expectClosed reads until the server closes the connection.
func expectClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("server kept a garbage connection open")
			}
			return
		}
	}
}

func TestGarbageInput(t *testing.T) {
	e := start(t, nil)

	connected := func(t *testing.T, id string) *tls.Conn {
		conn := rawDial(t, e)
		if err := connectPacket(id, user(id), goodPass).Write(conn); err != nil {
			t.Fatal(err)
		}
		pk, err := pahopackets.ReadPacket(conn)
		if ack, ok := pk.(*pahopackets.ConnackPacket); err != nil || !ok || ack.ReturnCode != 0 {
			t.Fatalf("CONNACK %v, %v", pk, err)
		}
		return conn
	}
	tests := []struct {
		name     string
		connect  bool
		bytes    []byte
		closeTLS bool // then half-close: the server sees EOF mid-packet
	}{
		{"junk instead of connect", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"publish before connect", false, []byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'}, false},
		{"connect truncated", false, []byte{0x10, 0x7f, 0x00, 0x04, 'M'}, true},
		{"publish truncated", true, []byte{0x30, 0x7f, 0x00, 0x04, 'd'}, true},
		{"huge remaining length", true, []byte{0x30, 0xff, 0xff, 0xff, 0x7f}, false},
		{"invalid utf8 topic", true, []byte{0x30, 0x06, 0x00, 0x02, 0xc3, 0x28, 'x', 'y'}, false},
		{"auth packet in 3.1.1", true, []byte{0xf0, 0x00}, false},
		{"second connect", true, nil, false},
		{"bad subscribe", true, []byte{0x82, 0x03, 0x00, 0x01, 0x00}, false},
		{"random bytes", true, []byte{0x37, 0x13, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x12}, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var conn *tls.Conn
			if tc.connect {
				conn = connected(t, fmt.Sprintf("g%d", i))
			} else {
				conn = rawDial(t, e)
			}
			b := tc.bytes
			if b == nil {
				var sb strings.Builder
				_ = connectPacket("g", user("g"), "leaked-password-in-second-connect").Write(&writerAdapter{&sb})
				b = []byte(sb.String())
			}
			if _, err := conn.Write(b); err != nil {
				t.Fatal(err)
			}
			if tc.closeTLS {
				_ = conn.CloseWrite()
			}
			expectClosed(t, conn)
		})
	}
	if strings.Contains(e.logs.String(), "leaked-password") {
		t.Fatal("password of a second CONNECT reached the log")
	}

	// Binary and non-JSON bodies are delivered as they are; the broker does not judge bodies.
	c := e.mustDial(t, "dev1")
	wait(t, c.Publish(iothubtopic.Telemetry("dev1", nil), 1, false, []byte{0xff, 0x00}), "binary telemetry")
	wait(t, c.Publish(iothubtopic.ReportedPatch("p1"), 1, false, "{not json"), "garbage patch")
	if ev := e.h.await(t, "reported", "dev1"); ev.body != "{not json" {
		t.Fatalf("patch body %q", ev.body)
	}
	if !c.IsConnectionOpen() {
		t.Fatal("good client dropped")
	}
}

type writerAdapter struct{ sb *strings.Builder }

func (w *writerAdapter) Write(p []byte) (int, error) { return w.sb.Write(p) }

func TestSilentClientsDropped(t *testing.T) {
	e := startWith(t, nil, func(b *Broker) { b.connectTimeout = 200 * time.Millisecond })
	t.Run("tcp without tls handshake", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(waitLong))
		expectClosed(t, conn)
	})
	t.Run("tls without connect", func(t *testing.T) {
		conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: cert(t).pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			return // dropped during the handshake: also fine
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(waitLong))
		expectClosed(t, conn)
	})
}

func TestFloodOfBadConnects(t *testing.T) {
	h := newFakeHandler()
	var ref brokerRef
	h.onTwinGet = func(d, rid string) { _ = ref.p.Load().Send(d, iothubtopic.TwinResponse(200, rid, 0), []byte("{}")) }
	e := start(t, h)
	ref.p.Store(e.b)
	good := e.mustDial(t, "good")
	in := newInbox()
	good.subscribe(t, iothubtopic.FilterTwinResponses, 0, in.add)

	const bad, workers = 200, 20
	var refused atomic.Int32
	floodDone := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range bad / workers {
				id := fmt.Sprintf("bad%d-%d", w, i)
				conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: cert(t).pool, MinVersion: tls.VersionTLS12})
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				_ = conn.SetDeadline(time.Now().Add(waitLong))
				_ = connectPacket(id, user(id), "nope").Write(conn)
				pk, err := pahopackets.ReadPacket(conn)
				if ack, ok := pk.(*pahopackets.ConnackPacket); err == nil && ok && ack.ReturnCode == pahopackets.ErrRefusedNotAuthorised {
					refused.Add(1)
				}
				_ = conn.Close()
			}
		}()
	}
	go func() { wg.Wait(); close(floodDone) }()

	rounds := 0
	for flooding := true; flooding || rounds < 3; rounds++ {
		rid := fmt.Sprint("g", rounds)
		wait(t, good.Publish(iothubtopic.TwinGet(rid), 0, false, ""), "twin get")
		if got, want := in.next(t), iothubtopic.TwinResponse(200, rid, 0)+" {}"; got != want {
			t.Fatalf("round %d: got %q want %q", rounds, got, want)
		}
		select {
		case <-floodDone:
			flooding = false
		default:
		}
	}
	if refused.Load() != bad {
		t.Fatalf("%d of %d bad connects got CONNACK not authorized", refused.Load(), bad)
	}
	if !good.IsConnectionOpen() || e.b.ConnectedCount() != 1 {
		t.Fatal("good client lost or bad clients admitted")
	}
	t.Logf("%d round trips during the flood", rounds)
}

func TestRunStopsEverything(t *testing.T) {
	h := newFakeHandler()
	b, err := New(Options{Addr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert(t).server}},
		Hostname: testHost, Auth: testAuth{}, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	<-b.Ready()
	e := &env{b: b, h: h, addr: b.Addr()}
	var clients []*client
	for i := range 3 {
		clients = append(clients, e.mustDial(t, fmt.Sprint("dev", i)))
	}
	half := rawDial(t, e) // TLS up, never sends CONNECT
	_ = half
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Run did not return")
	}
	for i, c := range clients {
		c.awaitLost(t, waitLong)
		if h.count("disconnected", fmt.Sprint("dev", i)) != 1 {
			t.Fatalf("dev%d: no DeviceDisconnected before Run returned", i)
		}
	}
	if b.ConnectedCount() != 0 {
		t.Fatalf("ConnectedCount = %d after Run", b.ConnectedCount())
	}
	// goleak (TestMain) checks that nothing Run started is still running.
}
