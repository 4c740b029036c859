package cli

// This file finds the gateway's local API and talks to it: the address
// (--api, DROVER_API, -c gateway.yaml, default), the token for commands that
// change something (--token, DROVER_API_TOKEN, the token file), and the
// HTTP client for both TCP and unix-socket addresses.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/localapi"
)

// Environment variables the technician commands read.
const (
	envAPI   = "DROVER_API"
	envToken = "DROVER_API_TOKEN"
)

// maxConfigSize bounds the gateway.yaml the CLI reads for -c.
const maxConfigSize = 4 << 20

// maxResponse bounds a response body (twins are the biggest).
const maxResponse = 16 << 20

// defaultRequestTimeout bounds one request; a device read on a slow serial
// bus with retries takes seconds, not minutes. Scans have no bound.
const defaultRequestTimeout = 60 * time.Second

// apiFlags are the flags every technician command takes.
type apiFlags struct {
	api     string
	config  string
	token   string
	output  string
	timeout time.Duration
}

// add registers the flags on c; withToken adds --token for commands that
// change something.
func (f *apiFlags) add(c *cobra.Command, withToken bool) {
	fl := c.Flags()
	fl.StringVar(&f.api, "api", "", "local API address: host:port or unix:/path (default: $"+envAPI+", else gateway.local_api from -c, else "+localapi.DefaultAddr+")")
	fl.StringVarP(&f.config, "config", "c", "", "gateway.yaml to take the API address and token file from")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fl.DurationVar(&f.timeout, "timeout", defaultRequestTimeout, "give up on a request after this long")
	if withToken {
		fl.StringVar(&f.token, "token", "", "API token (default: $"+envToken+", else the gateway's token file)")
	}
}

