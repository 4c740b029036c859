package localhub_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/localhub/hubtest"
)

// These tests drive import/export jobs through the REST API of a real hub.

type ieJob struct {
	JobID               string `json:"jobId"`
	Type                string `json:"type"`
	Status              string `json:"status"`
	Progress            int    `json:"progress"`
	ExcludeKeysInExport bool   `json:"excludeKeysInExport"`
	FailureReason       string `json:"failureReason"`
	ImportMode          string `json:"importMode"`
	DeviceCount         int    `json:"deviceCount"`
	ProcessedCount      int    `json:"processedCount"`
	FailedCount         int    `json:"failedCount"`
}

type ieLineError struct {
	Line        int    `json:"line"`
	DeviceID    string `json:"deviceId"`
	ImportMode  string `json:"importMode"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
}

const ndjson = "application/x-ndjson"

// startImport uploads lines as an import job and returns the job.
func (a *api) startImport(input, query string) ieJob {
	a.t.Helper()
	var j ieJob
	decode(a.t, a.must(200, "POST", "/jobs/create"+query, []byte(input), "Content-Type", ndjson).Body, &j)
	if j.JobID == "" || j.Type != "import" {
		a.t.Fatalf("import job %+v", j)
	}
	return j
}

// awaitJob polls a job until it has finished (jobs have no change feed).
func (a *api) awaitJob(id string) ieJob {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var j ieJob
		decode(a.t, a.must(200, "GET", "/jobs/"+id, nil).Body, &j)
		switch j.Status {
		case "completed", "failed", "cancelled":
			return j
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("job %s still %s after 30s: %+v", id, j.Status, j)
		}
		<-tick.C
	}
}

func (a *api) importErrors(id string) []ieLineError {
	a.t.Helper()
	r := a.must(200, "GET", "/jobs/importExport/"+id+"/errors", nil)
	out := []ieLineError{}
	for _, l := range bytes.Split(bytes.TrimSpace(r.Body), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var e ieLineError
		decode(a.t, l, &e)
		out = append(out, e)
	}
	return out
}

func (a *api) runImport(input, query string) (ieJob, []ieLineError) {
	a.t.Helper()
	j := a.awaitJob(a.startImport(input, query).JobID)
	if j.Status != "completed" {
		a.t.Fatalf("import job %+v", j)
	}
	return j, a.importErrors(j.JobID)
}

func (a *api) runExport(excludeKeys bool) (ieJob, []map[string]any, []byte) {
	a.t.Helper()
	var j ieJob
	decode(a.t, a.must(200, "POST", "/jobs/create", map[string]any{"type": "export", "excludeKeysInExport": excludeKeys}).Body, &j)
	j = a.awaitJob(j.JobID)
	if j.Status != "completed" || j.Progress != 100 {
		a.t.Fatalf("export job %+v", j)
	}
	r := a.must(200, "GET", "/jobs/importExport/"+j.JobID+"/output", nil)
	if ct := r.Header.Get("Content-Type"); ct != ndjson {
		a.t.Errorf("output Content-Type %q", ct)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		var m map[string]any
		decode(a.t, sc.Bytes(), &m)
		lines = append(lines, m)
	}
	return j, lines, r.Body
}

func byLine(errs []ieLineError) map[int]ieLineError {
	m := map[int]ieLineError{}
	for _, e := range errs {
		m[e.Line] = e
	}
	return m
}

func TestImportCreateUpdateDelete(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	input := strings.Join([]string{
		`{"id":"imp-1","importMode":"create","tags":{"site":"plant1","floor":2},"properties":{"desired":{"interval":30},"reported":{"ignored":true}}}`,
		`{"id":"imp-2","importMode":"Create","status":"disabled","statusReason":"spare","authentication":{"type":"sas","symmetricKey":{"primaryKey":"` + key + `","secondaryKey":"` + key + `"}}}`,
		``, // blank lines are skipped, not errors
		`{"id":"imp-3","capabilities":{"iotEdge":true}}`, // no importMode: createOrUpdate
		`this is not json`,
		`{"id":"imp-1","importMode":"create"}`,   // duplicate
		`{"id":"bad id!","importMode":"create"}`, // invalid id
		`{"id":"imp-4","importMode":"frobnicate"}`,
		`{"id":"imp-5","importMode":"update"}`, // unknown device
		`[1,2,3]`,
		`{"id":"imp-6","tags":"not an object"}`,
		`{"id":"imp-7","importMode":"updateIfMatchETag"}`, // no eTag
		`{"importMode":"create"}`,
		`{"id":"imp-8","moduleId":"m1"}`,
		`{"id":"imp-9","tags":{"a":1,"a":2}}`, // duplicate key: strict twin decoding
		`{"id":"imp-10","authentication":{"type":"sas","symmetricKey":{"primaryKey":"short","secondaryKey":""}}}`,
		`{"id":"imp-11","status":"sleeping"}`,
	}, "\n") + "\n"
	j, errs := a.runImport(input, "")
	if j.DeviceCount != 16 || j.ProcessedCount != 16 || j.FailedCount != 13 || j.ImportMode != "createOrUpdate" || j.Progress != 100 {
		t.Fatalf("job %+v", j)
	}
	want := map[int]string{5: "IotHubFormatError", 6: "DeviceAlreadyExists", 7: "ArgumentInvalid", 8: "ArgumentInvalid",
		9: "DeviceNotFound", 10: "IotHubFormatError", 11: "ArgumentInvalid", 12: "ArgumentInvalid", 13: "ArgumentInvalid",
		14: "ArgumentInvalid", 15: "ArgumentInvalid", 16: "ArgumentInvalid", 17: "ArgumentInvalid"}
	got := byLine(errs)
	if len(errs) != len(want) {
		t.Errorf("%d errors, want %d: %+v", len(errs), len(want), errs)
	}
	for line, code := range want {
		if e, ok := got[line]; !ok || e.ErrorCode != code || e.ErrorStatus == "" {
			t.Errorf("line %d: error %+v, want code %s", line, e, code)
		}
	}
	if e := got[6]; e.DeviceID != "imp-1" || e.ImportMode != "create" {
		t.Errorf("line 6 error names %+v", e)
	}

	tw := a.must(200, "GET", "/twins/imp-1", nil).json(t)
	if tags := tw["tags"].(map[string]any); tags["site"] != "plant1" || tags["floor"] != 2.0 {
		t.Errorf("imp-1 tags %v", tags)
	}
	props := tw["properties"].(map[string]any)
	if props["desired"].(map[string]any)["interval"] != 30.0 || props["reported"].(map[string]any)["ignored"] != nil {
		t.Errorf("imp-1 properties %v", props)
	}
	d2 := a.must(200, "GET", "/devices/imp-2", nil).json(t)
	if d2["status"] != "disabled" || d2["statusReason"] != "spare" || d2["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"] != key {
		t.Errorf("imp-2 %v", d2)
	}
	d3 := a.must(200, "GET", "/devices/imp-3", nil).json(t)
	if !strings.HasPrefix(d3["deviceScope"].(string), "ms-azure-iot-edge://imp-3-") {
		t.Errorf("imp-3 (edge) scope %v", d3["deviceScope"])
	}

	// Update: keys are kept, status changes; IfMatchETag checks the etag.
	etag := d2["etag"].(string)
	input = strings.Join([]string{
		`{"id":"imp-2","importMode":"update","status":"enabled"}`,
		`{"id":"imp-3","importMode":"updateIfMatchETag","eTag":"stale","status":"disabled"}`,
		`{"id":"imp-1","importMode":"updateTwin","tags":{"site":"plant2"}}`,
		`{"id":"imp-1","importMode":"updateTwinIfMatchETag","twinETag":"stale","tags":{"site":"plant3"}}`,
		`{"id":"imp-2","importMode":"updateIfMatchETag","eTag":"` + etag + `"}`, // etag changed by line 1
	}, "\n")
	j, errs = a.runImport(input, "")
	got = byLine(errs)
	if j.FailedCount != 3 || got[2].ErrorCode != "PreconditionFailed" || got[4].ErrorCode != "PreconditionFailed" || got[5].ErrorCode != "PreconditionFailed" {
		t.Errorf("update job %+v errors %+v", j, errs)
	}
	d2 = a.must(200, "GET", "/devices/imp-2", nil).json(t)
	if d2["status"] != "enabled" || d2["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"] != key {
		t.Errorf("imp-2 after update %v", d2)
	}
	if tags := a.must(200, "GET", "/twins/imp-1", nil).json(t)["tags"].(map[string]any); tags["site"] != "plant2" || tags["floor"] != nil {
		t.Errorf("imp-1 tags after updateTwin (replace) %v", tags)
	}

	// Delete with --mode style default: lines name only the id.
	j, errs = a.runImport("{\"id\":\"imp-1\"}\n{\"id\":\"imp-2\"}\n{\"id\":\"nope\"}", "?importMode=delete")
	if j.ImportMode != "delete" || j.FailedCount != 1 || len(errs) != 1 || errs[0].ErrorCode != "DeviceNotFound" || errs[0].Line != 3 {
		t.Errorf("delete job %+v errors %+v", j, errs)
	}
	a.must(404, "GET", "/devices/imp-1", nil)
	a.must(404, "GET", "/devices/imp-2", nil)
	a.must(200, "GET", "/devices/imp-3", nil)
}

func TestImportNotifiesSessions(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	d := env.CreateDevice(t, "live-1")
	dev := env.Connect(t, "live-1", d.PrimaryKey)
	a.runImport(`{"id":"live-1","importMode":"updateTwin","properties":{"desired":{"mode":"eco"}}}`, "")
	m := dev.Await(t, "$iothub/twin/PATCH/properties/desired/#", 5*time.Second)
	var patch map[string]any
	decode(t, m.Payload(), &patch)
	if patch["mode"] != "eco" {
		t.Errorf("desired notification %s", m.Payload())
	}
	a.runImport(`{"id":"live-1","importMode":"update","status":"disabled"}`, "")
	select {
	case <-dev.Lost:
	case <-time.After(5 * time.Second):
		t.Error("disabling by import did not end the session")
	}
}

func TestExportRoundTrip(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	var lines []string
	for i := range 25 {
		lines = append(lines, fmt.Sprintf(`{"id":"exp-%02d","importMode":"create","tags":{"n":%d,"site":"s%d"},"properties":{"desired":{"v":%d}}}`, i, i, i%3, i))
	}
	lines = append(lines, `{"id":"edge-1","importMode":"create","capabilities":{"iotEdge":true}}`)
	a.runImport(strings.Join(lines, "\n"), "")
	tw := a.must(200, "GET", "/twins/exp-07", nil).json(t)

	j, out, raw := a.runExport(false)
	if j.DeviceCount != 26 || j.ProcessedCount != 26 || len(out) != 26 {
		t.Fatalf("export job %+v, %d lines", j, len(out))
	}
	var e7 map[string]any
	for _, l := range out {
		if _, ok := l["importMode"]; ok {
			t.Fatalf("export line names an importMode: %v", l)
		}
		if l["id"] == "exp-07" {
			e7 = l
		}
	}
	if e7 == nil || e7["twinETag"] != tw["etag"] || e7["tags"].(map[string]any)["site"] != "s1" ||
		e7["properties"].(map[string]any)["desired"].(map[string]any)["v"] != 7.0 {
		t.Fatalf("exported exp-07 %v (twin %v)", e7, tw)
	}
	keys := e7["authentication"].(map[string]any)["symmetricKey"].(map[string]any)
	if len(keys["primaryKey"].(string)) != 44 {
		t.Fatalf("exported keys %v", keys)
	}

	// Without keys.
	_, noKeys, _ := a.runExport(true)
	for _, l := range noKeys {
		if k := l["authentication"].(map[string]any)["symmetricKey"].(map[string]any); k["primaryKey"] != nil || k["secondaryKey"] != nil {
			t.Fatalf("excludeKeysInExport: %v", l)
		}
	}

	// The export imports into a fresh hub as it is, keys and twins included.
	env2 := hubtest.Start(t)
	b := newAPI(t, env2)
	j2, errs := b.runImport(string(raw), "")
	if j2.FailedCount != 0 || len(errs) != 0 {
		t.Fatalf("re-import %+v %+v", j2, errs)
	}
	_, out2, _ := b.runExport(false)
	if len(out2) != len(out) {
		t.Fatalf("%d lines after round trip, want %d", len(out2), len(out))
	}
	for i := range out {
		x, y := out[i], out2[i]
		for _, k := range []string{"id", "status", "authentication", "tags", "capabilities"} {
			if !jsonEqual(x[k], y[k]) {
				t.Errorf("%v: %s %v after round trip, was %v", x["id"], k, y[k], x[k])
			}
		}
		if !jsonEqual(x["properties"].(map[string]any)["desired"], y["properties"].(map[string]any)["desired"]) {
			t.Errorf("%v: desired differs after round trip", x["id"])
		}
	}
}

func TestImportExportOneAtATime(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	// An upload that has not finished holds the job slot.
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", "https://"+env.HTTPSAddr+"/jobs/create?api-version=2021-04-12", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", a.token)
	req.Header.Set("Content-Type", ndjson)
	type result struct {
		resp *http.Response
		err  error
	}
	first := make(chan result, 1)
	go func() {
		resp, err := a.http.Do(req)
		first <- result{resp, err}
	}()
	if _, err := pw.Write([]byte(`{"id":"slot-1","importMode":"create"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	// The hub has read the first line once this export is refused; poll
	// because the upload's progress has no event of its own.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := a.do("POST", "/jobs/create", map[string]any{"type": "export"})
		if r.Status == 409 {
			if c := r.errorCode(t); c != "JobQuotaExceeded" {
				t.Errorf("second job: code %s", c)
			}
			break
		}
		if r.Status != 200 {
			t.Fatalf("second job: %d %s", r.Status, r.Body)
		}
		// The export won the slot before the upload began: let it finish.
		var j ieJob
		decode(t, r.Body, &j)
		a.awaitJob(j.JobID)
		if time.Now().After(deadline) {
			t.Fatal("the upload never held the job slot")
		}
	}
	r := a.do("POST", "/jobs/create", "{\"id\":\"x\"}", "Content-Type", ndjson)
	if r.Status != 409 {
		t.Errorf("second import: %d %s", r.Status, r.Body)
	}
	pw.Close()
	res := <-first
	if res.err != nil {
		t.Fatal(res.err)
	}
	defer res.resp.Body.Close()
	var j ieJob
	b, _ := io.ReadAll(res.resp.Body)
	if res.resp.StatusCode != 200 {
		t.Fatalf("first import: %d %s", res.resp.StatusCode, b)
	}
	decode(t, b, &j)
	if j = a.awaitJob(j.JobID); j.Status != "completed" || j.ProcessedCount != 1 {
		t.Fatalf("first import %+v", j)
	}
	// Free again.
	a.runExport(false)
	var list []ieJob
	decode(t, a.must(200, "GET", "/jobs", nil).Body, &list)
	if len(list) < 2 || list[0].Type != "export" {
		t.Errorf("job list %+v", list)
	}
}

