package localhub_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/drover-iot/drover/localhub/hubtest"
)

func TestRegistryCreateReadUpdateDelete(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)

	// Create with empty keys: the hub generates them (Node SDK behaviour).
	created := a.must(200, "PUT", "/devices/pump-1", map[string]any{
		"deviceId":       "pump-1",
		"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": "", "secondaryKey": ""}},
	}).json(t)
	auth := created["authentication"].(map[string]any)["symmetricKey"].(map[string]any)
	if len(auth["primaryKey"].(string)) != 44 || len(auth["secondaryKey"].(string)) != 44 {
		t.Fatalf("keys not generated: %v", auth)
	}
	if created["status"] != "enabled" || created["connectionState"] != "Disconnected" || created["etag"] == "" || created["generationId"] == "" {
		t.Fatalf("created device: %v", created)
	}

	// Create again → 409 DeviceAlreadyExists.
	r := a.must(409, "PUT", "/devices/pump-1", map[string]any{"deviceId": "pump-1"})
	if c := r.errorCode(t); c != "DeviceAlreadyExists" {
		t.Fatalf("error code %s", c)
	}

	got := a.must(200, "GET", "/devices/pump-1", nil).json(t)
	if got["etag"] != created["etag"] {
		t.Fatalf("etag changed without update: %v vs %v", got["etag"], created["etag"])
	}

	// Update with a stale etag → 412; with the right one → 200 and a new etag.
	upd := map[string]any{"deviceId": "pump-1", "status": "disabled", "statusReason": "maintenance"}
	if c := a.must(412, "PUT", "/devices/pump-1", upd, "If-Match", `"nope"`).errorCode(t); c != "PreconditionFailed" {
		t.Fatalf("code %s", c)
	}
	updated := a.must(200, "PUT", "/devices/pump-1", upd, "If-Match", fmt.Sprintf("%q", created["etag"])).json(t)
	if updated["status"] != "disabled" || updated["statusReason"] != "maintenance" || updated["etag"] == created["etag"] {
		t.Fatalf("update: %v", updated)
	}
	// Keys are kept when the update leaves them empty.
	if k := updated["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"]; k != auth["primaryKey"] {
		t.Fatalf("update changed the key")
	}

	// Update of a missing device → 404 DeviceNotFound.
	if c := a.must(404, "PUT", "/devices/nope", map[string]any{"deviceId": "nope"}, "If-Match", "*").errorCode(t); c != "DeviceNotFound" {
		t.Fatalf("code %s", c)
	}

	a.must(412, "DELETE", "/devices/pump-1", nil, "If-Match", `"stale"`)
	a.must(204, "DELETE", "/devices/pump-1", nil, "If-Match", `"*"`)
	if c := a.must(404, "GET", "/devices/pump-1", nil).errorCode(t); c != "DeviceNotFound" {
		t.Fatalf("code %s", c)
	}
	a.must(404, "DELETE", "/devices/pump-1", nil)
}

func TestRegistryEdgeParentChild(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	gw := a.must(200, "PUT", "/devices/gw-1", map[string]any{"capabilities": map[string]any{"iotEdge": true}}).json(t)
	scope, _ := gw["deviceScope"].(string)
	if scope == "" || gw["capabilities"].(map[string]any)["iotEdge"] != true {
		t.Fatalf("edge device has no scope: %v", gw)
	}
	child := a.must(200, "PUT", "/devices/pump-1", map[string]any{"deviceScope": scope, "parentScopes": []string{scope}}).json(t)
	if child["deviceScope"] != scope || fmt.Sprint(child["parentScopes"]) != fmt.Sprint([]any{scope}) {
		t.Fatalf("child: %v", child)
	}
	// A child has exactly one parent.
	a.must(400, "PUT", "/devices/pump-2", map[string]any{"parentScopes": []string{scope, "other"}})

	// Query by parent scope and capability.
	rows := a.queryIDs(`SELECT * FROM devices WHERE capabilities.iotEdge = true`)
	if fmt.Sprint(rows) != "[gw-1]" {
		t.Fatalf("edge query: %v", rows)
	}
	rows = a.queryIDs(`SELECT * FROM devices WHERE deviceScope = '` + scope + `' AND capabilities.iotEdge = false`)
	if fmt.Sprint(rows) != "[pump-1]" {
		t.Fatalf("scope query: %v", rows)
	}
}

