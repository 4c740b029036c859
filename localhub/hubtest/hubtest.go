// Package hubtest starts a real localhub for tests: TLS listeners on
// 127.0.0.1:0, a database in a temp directory, and helpers that create
// devices and connect them over MQTT with paho, as a real device would.
package hubtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub"
	"github.com/drover-iot/drover/localhub/certs"
	"github.com/drover-iot/drover/localhub/console"
	"github.com/drover-iot/drover/localhub/store"
)

// Env is a running hub.
type Env struct {
	Hub                   *localhub.Hub
	DataDir               string
	Hostname              string
	MQTTAddr              string
	HTTPSAddr             string
	OwnerConnectionString string
	CAFile                string
	CAPool                *x509.CertPool

	cancel context.CancelFunc
	done   chan error
}

// Options tune Start.
type Options struct {
	DataDir string // reuse a directory (restart tests); default t.TempDir()
	Logger  *slog.Logger
	Now     func() time.Time
	// MQTTAddr and HTTPSAddr are the listen addresses; default 127.0.0.1:0.
	// A restart test passes the addresses of the hub it replaces.
	MQTTAddr, HTTPSAddr string
}

// Start runs a hub until the test ends.
func Start(t testing.TB) *Env { return StartWith(t, Options{}) }

// StartWith runs a hub with options until the test ends (or Stop).
func StartWith(t testing.TB, o Options) *Env {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Logger == nil {
		if os.Getenv("DROVER_TEST_LOG") != "" {
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			o.Logger = slog.New(slog.DiscardHandler)
		}
	}
	if o.MQTTAddr == "" {
		o.MQTTAddr = "127.0.0.1:0"
	}
	if o.HTTPSAddr == "" {
		o.HTTPSAddr = "127.0.0.1:0"
	}
	h, err := localhub.New(localhub.Options{DataDir: o.DataDir, Hostname: "localhost", MQTTAddr: o.MQTTAddr, HTTPSAddr: o.HTTPSAddr, Logger: o.Logger, Now: o.Now, UI: console.ForHub})
	if err != nil {
		t.Fatalf("start hub: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Env{Hub: h, DataDir: o.DataDir, Hostname: h.Hostname(), CAFile: h.CAFile(), cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-e.done:
		cancel()
		t.Fatalf("hub stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("hub not ready after 30s")
	}
	e.MQTTAddr, e.HTTPSAddr = h.MQTTAddr(), h.HTTPSAddr()
	if e.OwnerConnectionString, err = h.OwnerConnectionString(ctx); err != nil {
		t.Fatalf("owner connection string: %v", err)
	}
	if e.CAPool, err = certs.Pool(e.CAFile); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(t) })
	return e
}

var errStopped = errors.New("already stopped")

// Stop shuts the hub down and waits for it (idempotent).
func (e *Env) Stop(t testing.TB) {
	t.Helper()
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil && !errors.Is(err, errStopped) {
			t.Errorf("hub stopped with error: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("hub did not stop within 30s")
	}
}

// TLSConfig trusts the hub's CA and names it by its hostname.
func (e *Env) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: e.CAPool, ServerName: e.Hostname, MinVersion: tls.VersionTLS12}
}

// CreateDevice registers a device (through the store) and returns its primary key.
func (e *Env) CreateDevice(t testing.TB, id string) store.Device {
	t.Helper()
	d, err := e.Hub.Store().CreateDevice(context.Background(), store.Device{ID: id})
	if err != nil {
		t.Fatalf("create device %s: %v", id, err)
	}
	return d
}

// Token signs a device SAS token valid for ttl.
func (e *Env) Token(t testing.TB, id, key string, ttl time.Duration) string {
	t.Helper()
	tok, err := sas.Sign(sas.DeviceResource(e.Hostname, id), key, "", time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ServiceToken signs a service token for the named policy with key.
func (e *Env) ServiceToken(t testing.TB, policy, key string, ttl time.Duration) string {
	t.Helper()
	tok, err := sas.Sign(e.Hostname, key, policy, time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Device is a connected paho client with helpers for the Azure topics.
type Device struct {
	ID     string
	Client mqtt.Client
	Lost   chan error // connection-lost events

	mu   sync.Mutex
	msgs map[string]chan mqtt.Message
}

// ClientOptions returns paho options for a device with a password.
func (e *Env) ClientOptions(id, password string) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker("ssl://" + e.MQTTAddr).
		SetClientID(id).
		SetUsername(e.Hostname + "/" + id + "/?api-version=2021-04-12").
		SetPassword(password).
		SetTLSConfig(e.TLSConfig()).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(60 * time.Second)
	return o
}

// Connect connects a device with a fresh token from its key and subscribes
// to twin responses, desired patches and methods.
func (e *Env) Connect(t testing.TB, id, key string) *Device {
	t.Helper()
	d, err := e.TryConnect(id, e.Token(t, id, key, time.Hour))
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { d.Client.Disconnect(50) })
	for _, f := range []string{"$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#"} {
		if err := d.Subscribe(f); err != nil {
			t.Fatalf("subscribe %s: %v", f, err)
		}
	}
	return d
}

// TryConnect connects a device with password and returns the error instead of failing.
func (e *Env) TryConnect(id, password string) (*Device, error) {
	d := &Device{ID: id, Lost: make(chan error, 1), msgs: map[string]chan mqtt.Message{}}
	o := e.ClientOptions(id, password)
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case d.Lost <- err:
		default:
		}
	})
	d.Client = mqtt.NewClient(o)
	tok := d.Client.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return d, nil
}

// Subscribe subscribes to filter; messages arrive on Messages(filter).
func (d *Device) Subscribe(filter string) error {
	ch := d.Messages(filter)
	tok := d.Client.Subscribe(filter, 0, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case ch <- m:
		default:
		}
	})
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("subscribe timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code == 0x80 {
				return errors.New("subscription refused")
			}
		}
	}
	return nil
}

// Messages returns the channel that receives messages for filter.
func (d *Device) Messages(filter string) chan mqtt.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	ch, ok := d.msgs[filter]
	if !ok {
		ch = make(chan mqtt.Message, 1024)
		d.msgs[filter] = ch
	}
	return ch
}

// Publish publishes and waits for the publish to complete (PUBACK for QoS 1).
func (d *Device) Publish(topic string, qos byte, payload []byte) error {
	tok := d.Client.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("publish timed out")
	}
	return tok.Error()
}

// Await waits for the next message on filter.
func (d *Device) Await(t testing.TB, filter string, timeout time.Duration) mqtt.Message {
	t.Helper()
	select {
	case m := <-d.Messages(filter):
		return m
	case <-time.After(timeout):
		t.Fatalf("%s: no message on %s within %s", d.ID, filter, timeout)
		return nil
	}
}
