// Package console is localhub's operator console: server-rendered HTML pages
// under /ui/ for the fleet, devices, twins, direct methods and jobs.
//
// The console holds no authority of its own. An operator signs in with a
// shared access policy (name and key, or a connection string); every page
// and action is then one or more calls to the hub's REST API, made in
// process and signed with that policy's key, so the API's own authorization
// decides exactly as it does for droverctl or an Azure SDK. The policy's
// rights are read only to hide controls the API would refuse.
//
// Sessions live in memory (a hub restart signs everyone out). The cookie is
// HttpOnly, Secure, SameSite=Strict and expires; every form carries a CSRF
// token bound to the session.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie names. The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
const (
	sessionCookie = "__Host-drover-session"
	signinCookie  = "__Host-drover-signin"
)

// DefaultSessionTTL is how long a sign-in lasts when Options.SessionTTL is zero.
const DefaultSessionTTL = 8 * time.Hour

// Policies reads shared access policies; the console uses their rights only
// to decide which controls to show.
type Policies interface {
	Policy(ctx context.Context, name string) (store.Policy, error)
}

// Options configure a Console.
type Options struct {
	// API is the hub's REST API handler; the console calls it in process.
	API http.Handler
	// Hostname is the hub's name (SAS resource of the tokens the console signs).
	Hostname string
	// Policies gives each signed-in policy's rights.
	Policies Policies
	Logger   *slog.Logger
	Now      func() time.Time
	// SessionTTL is how long a sign-in lasts (default DefaultSessionTTL).
	SessionTTL time.Duration
}

// Console serves the pages. It is safe for concurrent use.
type Console struct {
	o     Options
	log   *slog.Logger
	now   func() time.Time
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one signed-in browser.
type session struct {
	id      string
	csrf    string
	policy  string
	rights  map[store.Right]bool
	client  *serviceclient.Client
	cs      sas.ConnectionString // for API calls serviceclient has no method for
	expires time.Time
}

func (s *session) can(r store.Right) bool { return s.rights[r] }

// New builds the console and its routes.
func New(o Options) (*Console, error) {
	if o.API == nil || o.Policies == nil || o.Hostname == "" {
		return nil, errors.New("console: API, Policies and Hostname are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	c := &Console{o: o, log: o.Logger, now: o.Now, mux: http.NewServeMux(), sessions: map[string]*session{}}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static files: %w", err)
	}
	c.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /ui/signin", c.signinPage)
	c.mux.HandleFunc("POST /ui/signin", c.signin)
	c.mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/fleet", http.StatusSeeOther)
	})
	c.page("POST /ui/signout", c.signout)
	c.page("GET /ui/fleet", c.fleet)
	c.page("GET /ui/devices", c.deviceList)
	c.page("GET /ui/devices/{id}", c.device)
	c.page("POST /ui/devices/{id}/twin", c.editTwin)
	c.page("POST /ui/devices/{id}/methods", c.invoke)
	c.page("GET /ui/devices/{id}/events", c.events)
	c.page("GET /ui/jobs", c.jobList)
	c.page("POST /ui/jobs", c.createJob)
	c.page("GET /ui/jobs/{id}", c.job)
	c.page("POST /ui/jobs/{id}/cancel", c.cancelJob)
	c.page("GET /ui/firmware", c.firmware)
	c.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	})
	return c, nil
}

// ForHub builds the console for a hub: localhub.Options.UI's factory.
func ForHub(api http.Handler, hostname string, st *store.Store, log *slog.Logger, now func() time.Time) (http.Handler, error) {
	c, err := New(Options{API: api, Hostname: hostname, Policies: st, Logger: log, Now: now})
	if err != nil {
		return nil, err
	}
	return c.Handler(), nil
}

// Handler serves /ui/.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		c.mux.ServeHTTP(w, r)
	})
}

// page registers a handler that needs a session; POSTs also need the session's CSRF token.
func (c *Console) page(pattern string, h func(http.ResponseWriter, *http.Request, *session) error) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method != http.MethodGet {
				http.Error(w, "sign in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/ui/signin?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if err := c.checkCSRF(r, s.csrf); err != nil {
				c.log.Warn("console form refused", "policy", s.policy, "path", r.URL.Path, "error", err)
				http.Error(w, "403 forbidden: "+err.Error(), http.StatusForbidden)
				return
			}
		}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// errCSRF is returned for a POST whose form token is missing or wrong.
var errCSRF = errors.New("missing or invalid CSRF token")

// checkCSRF compares the form's token with want, and refuses a foreign Origin.
func (c *Console) checkCSRF(r *http.Request, want string) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && !strings.EqualFold(strings.TrimPrefix(o, "https://"), r.Host) {
		return fmt.Errorf("%w: origin %q is not this hub", errCSRF, o)
	}
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("read form: %w", err)
	}
	got := r.PostForm.Get("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errCSRF
	}
	return nil
}

