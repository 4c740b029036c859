package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/store"
)

// pageSize is the devices list's page length.
const pageSize = 50

// fleetView is the fleet page's data.
type fleetView struct {
	Total  int
	Groups []fleetGroup
	Error  string
}

// fleetGroup is one GROUP BY query's answer.
type fleetGroup struct {
	ID, Title, Path, Query string
	Rows                   []fleetRow
	More                   bool
	Error                  string
}

// fleetRow is one group: its value, count and the query listing its devices.
type fleetRow struct {
	Label, Key string
	Count      int
	Link       string
}

// fleetGroups are the fleet page's breakdowns: a path to GROUP BY each.
var fleetGroups = []struct{ id, title, path string }{
	{"connection", "Connection to the hub", "connectionState"},
	{"reported-connection", "Field connection (reported)", "properties.reported.connection.state"},
	{"firmware", "Firmware status (reported)", "properties.reported.firmware.status"},
	{"gateway", "By gateway", "deviceScope"},
}

// GroupQuery is the query the fleet page runs for a breakdown over path.
func GroupQuery(path string) string {
	return "SELECT " + path + " AS v, COUNT() AS n FROM devices GROUP BY " + path
}

func (c *Console) fleet(w http.ResponseWriter, r *http.Request, s *session) error {
	v := fleetView{}
	if !s.can(store.ServiceConnect) {
		v.Error = "The fleet counts are queries, which need the ServiceConnect permission; policy " + s.policy + " does not have it."
		c.render(w, http.StatusOK, "fleet", s, v)
		return nil
	}
	ctx := r.Context()
	items, _, err := s.client.Query(ctx, "SELECT COUNT() AS n FROM devices", 1, "")
	if err != nil {
		return fmt.Errorf("count devices: %w", err)
	}
	if len(items) == 1 {
		var row struct{ N int }
		if err := json.Unmarshal(items[0], &row); err != nil {
			return fmt.Errorf("decode device count: %w", err)
		}
		v.Total = row.N
	}
	gateways := map[string]string{}
	for _, g := range fleetGroups {
		fg := fleetGroup{ID: g.id, Title: g.title, Path: g.path, Query: GroupQuery(g.path)}
		items, next, err := s.client.Query(ctx, fg.Query, 100, "")
		if err != nil {
			fg.Error = message(err)
			v.Groups = append(v.Groups, fg)
			continue
		}
		fg.More = next != ""
		for _, it := range items {
			var row map[string]any
			if err := json.Unmarshal(it, &row); err != nil {
				return fmt.Errorf("decode %s group: %w", g.id, err)
			}
			n, _ := row["n"].(float64)
			val, defined := row["v"]
			fr := fleetRow{Count: int(n)}
			switch {
			case !defined || val == nil:
				fr.Label, fr.Key = "(not set)", ""
				fr.Link = "SELECT * FROM devices WHERE NOT IS_DEFINED(" + g.path + ")"
				if defined {
					fr.Link = "SELECT * FROM devices WHERE " + g.path + " = null"
				}
			default:
				fr.Key = fmt.Sprint(val)
				fr.Label = fr.Key
				fr.Link = "SELECT * FROM devices WHERE " + g.path + " = " + literal(val)
			}
			if g.id == "gateway" {
				fr.Label = gatewayLabel(fr.Key, gateways)
			}
			fg.Rows = append(fg.Rows, fr)
		}
		v.Groups = append(v.Groups, fg)
	}
	c.render(w, http.StatusOK, "fleet", s, v)
	return nil
}

// gatewayLabel names a device scope by its gateway: "ms-azure-iot-edge://gw-1-637…" is gw-1's.
func gatewayLabel(scope string, _ map[string]string) string {
	if scope == "" {
		return "(no gateway)"
	}
	id := strings.TrimPrefix(scope, "ms-azure-iot-edge://")
	if i := strings.LastIndexByte(id, '-'); i > 0 {
		if _, err := strconv.ParseUint(id[i+1:], 10, 64); err == nil {
			id = id[:i]
		}
	}
	return id
}

