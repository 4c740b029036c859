package localhub_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/localhub/hubtest"
)

func TestTwinServiceMergeVersionMetadata(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	a.must(200, "PUT", "/devices/d1", map[string]any{})

	tw := a.must(200, "GET", "/twins/d1", nil).json(t)
	if tw["deviceId"] != "d1" || tw["version"] == nil || tw["etag"] == "" {
		t.Fatalf("new twin: %v", tw)
	}
	props := tw["properties"].(map[string]any)
	if props["desired"].(map[string]any)["$version"] != float64(1) || props["reported"].(map[string]any)["$version"] != float64(1) {
		t.Fatalf("a new twin starts at $version 1: %v", props)
	}

	patch := `{"tags":{"site":"plant1","loc":{"line":"A","cell":3}},"properties":{"desired":{"config":{"setpoint":21.5,"mode":"auto"},"old":true}}}`
	tw = a.must(200, "PATCH", "/twins/d1", patch, "If-Match", fmt.Sprintf("%q", tw["etag"])).json(t)
	des := tw["properties"].(map[string]any)["desired"].(map[string]any)
	if des["$version"] != float64(2) {
		t.Fatalf("desired $version after one patch: %v", des["$version"])
	}
	meta := des["$metadata"].(map[string]any)
	cfgMeta := meta["config"].(map[string]any)
	if cfgMeta["$lastUpdated"] == nil || cfgMeta["$lastUpdatedVersion"] != float64(2) || cfgMeta["setpoint"].(map[string]any)["$lastUpdated"] == nil {
		t.Fatalf("desired metadata per level: %v", meta)
	}

	// Merge: nested merge, null deletes, other keys stay.
	tw = a.must(200, "PATCH", "/twins/d1", `{"tags":{"loc":{"cell":null}},"properties":{"desired":{"config":{"mode":"manual"},"old":null}}}`).json(t)
	des = tw["properties"].(map[string]any)["desired"].(map[string]any)
	if _, ok := des["old"]; ok {
		t.Fatal("null did not delete desired.old")
	}
	cfg := des["config"].(map[string]any)
	if cfg["setpoint"] != 21.5 || cfg["mode"] != "manual" || des["$version"] != float64(3) {
		t.Fatalf("merge: %v", des)
	}
	if _, ok := des["$metadata"].(map[string]any)["old"]; ok {
		t.Fatal("metadata of a deleted key kept")
	}
	tags := tw["tags"].(map[string]any)
	if tags["site"] != "plant1" || fmt.Sprint(tags["loc"]) != "map[line:A]" {
		t.Fatalf("tags merge: %v", tags)
	}
	if _, ok := tags["$version"]; ok {
		t.Fatal("tags carry no $version")
	}

	// PUT replaces tags and desired, leaves reported alone.
	tw = a.must(200, "PUT", "/twins/d1", `{"tags":{"only":"this"},"properties":{"desired":{"x":1}}}`).json(t)
	des = tw["properties"].(map[string]any)["desired"].(map[string]any)
	if fmt.Sprint(tw["tags"]) != "map[only:this]" || des["x"] != float64(1) || des["config"] != nil || des["$version"] != float64(4) {
		t.Fatalf("replace: %v %v", tw["tags"], des)
	}

	// Etag guards tags: a stale etag is refused and nothing changes.
	stale := tw["etag"]
	a.must(200, "PATCH", "/twins/d1", `{"tags":{"n":1}}`)
	a.must(412, "PATCH", "/twins/d1", `{"tags":{"n":2}}`, "If-Match", fmt.Sprintf("%q", stale))
	if n := a.must(200, "GET", "/twins/d1", nil).json(t)["tags"].(map[string]any)["n"]; n != float64(1) {
		t.Fatalf("stale patch applied: n=%v", n)
	}
}

func TestTwinLimitsAndBadInput(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	a.must(200, "PUT", "/devices/d1", map[string]any{})
	before := a.must(200, "GET", "/twins/d1", nil).Body

	deep := `{"a":` + strings.Repeat(`{"a":`, 10) + `1` + strings.Repeat(`}`, 10) + `}`
	big := `"` + strings.Repeat("x", 3000) + `"`
	var many []string
	for i := 0; i < 12; i++ {
		many = append(many, fmt.Sprintf(`"k%d":%s`, i, big))
	}
	cases := []struct {
		name, body, want string
		status           int
	}{
		{"malformed", `{"tags":`, "", 400},
		{"not an object", `[1]`, "", 400},
		{"tags not object", `{"tags":5}`, "", 400},
		{"reported by service", `{"properties":{"reported":{"x":1}}}`, "reported", 400},
		{"unknown section", `{"properties":{"wanted":{"x":1}}}`, "wanted", 400},
		{"too deep", `{"properties":{"desired":` + deep + `}}`, "depth", 400},
		{"key with dot", `{"tags":{"a.b":1}}`, "'.'", 400},
		{"key with dollar", `{"properties":{"desired":{"$x":1}}}`, "$", 400},
		{"key with space", `{"tags":{"a b":1}}`, "space", 400},
		{"desired too big", `{"properties":{"desired":{` + strings.Join(many, ",") + `}}}`, "32768", 400},
		{"tags too big", `{"tags":{` + strings.Join(many[:3], ",") + `}}`, "8192", 400},
		{"string too long", `{"tags":{"s":"` + strings.Repeat("y", 5000) + `"}}`, "4096", 400},
		{"integer out of range", `{"tags":{"n":9007199254740993}}`, "", 400},
		{"partly bad patch", `{"tags":{"good":1},"properties":{"desired":{"a.b":1}}}`, "", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.do("PATCH", "/twins/d1", c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			r.errorCode(t)
			if c.want != "" && !strings.Contains(string(r.Body), c.want) {
				t.Fatalf("error does not name the limit %q: %s", c.want, r.Body)
			}
		})
	}
	// Nothing was partly applied.
	if after := a.must(200, "GET", "/twins/d1", nil).Body; string(after) != string(before) {
		t.Fatalf("twin changed by rejected patches:\nbefore %s\nafter  %s", before, after)
	}
	a.must(404, "GET", "/twins/ghost", nil)
	a.must(404, "PATCH", "/twins/ghost", `{"tags":{"a":1}}`)
}

