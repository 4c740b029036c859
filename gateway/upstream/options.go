package upstream

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/drover-iot/drover/internal/iothubtopic"
)

// APIVersion is the api-version sent in the CONNECT username. [azure note 0]
const APIVersion = "2021-04-12"

// Defaults applied by New.
const (
	DefaultPort           = "8883"
	DefaultTokenTTL       = time.Hour
	DefaultBackoffMin     = time.Second
	DefaultBackoffMax     = 60 * time.Second
	DefaultKeepAlive      = 60 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultConnectTimeout = 30 * time.Second
	DefaultMethodTimeout  = 300 * time.Second // the longest a hub waits for a method answer [azure note 8.6]
	DefaultMethodWorkers  = 4
	DefaultVersion        = "dev"

	minRenewBefore = time.Minute
	minTokenTTL    = 2 * time.Second // se is whole seconds: anything shorter may be expired when sent
)

// Options configure a Client. Zero values get the defaults above.
type Options struct {
	// DeviceID is the identity: MQTT client id, username and SAS resource.
	DeviceID string
	// HostName is the hub's name as it goes into the username and the SAS sr
	// (the connection string's HostName).
	HostName string
	// Address is the host:port to dial; default HostName:8883, or HostName
	// itself when it already carries a port.
	Address string
	// Key is the device's symmetric key (base64). A token is signed with it on every connect.
	Key string
	// TLS is cloned for every connection. RootCAs should trust the hub (ca_file);
	// ServerName defaults to the host part of HostName; MinVersion to TLS 1.2.
	TLS *tls.Config
	// TokenTTL is the validity of each SAS token (default 1h, at least 2s).
	TokenTTL time.Duration
	// RenewBefore is how long before the token expires the client reconnects
	// with a new one: default 10% of TokenTTL but at least 1m, and never more
	// than half of TokenTTL.
	RenewBefore time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay (full jitter:
	// uniform in [0, min(BackoffMax, BackoffMin·2^(n-1))) after n failures).
	// Defaults 1s and 60s.
	BackoffMin, BackoffMax time.Duration
	// KeepAlive is the MQTT keep-alive (default 60s; whole seconds, at least
	// 1s). A PINGRESP missing for KeepAlive/2 (1s..10s) drops the connection.
	KeepAlive time.Duration
	// RequestTimeout bounds twin requests, subscriptions and telemetry whose
	// ctx has no earlier deadline (default 30s).
	RequestTimeout time.Duration
	// ConnectTimeout bounds dialing, the TLS handshake and CONNACK (default 30s).
	ConnectTimeout time.Duration
	// MethodTimeout bounds one Handler.Method call through its ctx (default 300s).
	MethodTimeout time.Duration
	// MethodWorkers is how many Handler.Method calls may run at once (default
	// 4); as many again may wait. Beyond that a call is answered 503 at once.
	MethodWorkers int
	// Version goes into the username as DeviceClientType=drover/<Version>.
	Version string
	// Logger receives the client's logs, scoped with the device id. Default: discard.
	Logger *slog.Logger
	// Now is the clock used to sign tokens and plan renewal. Default time.Now.
	Now func() time.Time
	// Handler receives hub→device traffic; nil ignores it (methods are answered 501).
	Handler Handler
	// Group, when set, lets this client be woken from a reconnect backoff
	// as soon as another member of the group gets through to the hub (see
	// Group). A gateway puts its own client and its children's in one.
	Group *Group
}

// Handler receives hub→device traffic. Connected, DesiredPatch and
// Disconnected are called one at a time, in order, on one goroutine; Method
// is called on a worker pool, concurrently with them and with itself.
// A panic in a Handler method is recovered and logged.
type Handler interface {
	// Connected is called after every (re)connect, once the subscriptions are
	// in place; ctx ends when that connection does. The gateway GETs the twin
	// here. Desired notifications that arrive meanwhile are delivered after it
	// returns, so they can be compared with the GET's $version. [azure note 4.6]
	Connected(ctx context.Context)
	// Disconnected is called once for each Connected, when that connection
	// ends. err says why; it wraps ErrTokenRenewal for a planned reconnect
	// and is ctx.Err() when Run is stopping.
	Disconnected(err error)
	// DesiredPatch delivers a desired-property notification: the body minus
	// "$version", numbers as json.Number, null members meaning "delete".
	// version is the desired section's new $version.
	DesiredPatch(patch map[string]any, version int64)
	// Method answers a direct method. payload is JSON (null when the caller
	// sent none). response is marshalled to JSON (nil → null; a
	// json.RawMessage is sent as is) and sent with status on
	// $iothub/methods/res/{status}/?$rid=. ctx ends after MethodTimeout or
	// when Run stops, not when the connection drops.
	Method(ctx context.Context, name string, payload json.RawMessage) (status int, response any)
}

// ErrOptions is wrapped by New for unusable options.
var ErrOptions = errors.New("invalid upstream options")

// withDefaults validates o and fills in the defaults, once.
func (o Options) withDefaults() (Options, error) {
	switch {
	case !iothubtopic.ValidDeviceID(o.DeviceID):
		return o, fmt.Errorf("%w: device id %q is not a valid IoT Hub device id", ErrOptions, o.DeviceID)
	case o.HostName == "":
		return o, fmt.Errorf("%w: HostName is required", ErrOptions)
	case o.Key == "":
		return o, fmt.Errorf("%w: device %s: Key is required", ErrOptions, o.DeviceID)
	}
	if _, err := base64.StdEncoding.DecodeString(o.Key); err != nil {
		return o, fmt.Errorf("%w: device %s: Key is not base64", ErrOptions, o.DeviceID) // the key itself stays out of the message
	}
	if o.Address == "" {
		if _, _, err := net.SplitHostPort(o.HostName); err == nil {
			o.Address = o.HostName
		} else {
			o.Address = net.JoinHostPort(o.HostName, DefaultPort)
		}
	}
	if _, _, err := net.SplitHostPort(o.Address); err != nil {
		return o, fmt.Errorf("%w: address %q is not host:port: %w", ErrOptions, o.Address, err)
	}
	if o.TLS == nil {
		o.TLS = &tls.Config{}
	} else {
		o.TLS = o.TLS.Clone()
	}
	if o.TLS.ServerName == "" {
		o.TLS.ServerName = hostOnly(o.HostName)
	}
	if o.TLS.MinVersion == 0 {
		o.TLS.MinVersion = tls.VersionTLS12
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.TokenTTL < minTokenTTL {
		return o, fmt.Errorf("%w: TokenTTL %s is shorter than %s", ErrOptions, o.TokenTTL, minTokenTTL)
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = max(o.TokenTTL/10, minRenewBefore)
		o.RenewBefore = min(o.RenewBefore, o.TokenTTL/2)
	}
	if o.RenewBefore < 0 || o.RenewBefore >= o.TokenTTL {
		return o, fmt.Errorf("%w: RenewBefore %s must be between 0 and TokenTTL %s", ErrOptions, o.RenewBefore, o.TokenTTL)
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.BackoffMin < 0 || o.BackoffMax < o.BackoffMin {
		return o, fmt.Errorf("%w: backoff %s..%s is not a range", ErrOptions, o.BackoffMin, o.BackoffMax)
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.KeepAlive < time.Second || o.KeepAlive%time.Second != 0 {
		return o, fmt.Errorf("%w: KeepAlive %s is not a whole number of seconds", ErrOptions, o.KeepAlive)
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.MethodTimeout <= 0 {
		o.MethodTimeout = DefaultMethodTimeout
	}
	if o.MethodWorkers <= 0 {
		o.MethodWorkers = DefaultMethodWorkers
	}
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Handler == nil {
		o.Handler = noHandler{}
	}
	return o, nil
}

// pingTimeout is how long a PINGRESP may take before the connection is dropped.
func (o Options) pingTimeout() time.Duration {
	return min(max(o.KeepAlive/2, time.Second), 10*time.Second)
}

func hostOnly(hostPort string) string {
	if h, _, err := net.SplitHostPort(hostPort); err == nil {
		return h
	}
	return hostPort
}

// noHandler ignores traffic and answers methods 501.
type noHandler struct{}

func (noHandler) Connected(context.Context)          {}
func (noHandler) Disconnected(error)                 {}
func (noHandler) DesiredPatch(map[string]any, int64) {}
func (noHandler) Method(context.Context, string, json.RawMessage) (int, any) {
	return 501, map[string]string{"message": "no method handler"}
}
