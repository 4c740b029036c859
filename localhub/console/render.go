package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/store"
)

// layout is what every signed-in page shows around its content.
type layout struct {
	Title  string
	Nav    string // which navigation entry is current
	Policy string
	CSRF   string
	Rights map[store.Right]bool
	Page   any
}

// CanWriteTwins reports whether the policy may edit twins, invoke methods and run jobs.
func (l layout) CanWriteTwins() bool { return l.Rights[store.ServiceConnect] }

// CanQuery reports whether the policy may run queries and read twins.
func (l layout) CanQuery() bool { return l.Rights[store.ServiceConnect] }

// CanReadRegistry reports whether the policy may read identities.
func (l layout) CanReadRegistry() bool { return l.Rights[store.RegistryRead] }

var funcs = template.FuncMap{
	"query": func(q string) string { return "/ui/devices?q=" + url.QueryEscape(q) },
	"pct": func(n, total int) int {
		if total <= 0 {
			return 0
		}
		return n * 100 / total
	},
	"inc": func(n int) int { return n + 1 },
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Sprintf("(cannot show: %v)", err)
		}
		return string(b)
	},
}

func (c *Console) parseTemplates() error {
	c.pages = map[string]*template.Template{}
	for _, name := range []string{"signin", "fleet", "devices", "device", "jobs", "job", "firmware", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("console: parse template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// render executes a page into a buffer first, so a template error never leaves half a page.
func (c *Console) render(w http.ResponseWriter, status int, name string, s *session, page any) {
	l := layout{Title: name, Nav: name, Page: page}
	if s != nil {
		l.Policy, l.CSRF, l.Rights = s.policy, s.csrf, s.rights
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", l); err != nil {
		c.log.Error("console template failed", "page", name, "error", err)
		http.Error(w, "500 internal error: page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorView is the error page's data.
type errorView struct {
	Status  int
	Message string
}

// fail shows err as a page, with the status the REST API answered.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status := statusOf(err)
	if status >= 500 {
		c.log.Error("console request failed", "path", r.URL.Path, "error", err)
	}
	c.render(w, status, "error", s, errorView{Status: status, Message: message(err)})
}

// statusOf maps an error to an HTTP status: the API's own for its errors.
func statusOf(err error) int {
	var ae *serviceclient.APIError
	var ue *userError
	switch {
	case errors.As(err, &ae):
		return ae.Status
	case errors.As(err, &ue):
		return ue.status
	}
	return http.StatusInternalServerError
}

// message is what the operator reads for err.
func message(err error) string {
	var ae *serviceclient.APIError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusForbidden {
			return "Your shared access policy does not allow this: " + ae.Message
		}
		if ae.Code != "" {
			return ae.Code + ": " + ae.Message
		}
		return ae.Message
	}
	return err.Error()
}

// userError is bad input from a form, shown with its status.
type userError struct {
	status int
	msg    string
}

func (e *userError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &userError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// queryErrorAt finds the byte offset in a query error ("query: at 9: expected FROM…").
var queryErrorAt = regexp.MustCompile(`\bat (\d+):`)

// positionedError splits q at the offset an error names, for showing a marker there.
type positionedError struct {
	Message           string
	Before, At, After string
	HasPosition       bool
	Offset            int
}

func positionError(q string, err error) *positionedError {
	pe := &positionedError{Message: message(err)}
	m := queryErrorAt.FindStringSubmatch(pe.Message)
	if m == nil {
		return pe
	}
	off, convErr := strconv.Atoi(m[1])
	if convErr != nil || off < 0 || off > len(q) {
		return pe
	}
	pe.HasPosition, pe.Offset = true, off
	pe.Before = q[:off]
	rest := q[off:]
	if rest == "" {
		pe.At = " "
		return pe
	}
	n := strings.IndexAny(rest, " \t\n")
	if n <= 0 {
		n = len(rest)
	}
	pe.At, pe.After = rest[:n], rest[n:]
	return pe
}

// node is one line of a JSON tree.
type node struct {
	Key      string
	Value    string
	Children []node
}

// tree turns a decoded JSON object into sorted nodes; "$metadata" is left out.
func tree(v map[string]any) []node {
	keys := make([]string, 0, len(v))
	for k := range v {
		if k == "$metadata" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]node, 0, len(keys))
	for _, k := range keys {
		out = append(out, toNode(k, v[k]))
	}
	return out
}

func toNode(k string, v any) node {
	switch x := v.(type) {
	case map[string]any:
		return node{Key: k, Children: tree(x)}
	case []any:
		n := node{Key: k}
		for i, e := range x {
			n.Children = append(n.Children, toNode(strconv.Itoa(i), e))
		}
		if len(x) == 0 {
			n.Value = "[]"
		}
		return n
	default:
		b, _ := json.Marshal(x)
		return node{Key: k, Value: string(b)}
	}
}

// urlQueryEscape escapes s for a query parameter.
func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// lookup follows a dot path through decoded JSON.
func lookup(v map[string]any, path ...string) (any, bool) {
	var cur any = v
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[p]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

func lookupString(v map[string]any, path ...string) string {
	x, ok := lookup(v, path...)
	if !ok {
		return ""
	}
	if s, ok := x.(string); ok {
		return s
	}
	b, _ := json.Marshal(x)
	return string(b)
}
