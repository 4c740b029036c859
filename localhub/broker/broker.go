// Package broker is localhub's MQTT 3.1.1 device endpoint over TLS, speaking
// the Azure IoT Hub topic scheme. It is the only package that imports
// mochi-mqtt; none of mochi's types leave it.
//
// The broker is not a general-purpose MQTT broker: nothing a device publishes
// is fanned out to other clients or retained. Device→hub publishes are
// classified with iothubtopic and handed to a Handler; hub→device messages go
// out only through Send, to the one live connection of one device.
//
// Threading (the Handler's contract):
//   - Telemetry runs synchronously on the publishing connection's read
//     goroutine, so a QoS 1 PUBACK is written only after it returns nil. A slow
//     Telemetry stalls that one device, nobody else.
//   - DeviceConnected, TwinGet, ReportedPatch, MethodResponse and
//     DeviceDisconnected run on broker-owned worker goroutines, one at a time
//     and in arrival order per device; different devices run concurrently.
//   - DeviceConnected returns before the device's CONNACK is sent, so it
//     happens before any Telemetry or request of that session.
//   - On takeover (a second CONNECT for the same id) DeviceConnected is called
//     again for the new session and the kicked session gets no
//     DeviceDisconnected, so the final state is "connected".
//     DeviceDisconnected is called once the device has no live session.
//   - Handler methods may call Send, Disconnect, Connected and ConnectedCount.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

// Sentinel errors.
var (
	// ErrNotConnected is returned by Send when the device has no live connection.
	ErrNotConnected = errors.New("device not connected")
	// ErrNotSubscribed is returned by Send when the device's connection has no
	// subscription matching the topic.
	ErrNotSubscribed = errors.New("device not subscribed to topic")
	// ErrInvalidTopic is returned by Send for an empty topic or one holding wildcards.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrAlreadyRun is returned by a second call to Run.
	ErrAlreadyRun = errors.New("broker already run")
)

// Limits and timeouts. Values from the azure note where it has one.
const (
	// connectTimeout bounds TLS handshake plus CONNECT for a new connection.
	connectTimeout = 10 * time.Second
	// authTimeout bounds one Authenticator call.
	authTimeout = 10 * time.Second
	// maxKeepalive caps the client keep-alive: the hub drops a client after 1.5×
	// keep-alive, at most 1767 s. [azure note 1.2]
	maxKeepalive = 1177
	// maxPacketSize is 256 KiB of message plus room for topic and properties. [azure note 1.1]
	maxPacketSize = 256*1024 + 32*1024
	// requestQueueLimit is how many twin/method requests of one device may wait
	// for its worker before that device's read loop blocks (back-pressure).
	requestQueueLimit = 64
	// writesPending sizes mochi's per-client outbound queue. The broker never
	// fans out, so it stays tiny (mochi's default allocates 64 KiB per client).
	writesPending = 16
)

// Authenticator decides CONNECTs. deviceID comes from the client id; the
// username has already been checked to be "{hostname}/{deviceID}/?..." (extra
// query parameters, a missing api-version and host:port are tolerated).
// The returned error is logged, so it must not contain the password.
type Authenticator interface {
	// AuthenticateDevice checks the SAS token password of deviceID. expiry is
	// the token's se; the broker drops the session when it passes. A zero
	// expiry means the credential does not expire.
	AuthenticateDevice(ctx context.Context, deviceID, password string) (expiry time.Time, err error)
}

// Handler receives what devices send. See the package comment for which
// goroutine calls each method and in what order.
type Handler interface {
	// DeviceConnected is called when a session of deviceID starts.
	DeviceConnected(deviceID string)
	// DeviceDisconnected is called when deviceID has no live session any more.
	DeviceDisconnected(deviceID string)
	// Telemetry must be durable when it returns nil: the broker PUBACKs QoS 1
	// only after it returns. An error drops a QoS 1 message without PUBACK and
	// closes the connection so the device resends; a QoS 0 message is dropped.
	Telemetry(deviceID string, msg Message) error
	// TwinGet is a $iothub/twin/GET request. Answer with Send(deviceID,
	// iothubtopic.TwinResponse(status, rid, 0), body).
	TwinGet(deviceID, rid string)
	// ReportedPatch is a reported-properties patch (body is the JSON patch).
	ReportedPatch(deviceID, rid string, body []byte)
	// MethodResponse is a device's answer to a direct method request.
	MethodResponse(deviceID, rid string, status int, body []byte)
}

// Message is one device-to-cloud message.
type Message struct {
	// Topic is the publish topic as received.
	Topic string
	// Props is the decoded property bag in wire order: system properties keep
	// their "$." names ("$.mid", "$.ct", ...), everything else is an application
	// property. Props.System() and Props.App() split them into maps. A Will
	// message carries the extra application property iothub-MessageType=Will.
	Props iothubtopic.Properties
	// Body is the payload. The Handler owns it.
	Body []byte
	// Retain is the RETAIN flag as published; the broker never stores the message.
	Retain bool
}