func TestImportCancel(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "https://"+env.HTTPSAddr+"/jobs/create?api-version=2021-04-12", pr)
	req.Header.Set("Authorization", a.token)
	req.Header.Set("Content-Type", ndjson)
	created := make(chan []byte, 1)
	go func() {
		resp, err := a.http.Do(req)
		if err != nil {
			created <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		created <- b
	}()
	pw.Write([]byte(`{"id":"c-1"}` + "\n"))
	// Find the job and cancel it while its input is still arriving: it
	// never applies a line.
	var id string
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for id == "" {
		var list []ieJob
		decode(t, a.must(200, "GET", "/jobs", nil).Body, &list)
		switch {
		case len(list) > 0:
			id = list[0].JobID
		case time.Now().After(deadline):
			t.Fatal("import job never listed")
		default:
			<-tick.C
		}
	}
	a.must(204, "DELETE", "/jobs/"+id, nil)
	pw.Write([]byte(`{"id":"c-2"}` + "\n"))
	pw.Close()
	if b := <-created; b == nil {
		t.Fatal("upload failed")
	}
	j := a.awaitJob(id)
	if j.Status != "cancelled" || j.FailureReason == "" {
		t.Fatalf("cancelled job %+v", j)
	}
	a.must(204, "DELETE", "/jobs/"+id, nil) // finished: nothing to do
	a.must(404, "GET", "/devices/c-1", nil)
}