// literal writes a JSON value as a query literal.
func literal(v any) string {
	if s, ok := v.(string); ok {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// devicesView is the devices list's data.
type devicesView struct {
	Query    string
	Twins    []deviceRow
	Columns  []string
	Raw      [][]string
	Err      *positionedError
	Next     string
	PageNo   int
	Registry bool // listed from the registry: the policy cannot query
}

// deviceRow is one twin in the list.
type deviceRow struct {
	ID, Connection, Status, Parent, FieldState, Firmware string
	Edge                                                 bool
}

// DefaultQuery is what the devices list shows first.
const DefaultQuery = "SELECT * FROM devices"

func (c *Console) deviceList(w http.ResponseWriter, r *http.Request, s *session) error {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		q = DefaultQuery
	}
	v := devicesView{Query: q, PageNo: 1}
	if n, err := strconv.Atoi(r.URL.Query().Get("p")); err == nil && n > 1 {
		v.PageNo = n
	}
	if !s.can(store.ServiceConnect) {
		return c.registryList(w, r, s, v)
	}
	full := q
	if !strings.HasPrefix(strings.ToUpper(q), "SELECT") {
		full = "SELECT * FROM devices WHERE " + q // a bare condition is a WHERE clause
	}
	items, next, err := s.client.Query(r.Context(), full, pageSize, r.URL.Query().Get("c"))
	if err != nil {
		var ae *serviceclient.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			v.Query = full
			v.Err = positionError(full, err)
			c.render(w, http.StatusBadRequest, "devices", s, v)
			return nil
		}
		return fmt.Errorf("run query: %w", err)
	}
	v.Next = next
	rows := make([]map[string]any, 0, len(items))
	isTwin := len(items) > 0
	for _, it := range items {
		var m map[string]any
		if err := json.Unmarshal(it, &m); err != nil {
			return fmt.Errorf("decode query item: %w", err)
		}
		_, hasID := m["deviceId"]
		_, hasProps := m["properties"]
		isTwin = isTwin && hasID && hasProps
		rows = append(rows, m)
	}
	if isTwin {
		for _, m := range rows {
			v.Twins = append(v.Twins, twinRow(m))
		}
	} else {
		v.Columns, v.Raw = rawTable(rows)
	}
	c.render(w, http.StatusOK, "devices", s, v)
	return nil
}

func twinRow(m map[string]any) deviceRow {
	row := deviceRow{
		ID: lookupString(m, "deviceId"), Connection: lookupString(m, "connectionState"), Status: lookupString(m, "status"),
		FieldState: lookupString(m, "properties", "reported", "connection", "state"),
		Firmware:   lookupString(m, "properties", "reported", "firmware", "status"),
	}
	if e, ok := lookup(m, "capabilities", "iotEdge"); ok && e == true {
		row.Edge = true
	}
	if ps, ok := m["parentScopes"].([]any); ok && len(ps) > 0 {
		if p, ok := ps[0].(string); ok {
			row.Parent = gatewayLabel(p, nil)
		}
	}
	return row
}