func TestTwinOverMQTT(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	dev := env.CreateDevice(t, "d1")
	d := env.Connect(t, "d1", dev.PrimaryKey)

	a.must(200, "PATCH", "/twins/d1", `{"tags":{"secret":"tags are not for devices"},"properties":{"desired":{"rate":5}}}`)
	// The desired notification for the patch above may arrive; drain it.
	n := d.Await(t, "$iothub/twin/PATCH/properties/desired/#", 5*time.Second)
	if !strings.HasSuffix(n.Topic(), "/?$version=2") {
		t.Fatalf("desired notification topic %s", n.Topic())
	}
	var np map[string]any
	decode(t, n.Payload(), &np)
	if np["rate"] != float64(5) || np["$version"] != float64(2) {
		t.Fatalf("desired notification body %s", n.Payload())
	}

	// GET: desired and reported with $version, no tags.
	if err := d.Publish("$iothub/twin/GET/?$rid=get-1", 0, nil); err != nil {
		t.Fatal(err)
	}
	m := d.Await(t, "$iothub/twin/res/#", 5*time.Second)
	if m.Topic() != "$iothub/twin/res/200/?$rid=get-1" {
		t.Fatalf("GET reply topic %s", m.Topic())
	}
	var doc map[string]map[string]any
	decode(t, m.Payload(), &doc)
	if doc["desired"]["rate"] != float64(5) || doc["desired"]["$version"] != float64(2) || doc["reported"]["$version"] != float64(1) {
		t.Fatalf("GET body %s", m.Payload())
	}
	if strings.Contains(string(m.Payload()), "secret") {
		t.Fatal("tags leaked to the device")
	}

	// Reported PATCH: reply carries the new $version; merge rules apply.
	for i, p := range []string{`{"fw":"1.0","temp":{"a":1,"b":2}}`, `{"temp":{"b":null,"c":3}}`} {
		rid := "rep-" + strconv.Itoa(i)
		if err := d.Publish("$iothub/twin/PATCH/properties/reported/?$rid="+rid, 0, []byte(p)); err != nil {
			t.Fatal(err)
		}
		m := d.Await(t, "$iothub/twin/res/#", 5*time.Second)
		want := fmt.Sprintf("$iothub/twin/res/204/?$rid=%s&$version=%d", rid, i+2)
		if m.Topic() != want {
			t.Fatalf("reported reply %s, want %s", m.Topic(), want)
		}
	}
	rep := a.must(200, "GET", "/twins/d1", nil).json(t)["properties"].(map[string]any)["reported"].(map[string]any)
	if rep["fw"] != "1.0" || fmt.Sprint(rep["temp"]) != "map[a:1 c:3]" || rep["$version"] != float64(3) {
		t.Fatalf("reported after patches: %v", rep)
	}
	if rep["$metadata"].(map[string]any)["temp"].(map[string]any)["c"] == nil {
		t.Fatalf("reported metadata missing: %v", rep["$metadata"])
	}

	// Garbage on the twin topics: an error reply with errorCode in the body (the Node SDK needs it), nothing applied.
	for i, body := range []string{`not json`, `[1,2]`, `{"a.b":1}`, "\x00\xff", `{"x":` + strings.Repeat("[", 200) + `}`} {
		rid := "bad-" + strconv.Itoa(i)
		if err := d.Publish("$iothub/twin/PATCH/properties/reported/?$rid="+rid, 0, []byte(body)); err != nil {
			t.Fatal(err)
		}
		m := d.Await(t, "$iothub/twin/res/#", 5*time.Second)
		if !strings.HasPrefix(m.Topic(), "$iothub/twin/res/400/?$rid="+rid) {
			t.Fatalf("garbage %q: reply %s %s", body, m.Topic(), m.Payload())
		}
		var e map[string]any
		decode(t, m.Payload(), &e)
		if e["errorCode"] == nil || e["message"] == "" {
			t.Fatalf("error reply without errorCode: %s", m.Payload())
		}
	}
	rep2 := a.must(200, "GET", "/twins/d1", nil).json(t)["properties"].(map[string]any)["reported"].(map[string]any)
	if rep2["$version"] != float64(3) {
		t.Fatalf("garbage changed reported: %v", rep2)
	}

	// PUT of desired sends the full desired document.
	a.must(200, "PUT", "/twins/d1", `{"properties":{"desired":{"mode":"eco"}}}`)
	n = d.Await(t, "$iothub/twin/PATCH/properties/desired/#", 5*time.Second)
	var full map[string]any
	decode(t, n.Payload(), &full)
	if full["mode"] != "eco" || full["$version"] != float64(3) {
		t.Fatalf("desired after PUT %s", n.Payload())
	}
	if _, ok := full["rate"]; ok {
		t.Fatalf("replaced desired still has rate: %s", n.Payload())
	}
	_ = json.Valid
}
