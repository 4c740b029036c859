package broker

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"
)

const (
	testHost   = "hub.test"
	waitLong   = 10 * time.Second // upper bound for events that should come at once
	goodPass   = "good"
	apiVersion = "?api-version=2021-04-12"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCert is a self-signed server certificate for 127.0.0.1 and testHost.
type testCert struct {
	server tls.Certificate
	pool   *x509.CertPool
	pemCA  []byte
}

var (
	certOnce sync.Once
	certVal  testCert
)

func cert(t *testing.T) testCert {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: testHost},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
			DNSNames:              []string{testHost, "localhost"},
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		certVal = testCert{
			server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
			pool:   pool,
			pemCA:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		}
	})
	return certVal
}

// testAuth accepts password "good" (token valid for an hour) and
// "expires:<duration>" (token valid that long); anything else fails.
type testAuth struct{}

func (testAuth) AuthenticateDevice(_ context.Context, _, password string) (time.Time, error) {
	if password == goodPass {
		return time.Now().Add(time.Hour), nil
	}
	if d, ok := strings.CutPrefix(password, "expires:"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return time.Time{}, err
		}
		return time.Now().Add(dur), nil
	}
	return time.Time{}, errors.New("signature mismatch")
}

// event is one recorded Handler call.
type event struct {
	kind   string // connected, disconnected, telemetry, twin-get, reported, method-res
	device string
	rid    string
	status int
	body   string
	msg    Message
}

// fakeHandler records every call on a channel and in a list.
type fakeHandler struct {
	events chan event

	mu  sync.Mutex
	all []event

	onTwinGet   func(device, rid string)               // optional
	onTelemetry func(device string, msg Message) error // optional
	onReported  func(device, rid string, body []byte)  // optional
}

func newFakeHandler() *fakeHandler { return &fakeHandler{events: make(chan event, 100000)} }

func (h *fakeHandler) record(e event) {
	h.mu.Lock()
	h.all = append(h.all, e)
	h.mu.Unlock()
	h.events <- e
}

func (h *fakeHandler) DeviceConnected(d string)    { h.record(event{kind: "connected", device: d}) }
func (h *fakeHandler) DeviceDisconnected(d string) { h.record(event{kind: "disconnected", device: d}) }

func (h *fakeHandler) Telemetry(d string, msg Message) error {
	var err error
	if h.onTelemetry != nil {
		err = h.onTelemetry(d, msg)
	}
	if err == nil {
		h.record(event{kind: "telemetry", device: d, body: string(msg.Body), msg: msg})
	}
	return err
}

func (h *fakeHandler) TwinGet(d, rid string) {
	h.record(event{kind: "twin-get", device: d, rid: rid})
	if h.onTwinGet != nil {
		h.onTwinGet(d, rid)
	}
}

func (h *fakeHandler) ReportedPatch(d, rid string, body []byte) {
	if h.onReported != nil {
		h.onReported(d, rid, body)
	}
	h.record(event{kind: "reported", device: d, rid: rid, body: string(body)})
}

func (h *fakeHandler) MethodResponse(d, rid string, status int, body []byte) {
	h.record(event{kind: "method-res", device: d, rid: rid, status: status, body: string(body)})
}

// count returns how many recorded events match.
func (h *fakeHandler) count(kind, device string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.all {
		if e.kind == kind && e.device == device {
			n++
		}
	}
	return n
}

// await returns the next event of kind for device, skipping others.
func (h *fakeHandler) await(t *testing.T, kind, device string) event {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		select {
		case e := <-h.events:
			if e.kind == kind && e.device == device {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event for %s within %v", kind, device, waitLong)
			return event{}
		}
	}
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// env is a running broker for one test.
type env struct {
	b    *Broker
	h    *fakeHandler
	logs *logBuffer
	addr string
}

// start runs a broker on 127.0.0.1:0 until the test ends and checks Run returns nil.
func start(t *testing.T, h *fakeHandler) *env {
	t.Helper()
	return startWith(t, h, nil)
}

// startWith is start with a hook to adjust the Broker before Run.
func startWith(t *testing.T, h *fakeHandler, adjust func(*Broker)) *env {
	t.Helper()
	if h == nil {
		h = newFakeHandler()
	}
	logs := &logBuffer{}
	b, err := New(Options{
		Addr:     "127.0.0.1:0",
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert(t).server}, MinVersion: tls.VersionTLS12},
		Hostname: testHost,
		Auth:     testAuth{},
		Handler:  h,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if adjust != nil {
		adjust(b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before ready: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLong):
			t.Errorf("Run did not return within %v of cancel", waitLong)
		}
	})
	return &env{b: b, h: h, logs: logs, addr: b.Addr()}
}

func user(device string) string { return testHost + "/" + device + "/" + apiVersion }

// client is a paho connection plus its connection-lost signal.
type client struct {
	paho.Client
	lost chan error
}

type clientOpt func(*paho.ClientOptions)

// dial connects a paho client; it returns the connect error (nil on success).
// The client is disconnected when the test ends.
func (e *env) dial(t *testing.T, id, username, password string, opts ...clientOpt) (*client, error) {
	t.Helper()
	lost := make(chan error, 1)
	o := paho.NewClientOptions().
		AddBroker("ssl://" + e.addr).
		SetClientID(id).
		SetUsername(username).
		SetPassword(password).
		SetTLSConfig(&tls.Config{RootCAs: cert(t).pool, MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitLong).
		SetKeepAlive(30 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	for _, opt := range opts {
		opt(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitLong) {
		t.Fatalf("connect %s: no CONNACK within %v", id, waitLong)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return &client{Client: c, lost: lost}, nil
}

// mustDial connects device id with good credentials.
func (e *env) mustDial(t *testing.T, id string, opts ...clientOpt) *client {
	t.Helper()
	c, err := e.dial(t, id, user(id), goodPass, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	e.h.await(t, "connected", id)
	return c
}

func wait(t *testing.T, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(waitLong) {
		t.Fatalf("%s: no answer within %v", what, waitLong)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// subscribe subscribes and returns the granted code per filter.
func (c *client) subscribe(t *testing.T, filter string, qos byte, onMsg func(topic string, payload []byte)) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) {
		if onMsg != nil {
			onMsg(m.Topic(), m.Payload())
		}
	})
	wait(t, tok, "subscribe "+filter)
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// awaitLost waits for the paho connection-lost callback.
func (c *client) awaitLost(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(within):
		t.Fatalf("connection not dropped within %v", within)
	}
}

// inbox collects messages a client receives.
type inbox struct{ ch chan string }

func newInbox() *inbox { return &inbox{ch: make(chan string, 1000)} }

func (in *inbox) add(topic string, payload []byte) { in.ch <- topic + " " + string(payload) }

func (in *inbox) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-in.ch:
		return m
	case <-time.After(waitLong):
		t.Fatalf("no message within %v", waitLong)
		return ""
	}
}

// eventually polls cond until it holds; only for state with no event to await.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, waitLong)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func writeCAFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, cert(t).pemCA, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