// rawTable lays out projection or aggregate rows: one column per name seen.
func rawTable(rows []map[string]any) ([]string, [][]string) {
	seen := map[string]bool{}
	var cols []string
	for _, m := range rows {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	sort.Strings(cols)
	out := make([][]string, 0, len(rows))
	for _, m := range rows {
		line := make([]string, len(cols))
		for i, k := range cols {
			if x, ok := m[k]; ok {
				if str, ok := x.(string); ok {
					line[i] = str
				} else {
					b, _ := json.Marshal(x)
					line[i] = string(b)
				}
			}
		}
		out = append(out, line)
	}
	return cols, out
}

// registryList lists identities for a policy that can read the registry but not query.
func (c *Console) registryList(w http.ResponseWriter, r *http.Request, s *session, v devicesView) error {
	v.Registry = true
	v.Query = ""
	devs, err := s.client.ListDevices(r.Context(), 1000)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	for _, d := range devs {
		row := deviceRow{ID: d.DeviceID, Connection: d.ConnectionState, Status: d.Status, Edge: d.IsEdge()}
		if len(d.ParentScopes) > 0 {
			row.Parent = gatewayLabel(d.ParentScopes[0], nil)
		}
		v.Twins = append(v.Twins, row)
	}
	c.render(w, http.StatusOK, "devices", s, v)
	return nil
}

// deviceView is the device page's data.
type deviceView struct {
	ID       string
	Identity *serviceclient.Device
	Twin     *serviceclient.Twin
	Parent   string

	TagsJSON, DesiredJSON             string
	DesiredVersion, ReportedVersion   int64
	Desired, Reported                 []node
	Jobs                              []serviceclient.DeviceJob
	JobsError, TwinError, IdentityErr string

	Saved    string // section saved by the last form, shown once
	Conflict *conflictView
	Problem  string // a refused edit: what the API said
	Edit     editForm
	Method   methodForm
	Answer   *methodAnswer
}

// editForm is the twin edit form, refilled after a refusal.
type editForm struct{ Section, Patch string }

// methodForm is the direct method form.
type methodForm struct {
	Name, Payload string
	Timeout       int
}

// methodAnswer is a direct method's result.
type methodAnswer struct {
	Name    string
	Status  int
	Payload string
	Error   string
}

// conflictView explains a refused edit whose etag was stale.
type conflictView struct{ YourEtag, CurrentEtag string }

func (c *Console) device(w http.ResponseWriter, r *http.Request, s *session) error {
	v := &deviceView{ID: r.PathValue("id"), Saved: r.URL.Query().Get("saved"), Method: methodForm{Timeout: 30}}
	if err := c.loadDevice(r, s, v); err != nil {
		return err
	}
	c.render(w, http.StatusOK, "device", s, v)
	return nil
}

// loadDevice reads what the policy may read about the device. A device that
// does not exist is an error; a section the policy may not read says so.
func (c *Console) loadDevice(r *http.Request, s *session, v *deviceView) error {
	ctx := r.Context()
	id := v.ID
	if s.can(store.RegistryRead) {
		d, err := s.client.GetDevice(ctx, id)
		if err != nil {
			return fmt.Errorf("read device %s: %w", id, err)
		}
		v.Identity = d
		if len(d.ParentScopes) > 0 {
			v.Parent = gatewayLabel(d.ParentScopes[0], nil)
		}
	} else {
		v.IdentityErr = "Reading the identity needs RegistryRead."
	}
	if !s.can(store.ServiceConnect) {
		v.TwinError = "Reading the twin needs ServiceConnect."
		return nil
	}
	t, err := s.client.GetTwin(ctx, id)
	if err != nil {
		return fmt.Errorf("read twin of %s: %w", id, err)
	}
	v.Twin = t
	if len(t.ParentScopes) > 0 {
		v.Parent = gatewayLabel(t.ParentScopes[0], nil)
	}
	v.TagsJSON = pretty(t.Tags)
	v.DesiredJSON = pretty(withoutMeta(t.Properties.Desired))
	v.DesiredVersion = version(t.Properties.Desired)
	v.ReportedVersion = version(t.Properties.Reported)
	v.Desired = tree(withoutMeta(t.Properties.Desired))
	v.Reported = tree(withoutMeta(t.Properties.Reported))
	items, _, err := s.client.Query(ctx, "SELECT * FROM devices.jobs WHERE deviceId = "+literal(id), 20, "")
	if err != nil {
		v.JobsError = message(err)
		return nil
	}
	for _, it := range items {
		var dj serviceclient.DeviceJob
		if err := json.Unmarshal(it, &dj); err != nil {
			return fmt.Errorf("decode job record: %w", err)
		}
		v.Jobs = append(v.Jobs, dj)
	}
	return nil
}

func withoutMeta(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, x := range m {
		if k != "$metadata" && k != "$version" {
			out[k] = x
		}
	}
	return out
}

func version(m map[string]any) int64 {
	f, _ := m["$version"].(float64)
	return int64(f)
}

func pretty(v any) string {
	if v == nil {
		return "{}"
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "{}"
	}
	return string(b)
}

// decodePatch reads a form's JSON object (a merge patch: null deletes).
func decodePatch(field, s string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, badInput("%s: not a JSON object: %v", field, err)
	}
	if m == nil {
		return nil, badInput("%s: not a JSON object", field)
	}
	return m, nil
}