func TestRegistryListStatisticsBulk(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	var entries []map[string]any
	for i := 0; i < 100; i++ {
		entries = append(entries, map[string]any{"id": fmt.Sprintf("dev-%03d", i), "importMode": "create"})
	}
	res := a.must(200, "POST", "/devices", entries).json(t)
	if res["isSuccessful"] != true {
		t.Fatalf("bulk create: %v", res)
	}
	// 101 entries is over the limit.
	a.must(400, "POST", "/devices", append(entries, map[string]any{"id": "x", "importMode": "create"}))
	// Duplicates in one call are refused as a whole.
	if c := a.must(400, "POST", "/devices", []map[string]any{{"id": "d", "importMode": "create"}, {"id": "d", "importMode": "create"}}).errorCode(t); c != "DeviceDefinedMultipleTimes" {
		t.Fatalf("code %s", c)
	}
	// Mixed result: per-device errors, the rest applied.
	mixed := a.must(400, "POST", "/devices", []map[string]any{
		{"id": "dev-000", "importMode": "create"}, // exists
		{"id": "dev-001", "importMode": "Delete"}, // mixed case, as the Node SDK sends
		{"id": "dev-002", "importMode": "update", "status": "disabled"},
		{"id": "bad id", "importMode": "create"},      // invalid id
		{"id": "dev-003", "importMode": "frobnicate"}, // unknown mode
	}).json(t)
	errs := mixed["errors"].([]any)
	if mixed["isSuccessful"] != false || len(errs) != 3 {
		t.Fatalf("mixed bulk: %v", mixed)
	}
	a.must(404, "GET", "/devices/dev-001", nil)
	if d := a.must(200, "GET", "/devices/dev-002", nil).json(t); d["status"] != "disabled" {
		t.Fatalf("bulk update not applied: %v", d)
	}

	var list []map[string]any
	decode(t, a.must(200, "GET", "/devices?top=10", nil).Body, &list)
	if len(list) != 10 || list[0]["deviceId"] != "dev-000" {
		t.Fatalf("list: %d %v", len(list), list[0]["deviceId"])
	}
	stats := a.must(200, "GET", "/statistics/devices", nil).json(t)
	if stats["totalDeviceCount"] != float64(99) || stats["disabledDeviceCount"] != float64(1) {
		t.Fatalf("stats: %v", stats)
	}
	a.must(200, "GET", "/statistics/service", nil)
}

func TestRegistryRejectsBadInput(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	cases := []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"malformed json", "/devices/d1", `{"deviceId": `, 400, "IotHubFormatError"},
		{"empty body", "/devices/d1", ``, 400, "ArgumentInvalid"},
		{"array body", "/devices/d1", `[1,2]`, 400, "IotHubFormatError"},
		{"id mismatch", "/devices/d1", map[string]any{"deviceId": "d2"}, 400, "ArgumentInvalid"},
		{"bad status", "/devices/d1", map[string]any{"status": "sleeping"}, 400, "ArgumentInvalid"},
		{"bad key", "/devices/d1", map[string]any{"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": "not base64!"}}}, 400, "ArgumentInvalid"},
		{"short key", "/devices/d1", map[string]any{"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": "AAAA"}}}, 400, "ArgumentInvalid"},
		{"bad auth type", "/devices/d1", map[string]any{"authentication": map[string]any{"type": "password"}}, 400, "ArgumentInvalid"},
		{"invalid id chars", "/devices/a%20b", map[string]any{}, 400, "ArgumentInvalid"},
		{"too long id", "/devices/" + string(make129()), map[string]any{}, 400, "ArgumentInvalid"},
		{"long reason", "/devices/d1", map[string]any{"statusReason": string(make129())}, 400, "ArgumentInvalid"},
		{"oversize body", "/devices/d1", `{"x":"` + string(make([]byte, 2<<20)) + `"}`, 413, "MessageTooLarge"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.do("PUT", c.path, c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if got := r.errorCode(t); got != c.code {
				t.Fatalf("code %s, want %s", got, c.code)
			}
		})
	}
	// Nothing was created by any of them.
	a.must(404, "GET", "/devices/d1", nil)
	a.must(http.StatusNotFound, "GET", "/nothing/here", nil)
}

func make129() []byte {
	b := make([]byte, 129)
	for i := range b {
		b[i] = 'a'
	}
	return b
}
