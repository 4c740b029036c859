package localhub_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/localhub/hubtest"
)

func TestStatePersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	env := hubtest.StartWith(t, hubtest.Options{DataDir: dir})
	a := newAPI(t, env)
	dev := a.must(200, "PUT", "/devices/p1", map[string]any{}).json(t)
	key := dev["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	a.must(200, "PATCH", "/twins/p1", `{"tags":{"site":"a"},"properties":{"desired":{"sp":1}}}`)
	d := env.Connect(t, "p1", key)
	if err := d.Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", 0, []byte(`{"fw":"2.0"}`)); err != nil {
		t.Fatal(err)
	}
	d.Await(t, "$iothub/twin/res/#", 5*time.Second)
	if err := d.Publish("devices/p1/messages/events/", 1, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	caBefore, _ := os.ReadFile(env.CAFile)
	ownerBefore := env.OwnerConnectionString
	twinBefore := a.must(200, "GET", "/twins/p1", nil).json(t)
	env.Stop(t)

	if fi, err := os.Stat(filepath.Join(dir, "iothubowner.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("owner connection string file: %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "iothubowner.txt"))
	if !strings.HasPrefix(string(b), "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=") {
		t.Fatalf("owner connection string: %q", b)
	}

	env2 := hubtest.StartWith(t, hubtest.Options{DataDir: dir})
	if env2.OwnerConnectionString != ownerBefore {
		t.Fatal("policy keys changed across restart")
	}
	if caAfter, _ := os.ReadFile(env2.CAFile); string(caAfter) != string(caBefore) {
		t.Fatal("CA changed across restart")
	}
	a2 := newAPI(t, env2)
	twinAfter := a2.must(200, "GET", "/twins/p1", nil).json(t)
	if twinAfter["connectionState"] != "Disconnected" {
		t.Fatalf("connection state after restart: %v", twinAfter["connectionState"])
	}
	for _, k := range []string{"tags", "properties", "etag", "version"} {
		if !jsonEqual(twinBefore[k], twinAfter[k]) {
			t.Fatalf("%s changed across restart:\n%v\n%v", k, twinBefore[k], twinAfter[k])
		}
	}
	// The device reconnects with its old key; its telemetry is still there.
	env2.Connect(t, "p1", key)
	a2.must(200, "GET", "/devices/p1", nil)
	if msgs, _ := env2.Hub.Store().TelemetryAfter(t.Context(), "p1", 0, 10); len(msgs) != 1 || string(msgs[0].Body) != "hello" {
		t.Fatalf("telemetry after restart: %v", msgs)
	}
}