// session returns the live session named by the request's cookie, or nil.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if !now.Before(s.expires) {
		delete(c.sessions, s.id)
		return nil
	}
	return s
}

// pruneLocked drops expired sessions; c.mu is held.
func (c *Console) pruneLocked(now time.Time) {
	for id, s := range c.sessions {
		if !now.Before(s.expires) {
			delete(c.sessions, id)
		}
	}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// signinView is the sign-in page's data.
type signinView struct {
	CSRF, Next, Error, Policy string
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, "/ui/fleet", http.StatusSeeOther)
		return
	}
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: tok, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	c.render(w, http.StatusOK, "signin", nil, signinView{CSRF: tok, Next: safeNext(r.URL.Query().Get("next"))})
}

// errSignin is what a failed sign-in shows, whatever the cause, so the page
// does not tell which policy names exist.
var errSignin = errors.New("sign-in failed: unknown policy or wrong key")

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(signinCookie)
	if err != nil {
		http.Error(w, "403 forbidden: sign-in form expired; reload the sign-in page", http.StatusForbidden)
		return
	}
	if err := c.checkCSRF(r, ck.Value); err != nil {
		http.Error(w, "403 forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	view := signinView{CSRF: ck.Value, Next: next, Policy: r.PostForm.Get("policy")}
	cs, err := c.credentials(r.PostForm.Get("policy"), r.PostForm.Get("key"), r.PostForm.Get("connstr"))
	if err != nil {
		view.Error = err.Error()
		c.render(w, http.StatusBadRequest, "signin", nil, view)
		return
	}
	s, err := c.open(r.Context(), cs)
	if err != nil {
		c.log.Info("console sign-in refused", "policy", cs.KeyName, "error", err)
		view.Error = errSignin.Error()
		c.render(w, http.StatusUnauthorized, "signin", nil, view)
		return
	}
	c.mu.Lock()
	c.pruneLocked(c.now())
	c.sessions[s.id] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.id, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, Expires: s.expires, MaxAge: int(c.o.SessionTTL / time.Second)})
	c.log.Info("console sign-in", "policy", s.policy)
	if next == "" {
		next = "/ui/fleet"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// credentials turns the form into a connection string for this hub.
func (c *Console) credentials(policy, key, connstr string) (sas.ConnectionString, error) {
	if strings.TrimSpace(connstr) != "" {
		cs, err := sas.ParseConnectionString(connstr)
		if err != nil {
			return cs, fmt.Errorf("connection string: %w", err)
		}
		if cs.KeyName == "" {
			return cs, errors.New("connection string: a shared access policy connection string (SharedAccessKeyName=…) is needed, not a device's")
		}
		host := cs.HostName
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
		if !strings.EqualFold(host, c.o.Hostname) {
			return cs, fmt.Errorf("connection string: it is for hub %q; this hub is %q", cs.HostName, c.o.Hostname)
		}
		cs.HostName = c.o.Hostname
		return cs, nil
	}
	policy, key = strings.TrimSpace(policy), strings.TrimSpace(key)
	if policy == "" || key == "" {
		return sas.ConnectionString{}, errors.New("give a policy name and key, or a connection string")
	}
	return sas.ConnectionString{HostName: c.o.Hostname, KeyName: policy, Key: key}, nil
}

// open checks the credentials with the REST API itself and builds a session.
// The probe needs RegistryRead; a 403 still proves the key (the API checks
// the signature before the right).
func (c *Console) open(ctx context.Context, cs sas.ConnectionString) (*session, error) {
	cl, err := serviceclient.New(cs, serviceclient.Options{
		Address:    "console.invalid:443", // never dialled: the transport is in process
		HTTPClient: &http.Client{Transport: handlerTransport{h: c.o.API}},
		TokenTTL:   10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("build API client: %w", err)
	}
	if _, err := cl.ListDevices(ctx, 1); err != nil && !errors.Is(err, serviceclient.ErrForbidden) {
		return nil, fmt.Errorf("check policy %q: %w", cs.KeyName, err)
	}
	p, err := c.o.Policies.Policy(ctx, cs.KeyName)
	if err != nil {
		return nil, fmt.Errorf("read policy %q: %w", cs.KeyName, err)
	}
	rights := map[store.Right]bool{}
	for _, r := range p.Rights {
		rights[r] = true
	}
	return &session{id: randomToken(), csrf: randomToken(), policy: p.Name, rights: rights, client: cl, cs: cs, expires: c.now().Add(c.o.SessionTTL)}, nil
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) error {
	c.mu.Lock()
	delete(c.sessions, s.id)
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("console sign-out", "policy", s.policy)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
	return nil
}

// safeNext keeps only local console paths as redirect targets.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return ""
	}
	return next
}
