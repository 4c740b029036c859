package localhub_test

import (
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub/hubtest"
)

// TestEnrollmentProvisionsChildren: a child connecting with a key derived from
// the group key (as Azure DPS symmetric-key groups derive them) is registered
// on first connect as a child of the group's parent.
func TestEnrollmentProvisionsChildren(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	gw := a.must(200, "PUT", "/devices/gw-1", map[string]any{"capabilities": map[string]any{"iotEdge": true}}).json(t)
	a.must(200, "PUT", "/devices/plain", map[string]any{})

	// A parent must be an edge device; bad input is refused.
	a.must(400, "PUT", "/enrollmentGroups/g0", map[string]any{"parentDeviceId": "plain"})
	a.must(404, "PUT", "/enrollmentGroups/g0", map[string]any{"parentDeviceId": "ghost"})
	a.must(400, "PUT", "/enrollmentGroups/g0", map[string]any{"attestation": map[string]any{"type": "x509"}})
	a.must(400, "PUT", "/enrollmentGroups/g0", `{"attestation":`)
	a.must(404, "GET", "/enrollmentGroups/g0", nil)

	g := a.must(200, "PUT", "/enrollmentGroups/line-a", map[string]any{"parentDeviceId": "gw-1"}).json(t)
	key := g["attestation"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	if len(key) != 44 || g["provisioningStatus"] != "enabled" {
		t.Fatalf("group: %v", g)
	}
	var list []map[string]any
	decode(t, a.must(200, "GET", "/enrollmentGroups", nil).Body, &list)
	if len(list) != 1 {
		t.Fatalf("list: %v", list)
	}
	// registryRead may read groups but not write them.
	a.as("registryRead").must(200, "GET", "/enrollmentGroups/line-a", nil)
	a.as("registryRead").must(403, "PUT", "/enrollmentGroups/x", map[string]any{})

	childKey, _ := sas.DeriveKey(key, "pump-9")
	d, err := env.TryConnect("pump-9", env.Token(t, "pump-9", childKey, time.Hour))
	if err != nil {
		t.Fatalf("child with a derived key: %v", err)
	}
	d.Client.Disconnect(10)
	child := a.must(200, "GET", "/devices/pump-9", nil).json(t)
	if child["deviceScope"] != gw["deviceScope"] || child["connectionState"] == nil {
		t.Fatalf("provisioned child: %v", child)
	}
	// It reconnects as a normal registered device.
	if d, err = env.TryConnect("pump-9", env.Token(t, "pump-9", childKey, time.Hour)); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	d.Client.Disconnect(10)

	// A key derived for another id, or signed with the group key itself, does not provision.
	other, _ := sas.DeriveKey(key, "pump-10")
	if _, err := env.TryConnect("pump-11", env.Token(t, "pump-11", other, time.Hour)); err == nil {
		t.Fatal("a key derived for another id provisioned a device")
	}
	if _, err := env.TryConnect("pump-12", env.Token(t, "pump-12", key, time.Hour)); err == nil {
		t.Fatal("the group key itself provisioned a device")
	}
	a.must(404, "GET", "/devices/pump-11", nil)

	// A disabled group provisions nothing.
	a.must(200, "PUT", "/enrollmentGroups/line-a", map[string]any{"parentDeviceId": "gw-1", "provisioningStatus": "disabled"})
	k13, _ := sas.DeriveKey(key, "pump-13")
	if _, err := env.TryConnect("pump-13", env.Token(t, "pump-13", k13, time.Hour)); err == nil {
		t.Fatal("a disabled group provisioned a device")
	}
	a.must(204, "DELETE", "/enrollmentGroups/line-a", nil)
	a.must(404, "DELETE", "/enrollmentGroups/line-a", nil)
	if _, err := env.Hub.Store().GetDevice(t.Context(), "pump-9"); err != nil {
		t.Fatalf("deleting the group removed its devices: %v", err)
	}
}