func (f *apiFlags) json() (bool, error) {
	switch f.output {
	case "table", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("unknown output format %q (use table or json)", f.output)
}

// endpoint is where the API is and how it was found.
type endpoint struct {
	addr      string // host:port or unix:/path
	source    string // where addr came from, for error messages
	tokenFile string // where the token is expected when not given
	tokenFrom string // what named tokenFile
}

// localSettings is the part of gateway.yaml the CLI needs.
type localSettings struct {
	LocalAPI  string
	DataDir   string
	TokenFile string
}

// readLocalSettings reads gateway.local_api, gateway.data_dir and
// gateway.local_api_token_file from gateway.yaml. It is deliberately
// lenient: a file with problems elsewhere (which `drover config check`
// reports) must not stop the technician from reaching the daemon. Defaults
// and relative paths follow the config package.
func readLocalSettings(path string) (localSettings, error) {
	st, err := os.Stat(path)
	if err != nil {
		return localSettings{}, fmt.Errorf("read %s: %w", path, unwrapPath(err))
	}
	if st.IsDir() || st.Size() > maxConfigSize {
		return localSettings{}, fmt.Errorf("read %s: not a gateway.yaml (a directory, or larger than %d bytes)", path, maxConfigSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return localSettings{}, fmt.Errorf("read %s: %w", path, unwrapPath(err))
	}
	var doc struct {
		Gateway struct {
			LocalAPI  string `yaml:"local_api"`
			DataDir   string `yaml:"data_dir"`
			TokenFile string `yaml:"local_api_token_file"`
		} `yaml:"gateway"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return localSettings{}, fmt.Errorf("read gateway settings from %s: %w (run drover config check %s)", path, err, path)
	}
	s := localSettings{LocalAPI: doc.Gateway.LocalAPI, DataDir: doc.Gateway.DataDir, TokenFile: doc.Gateway.TokenFile}
	if s.LocalAPI == "" {
		s.LocalAPI = config.DefaultLocalAPI
	}
	if s.DataDir == "" {
		s.DataDir = config.DefaultDataDir
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&s.DataDir, &s.TokenFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return s, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// resolveEndpoint finds the API: --api, else $DROVER_API, else the -c
// file's gateway.local_api, else the default. The token file is the -c
// file's local_api_token_file or <data_dir>/api.token, else the default
// data dir's (defaultDataDir), whichever way the address was found.
func resolveEndpoint(flagAPI, configPath string, getenv func(string) string, defaultDataDir string) (endpoint, error) {
	var ep endpoint
	var st *localSettings
	if configPath != "" {
		s, err := readLocalSettings(configPath)
		if err != nil {
			return endpoint{}, err
		}
		st = &s
	}
	switch {
	case flagAPI != "":
		ep.addr, ep.source = flagAPI, "--api"
	case getenv(envAPI) != "":
		ep.addr, ep.source = getenv(envAPI), "$"+envAPI
	case st != nil:
		ep.addr, ep.source = st.LocalAPI, "gateway.local_api in "+configPath
	default:
		ep.addr, ep.source = localapi.DefaultAddr, "the default"
	}
	switch {
	case st != nil && st.TokenFile != "":
		ep.tokenFile, ep.tokenFrom = st.TokenFile, "gateway.local_api_token_file in "+configPath
	case st != nil:
		ep.tokenFile, ep.tokenFrom = localapi.TokenPath(st.DataDir), "gateway.data_dir in "+configPath
	default:
		ep.tokenFile, ep.tokenFrom = localapi.TokenPath(defaultDataDir), "the default data_dir"
	}
	addr, err := dialAddr(ep.addr)
	if err != nil {
		return endpoint{}, fmt.Errorf("API address %q from %s: %w", ep.addr, ep.source, err)
	}
	ep.addr = addr
	return ep, nil
}

// dialAddr turns a listen address into one to dial: a unix path stays; a
// listen-on-all host (":7080", "0.0.0.0:7080", "[::]:7080") becomes
// loopback; an http:// prefix is tolerated.
func dialAddr(a string) (string, error) {
	a = strings.TrimSpace(a)
	if p, ok := strings.CutPrefix(a, localapi.UnixPrefix); ok {
		if p == "" {
			return "", errors.New("unix: needs a socket path")
		}
		return a, nil
	}
	a = strings.TrimSuffix(strings.TrimPrefix(a, "http://"), "/")
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", errors.New("want host:port or unix:/path")
	}
	if port == "" {
		return "", errors.New("missing port")
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// resolveToken picks the token: --token, else $DROVER_API_TOKEN, else the
// endpoint's token file. The error says what was tried.
func resolveToken(flagToken string, ep endpoint, getenv func(string) string) (tok, source string, err error) {
	if flagToken != "" {
		return flagToken, "--token", nil
	}
	if t := strings.TrimSpace(getenv(envToken)); t != "" {
		return t, "$" + envToken, nil
	}
	tok, err = localapi.ReadTokenFile(ep.tokenFile)
	if err != nil {
		why := unwrapPath(err)
		return "", "", fmt.Errorf("this command needs the local API token: no --token, no $%s, and cannot read %s (from %s): %v; "+
			"run it as a user who can read that file, pass -c gateway.yaml, or set $%s", envToken, ep.tokenFile, ep.tokenFrom, why, envToken)
	}
	return tok, ep.tokenFile, nil
}

// apiClient talks to the local API.
type apiClient struct {
	ep          endpoint
	base        string // http://host:port
	hc          *http.Client
	token       string
	tokenSource string
	timeout     time.Duration
}

func newAPIClient(ep endpoint, timeout time.Duration) *apiClient {
	tr := &http.Transport{
		Proxy:                 nil, // the API is local; never send it through a proxy
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // reads and scans may take long; ctx bounds them
	}
	base := "http://" + ep.addr
	if p, ok := strings.CutPrefix(ep.addr, localapi.UnixPrefix); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p)
		}
		base = "http://drover"
	}
	return &apiClient{ep: ep, base: base, hc: &http.Client{Transport: tr}, timeout: timeout}
}

func (c *apiClient) close() { c.hc.CloseIdleConnections() }

// apiError is an error answer of the API.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// request sends one request, bounded by the client's timeout, and decodes
// the JSON answer into out when out is not nil.
func (c *apiClient) request(ctx context.Context, method, path string, body []byte, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("answer of %s is larger than %d bytes", path, maxResponse)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("answer of %s is not what drover expects (is %s a drover gateway?): %w", path, c.ep.addr, err)
	}
	return nil
}

// stream sends a request and returns the open response body.
func (c *apiClient) stream(ctx context.Context, method, path string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, method, path, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// send does the round trip; any non-2xx answer becomes an error here.
func (c *apiClient) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb localapi.ErrorBody
	if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
		return nil, &apiError{status: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	msg := eb.Error
	if resp.StatusCode == http.StatusUnauthorized && c.token != "" {
		msg += " (token from " + c.tokenSource + ")"
	}
	return nil, &apiError{status: resp.StatusCode, code: eb.Code, msg: msg}
}

// dialError explains a failed round trip in the technician's terms.
func (c *apiClient) dialError(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the gateway did not answer within %s", c.timeout)
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted")
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("cannot reach the local API at %s (from %s): nothing is listening; is the drover daemon running? "+
			"(choose another address with --api, $%s or -c gateway.yaml)", c.ep.addr, c.ep.source, envAPI)
	case errors.Is(err, syscall.EACCES), errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot reach the local API at %s (from %s): permission denied", c.ep.addr, c.ep.source)
	}
	return fmt.Errorf("cannot reach the local API at %s (from %s): %w", c.ep.addr, c.ep.source, err)
}

// devicePath builds /v1/devices/{id}/<rest...> with escaped segments.
func devicePath(id string, rest ...string) string {
	p := "/v1/devices/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}