func (c *Console) editTwin(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	section, patchText, etag := r.PostForm.Get("section"), r.PostForm.Get("patch"), r.PostForm.Get("etag")
	var patch serviceclient.Twin
	m, err := decodePatch("patch", patchText)
	switch {
	case err != nil:
	case section == "tags":
		patch.Tags = m
	case section == "desired":
		patch.Properties.Desired = m
	default:
		err = badInput("section %q: want tags or desired", section)
	}
	if err == nil {
		_, err = s.client.UpdateTwin(r.Context(), id, patch, etag)
		if err == nil {
			http.Redirect(w, r, "/ui/devices/"+pathEscape(id)+"?saved="+section, http.StatusSeeOther)
			return nil
		}
	}
	status := statusOf(err)
	if status == http.StatusForbidden || status == http.StatusUnauthorized || status == http.StatusNotFound || status >= 500 {
		return err
	}
	v := &deviceView{ID: id, Edit: editForm{Section: section, Patch: patchText}, Method: methodForm{Timeout: 30}}
	if lerr := c.loadDevice(r, s, v); lerr != nil {
		return lerr
	}
	if errors.Is(err, serviceclient.ErrPreconditionFailed) {
		v.Conflict = &conflictView{YourEtag: etag}
		if v.Twin != nil {
			v.Conflict.CurrentEtag = v.Twin.ETag
		}
	} else {
		v.Problem = message(err)
	}
	c.render(w, status, "device", s, v)
	return nil
}

func (c *Console) invoke(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	f := methodForm{Name: strings.TrimSpace(r.PostForm.Get("method")), Payload: r.PostForm.Get("payload"), Timeout: 30}
	if t := r.PostForm.Get("timeout"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil {
			return badInput("timeout %q: not a whole number of seconds", t)
		}
		f.Timeout = n
	}
	payload := json.RawMessage("null")
	if strings.TrimSpace(f.Payload) != "" {
		if !json.Valid([]byte(f.Payload)) {
			return badInput("payload: not valid JSON")
		}
		payload = json.RawMessage(f.Payload)
	}
	ans := &methodAnswer{Name: f.Name}
	status := http.StatusOK
	resp, err := s.client.InvokeMethod(r.Context(), id, serviceclient.MethodRequest{MethodName: f.Name, Payload: payload, ResponseTimeoutInSeconds: f.Timeout})
	if err != nil {
		status = statusOf(err)
		if status == http.StatusForbidden || status == http.StatusUnauthorized {
			return err
		}
		ans.Error = message(err)
	} else {
		ans.Status = resp.Status
		ans.Payload = pretty(resp.Payload)
	}
	v := &deviceView{ID: id, Method: f, Answer: ans}
	if err := c.loadDevice(r, s, v); err != nil {
		return err
	}
	c.render(w, status, "device", s, v)
	return nil
}

// events relays the device's telemetry from the hub's event stream to the
// browser as server-sent events, one "data:" line of JSON per message.
func (c *Console) events(w http.ResponseWriter, r *http.Request, s *session) error {
	var from int64
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			from = n + 1
		}
	}
	st, err := s.client.Events(r.Context(), r.PathValue("id"), from)
	if err != nil {
		return fmt.Errorf("open event stream: %w", err)
	}
	defer st.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, ": stream open\n\n")
	if err := rc.Flush(); err != nil {
		return nil
	}
	for {
		ev, err := st.Next()
		if err != nil {
			return nil // the browser left or the hub stopped: EventSource reconnects
		}
		body, _ := ev.BodyBytes()
		line, _ := json.Marshal(map[string]any{"seq": ev.Seq, "time": ev.EnqueuedTime, "body": string(body)})
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", ev.Seq, line); err != nil {
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// apiGet calls a REST route serviceclient has no method for, signed with
// the session's policy like every other call, and decodes its JSON answer.
func (c *Console) apiGet(r *http.Request, s *session, path string, out any) error {
	tok, err := sas.Sign(s.cs.HostName, s.cs.Key, s.cs.KeyName, c.now().Add(10*time.Minute))
	if err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "https://"+s.cs.HostName+path+"?api-version="+serviceclient.APIVersion, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", tok)
	resp, err := handlerTransport{h: c.o.API}.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		_ = json.Unmarshal(b, &e)
		return &serviceclient.APIError{Status: resp.StatusCode, Message: e.Message}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return nil
}