// Options configures a Broker. TLS, Hostname, Auth and Handler are required.
type Options struct {
	Addr     string      // listen address, e.g. "127.0.0.1:0" or ":8883"
	TLS      *tls.Config // server certificate; required (TLS is mandatory)
	Hostname string      // hub hostname the CONNECT username must name (a port is ignored)
	Auth     Authenticator
	Handler  Handler
	Logger   *slog.Logger // nil discards
}

// Broker is the device endpoint. Create it with New and start it with Run.
type Broker struct {
	opts   Options
	log    *slog.Logger
	ready  chan struct{}
	ran    atomic.Bool
	addr   atomic.Pointer[string]
	runCtx context.Context // set by Run before any hook can run
	q      *dispatcher
	// connectTimeout bounds TLS handshake plus CONNECT (a field so tests can shorten it).
	connectTimeout time.Duration

	mu       sync.Mutex
	sessions map[string]*session // live session per device id
	closing  bool                // Run is shutting down
	timerWG  sync.WaitGroup      // expiry callbacks in progress
}

// New checks opts and builds a Broker. It starts nothing.
func New(opts Options) (*Broker, error) {
	switch {
	case opts.TLS == nil:
		return nil, errors.New("new broker: TLS config is required")
	case len(opts.TLS.Certificates) == 0 && opts.TLS.GetCertificate == nil && opts.TLS.GetConfigForClient == nil:
		return nil, errors.New("new broker: TLS config has no server certificate")
	case opts.Hostname == "":
		return nil, errors.New("new broker: hostname is required")
	case opts.Auth == nil:
		return nil, errors.New("new broker: authenticator is required")
	case opts.Handler == nil:
		return nil, errors.New("new broker: handler is required")
	}
	if opts.Addr == "" {
		opts.Addr = ":8883"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Broker{
		opts:           opts,
		log:            log,
		ready:          make(chan struct{}),
		q:              newDispatcher(requestQueueLimit),
		connectTimeout: connectTimeout,
		sessions:       make(map[string]*session),
	}, nil
}

// Ready is closed once the broker is listening.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Addr returns the actual listen address once Ready is closed, else "".
func (b *Broker) Addr() string {
	if p := b.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Connected reports whether deviceID has a live session.
func (b *Broker) Connected(deviceID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.sessions[deviceID]
	return ok
}

// ConnectedCount returns the number of devices with a live session.
func (b *Broker) ConnectedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

func (b *Broker) session(deviceID string) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[deviceID]
}

// Send writes payload to topic on deviceID's live connection at QoS 0, and only
// if that connection subscribed to a filter matching topic. It never reaches
// any other client. The write is done when Send returns, so payload may be
// reused. It returns ErrNotConnected, ErrNotSubscribed or ErrInvalidTopic
// (wrapped) when it does not send. QoS 0 means delivery is not confirmed: a
// direct method needs the device's response, C2D needs the hub's own queue.
func (b *Broker) Send(deviceID, topic string, payload []byte) error {
	if !validTopicName(topic) {
		return fmt.Errorf("send to device %q: %w: %q", deviceID, ErrInvalidTopic, topic)
	}
	// Look the session up now: a takeover replaces the connection. [mochi note]
	s := b.session(deviceID)
	if s == nil {
		return fmt.Errorf("send to device %q: %w", deviceID, ErrNotConnected)
	}
	if err := s.write(topic, payload); err != nil {
		return fmt.Errorf("send to device %q: %w", deviceID, err)
	}
	return nil
}

// Disconnect drops deviceID's live session now (disable, delete, re-key). Its
// Will message, if any, is not forwarded. It does nothing if the device is not
// connected.
func (b *Broker) Disconnect(deviceID string) {
	s := b.session(deviceID)
	if s == nil {
		return
	}
	b.log.Info("device disconnected by hub", "device", deviceID)
	s.conn.revoked.Store(true)
	s.conn.kill()
}

// Run listens and serves until ctx is done, then closes every client, delivers
// the remaining Handler calls (including DeviceDisconnected for each live
// session) and returns nil once every goroutine it started has stopped. It
// returns an error if it cannot listen. It may be called once.
func (b *Broker) Run(ctx context.Context) error {
	if !b.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	b.runCtx = ctx
	e, err := b.newEngine()
	if err != nil {
		return err
	}
	addr := e.addr()
	b.addr.Store(&addr)
	close(b.ready)
	b.log.Info("broker listening", "addr", addr)

	<-ctx.Done()

	b.log.Info("broker stopping", "devices", b.ConnectedCount())
	b.mu.Lock()
	b.closing = true
	for _, s := range b.sessions {
		s.stopTimer()
	}
	b.mu.Unlock()
	e.close() // stops accepting, closes every connection, waits for their goroutines
	b.timerWG.Wait()
	b.q.close() // runs what is queued, then waits for the workers
	b.log.Info("broker stopped")
	return nil
}
