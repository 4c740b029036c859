package serviceclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/sas"
)

// APIVersion is the api-version sent with every request.
const APIVersion = "2021-04-12"

// DefaultTokenTTL is how long each request's SAS token is valid when Options.TokenTTL is zero.
const DefaultTokenTTL = time.Hour

// maxBody bounds how much of a response body is read (a page of 100 full
// twins is a few MB; a registry list of 1000 devices well under that).
const maxBody = 64 << 20

// azureSuffix marks host names of Azure IoT Hub instances, which listen on 443.
const azureSuffix = ".azure-devices.net"

// localhubPort is localhub's default HTTPS port.
const localhubPort = "8443"

// ErrNotServicePolicy is returned by New for a connection string without a
// SharedAccessKeyName: device keys cannot call the service API.
var ErrNotServicePolicy = errors.New("connection string has no SharedAccessKeyName: a service policy connection string is needed")

// Options tune a Client. The zero value is valid.
type Options struct {
	// Address is the host:port to connect to. Default: HostName:443 when
	// HostName ends in .azure-devices.net, else HostName:8443 (localhub).
	Address string
	// CAFile is a PEM file of extra trusted CA certificates (a self-signed
	// localhub). The server certificate is always verified against HostName,
	// whatever Address says.
	CAFile string
	// HTTPClient replaces the client built from Address and CAFile; its
	// transport then owns TLS verification entirely. Requests still go to Address.
	HTTPClient *http.Client
	// TokenTTL is the validity of each request's SAS token (default DefaultTokenTTL).
	TokenTTL time.Duration
}

// Client calls one hub with one shared access policy. It is safe for
// concurrent use.
type Client struct {
	cs      sas.ConnectionString
	host    string // HostName without any port: SAS resource, TLS server name, Host header
	address string
	http    *http.Client
	ttl     time.Duration
	now     func() time.Time
}

// New builds a client for the hub named in cs. It starts nothing; the first
// request opens the connection.
func New(cs sas.ConnectionString, opts Options) (*Client, error) {
	if cs.HostName == "" || cs.Key == "" {
		return nil, fmt.Errorf("%w: HostName and SharedAccessKey are required", sas.ErrConnectionString)
	}
	if cs.KeyName == "" {
		return nil, ErrNotServicePolicy
	}
	host := cs.HostName
	hostPort := ""
	if h, p, err := net.SplitHostPort(cs.HostName); err == nil {
		host, hostPort = h, p
	}
	c := &Client{cs: cs, host: host, ttl: opts.TokenTTL, now: time.Now}
	if c.ttl <= 0 {
		c.ttl = DefaultTokenTTL
	}
	c.address = opts.Address
	if c.address == "" {
		switch {
		case hostPort != "":
			c.address = cs.HostName
		case strings.HasSuffix(strings.ToLower(host), azureSuffix):
			c.address = net.JoinHostPort(host, "443")
		default:
			c.address = net.JoinHostPort(host, localhubPort)
		}
	}
	if _, _, err := net.SplitHostPort(c.address); err != nil {
		return nil, fmt.Errorf("address %q is not host:port: %w", c.address, err)
	}
	if opts.HTTPClient != nil {
		c.http = opts.HTTPClient
		return c, nil
	}
	tlsConf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pool, err := loadCAFile(opts.CAFile)
		if err != nil {
			return nil, err
		}
		tlsConf.RootCAs = pool
	}
	tr, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		tr = &http.Transport{}
	}
	tr = tr.Clone()
	tr.TLSClientConfig = tlsConf
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// loadCAFile returns the system roots plus the certificates in path.
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read CA file %s: no PEM certificates found", path)
	}
	return pool, nil
}

// HostName is the hub's host name from the connection string (without a port).
func (c *Client) HostName() string { return c.host }

// Address is the host:port the client connects to.
func (c *Client) Address() string { return c.address }

// request describes one call.
type request struct {
	method  string
	path    []string // path segments, each escaped separately
	query   url.Values
	header  http.Header
	body    any // marshalled as JSON when non-nil
	rawBody []byte
	stream  io.Reader // streamed as is (chunked), with header's Content-Type
	alsoOK  []int     // non-2xx statuses whose body the caller reads itself
}

// send performs r and returns the response when its status is 2xx, or an
// error (an *APIError for hub answers). The caller closes the body.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	var body io.Reader
	switch {
	case r.stream != nil:
		body = r.stream
	case r.rawBody != nil:
		body = bytes.NewReader(r.rawBody)
	case r.body != nil:
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	q := r.query
	if q == nil {
		q = url.Values{}
	}
	q.Set("api-version", APIVersion)
	u := url.URL{Scheme: "https", Host: c.address, RawQuery: q.Encode()}
	for _, seg := range r.path {
		u.Path += "/" + seg
		u.RawPath += "/" + url.PathEscape(seg)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Host = c.host
	tok, err := sas.Sign(c.host, c.cs.Key, c.cs.KeyName, c.now().Add(c.ttl))
	if err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("Request-Id", newRequestID())
	req.Header.Set("User-Agent", "drover-serviceclient")
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL says nothing the caller does not know
		}
		return nil, fmt.Errorf("%s %s: %w", r.method, u.EscapedPath(), err)
	}
	if (resp.StatusCode < 200 || resp.StatusCode > 299) && !slices.Contains(r.alsoOK, resp.StatusCode) {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, parseError(resp.StatusCode, resp.Header, b)
	}
	return resp, nil
}

// call performs r and decodes a 2xx JSON answer into out (when non-nil).
func (c *Client) call(ctx context.Context, r request, out any) (http.Header, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if len(bytes.TrimSpace(b)) == 0 {
			return nil, fmt.Errorf("%s %s: empty response body", r.method, strings.Join(r.path, "/"))
		}
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("decode %s /%s response: %w", r.method, strings.Join(r.path, "/"), err)
		}
	}
	return resp.Header, nil
}

func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("read response: body larger than %d bytes", maxBody)
	}
	return b, nil
}

// ifMatch formats an etag for If-Match: always quoted, as the SDKs send it; "" means "*".
func ifMatch(etag string) string {
	if etag == "" {
		etag = "*"
	}
	if strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/"`) {
		return etag
	}
	return `"` + etag + `"`
}

// newRequestID returns a random UUID v4.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