func TestImportExportBadRequests(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	imp, _ := a.runImport(`{"id":"ok-1"}`, "")
	exp, _, _ := a.runExport(false)
	cases := []struct {
		name, method, path string
		body               any
		hdr                []string
		status             int
		code               string
	}{
		{"no type", "POST", "/jobs/create", map[string]any{}, nil, 400, "ArgumentInvalid"},
		{"unknown type", "POST", "/jobs/create", map[string]any{"type": "backup"}, nil, 400, "ArgumentInvalid"},
		{"import without input", "POST", "/jobs/create", map[string]any{"type": "import", "inputBlobContainerUri": "https://x/y"}, nil, 400, "ArgumentInvalid"},
		{"not JSON", "POST", "/jobs/create", "{type", nil, 400, "IotHubFormatError"},
		{"empty body", "POST", "/jobs/create", "", nil, 400, "ArgumentInvalid"},
		{"empty import", "POST", "/jobs/create", " \n\n", []string{"Content-Type", ndjson}, 400, "ArgumentInvalid"},
		{"bad default mode", "POST", "/jobs/create?importMode=zap", "{\"id\":\"a\"}", []string{"Content-Type", ndjson}, 400, "ArgumentInvalid"},
		{"unknown job", "GET", "/jobs/nope", nil, nil, 404, "JobNotFound"},
		{"cancel unknown job", "DELETE", "/jobs/nope", nil, nil, 404, "JobNotFound"},
		{"output of unknown job", "GET", "/jobs/importExport/nope/output", nil, nil, 404, "JobNotFound"},
		{"output of an import", "GET", "/jobs/importExport/" + imp.JobID + "/output", nil, nil, 400, "ArgumentInvalid"},
		{"errors of an export", "GET", "/jobs/importExport/" + exp.JobID + "/errors", nil, nil, 400, "ArgumentInvalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do(tc.method, tc.path, tc.body, tc.hdr...)
			if r.Status != tc.status || r.errorCode(t) != tc.code {
				t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, r.Status, r.Body, tc.status, tc.code)
			}
		})
	}
	// Rights: reading needs RegistryRead, importing RegistryWrite.
	ro := a.as("registryRead")
	if r := ro.do("POST", "/jobs/create", "{\"id\":\"x\"}", "Content-Type", ndjson); r.Status != 403 {
		t.Errorf("import with registryRead: %d %s", r.Status, r.Body)
	}
	ro.must(200, "GET", "/jobs/"+exp.JobID, nil)
	if r := a.as("service").do("GET", "/jobs", nil); r.Status != 403 {
		t.Errorf("list with service policy: %d", r.Status)
	}
	// A line longer than the limit is a line error; the rest is applied.
	long := `{"id":"long-1","tags":{"x":"` + strings.Repeat("a", 300<<10) + `"}}`
	j, errs := a.runImport(long+"\n{\"id\":\"after-long\"}\n", "")
	if j.FailedCount != 1 || len(errs) != 1 || errs[0].Line != 1 || errs[0].ErrorCode != "MessageTooLarge" {
		t.Errorf("long line: %+v %+v", j, errs)
	}
	a.must(200, "GET", "/devices/after-long", nil)
}
