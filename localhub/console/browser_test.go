package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/internal/testenv"
	"github.com/drover-iot/drover/localhub/console"
)

// chromiumPath finds Debian's chromium: a missing browser skips the test
// locally and fails it under CI=true (internal/testenv), as the console's
// acceptance rests on it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	return testenv.RequireTool(t, "chromium", "apt-get install chromium chromium-driver (.ci/run does)")
}

// browser starts one headless Chromium for the whole test, with a fresh
// profile and nothing that reaches outside the machine.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The hub's certificate is from its own CA, which this fresh profile does not trust.
		chromedp.IgnoreCertErrors,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps, failing the test with what was being done.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that reads something.
func read[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// text is the visible text of the element sel selects.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return read(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// attr is an attribute of the element sel selects.
func attr(t *testing.T, ctx context.Context, sel, name string) string {
	t.Helper()
	return read(t, ctx, "read "+sel+" @"+name, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
}

// count is how many elements sel selects now (no waiting).
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	return len(read(t, ctx, "count "+sel, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0))))
}

// visible waits until sel is visible.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// click clicks sel.
func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

// set sets the value of the form field sel.
func set(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), v)
}

// screenshot saves a full-page PNG into DROVER_SCREENSHOTS (the docs' images) when set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("DROVER_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := read(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleInBrowser drives the console with a real headless Chromium
// against a real hub over TLS with MQTT devices: sign in, the fleet numbers
// against the hub's own query answers, a bad query's positioned error, a
// desired edit raising the version, an etag conflict, a direct method, live
// telemetry, a job followed to the end, sign out, and a read-only policy
// that sees no edit controls.
func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t)
	f := startFleet(t)
	api := f.api
	bg := context.Background()

	// A job that already ran, so the fleet has tags and the device page lists a job.
	if _, err := api.CreateJob(bg, serviceclient.JobRequest{JobID: "tag-site", Type: "scheduleUpdateTwin", QueryCondition: "STARTSWITH(deviceId, 'pump')",
		UpdateTwin: &serviceclient.JobTwinPatch{Tags: json.RawMessage(`{"site":"plant1","line":"A"}`)}}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, api, "tag-site")

	t.Run("sign in", func(t *testing.T) {
		do(t, ctx, "sign in as iothubowner",
			chromedp.Navigate(f.base+"/ui/"),
			visible("#policy-name"),
			chromedp.SendKeys(chromedp.CSS("#policy-name"), "iothubowner"),
			chromedp.SendKeys(chromedp.CSS("#policy-key"), f.policyKey(t, "iothubowner")),
			click("#signin"),
			visible("#fleet-total"),
		)
	})

	t.Run("fleet numbers match the hub's queries", func(t *testing.T) {
		if got := attr(t, ctx, "#fleet-total", "data-count"); got != "8" {
			t.Errorf("fleet total %s, want 8", got)
		}
		for _, g := range []struct{ id, path string }{
			{"connection", "connectionState"},
			{"reported-connection", "properties.reported.connection.state"},
			{"firmware", "properties.reported.firmware.status"},
			{"gateway", "deviceScope"},
		} {
			nodes := read(t, ctx, "read group "+g.id, chromedp.Nodes(chromedp.CSSAll("#group-"+g.id+" a.count")))
			shown := map[string]string{}
			for _, n := range nodes {
				shown[n.AttributeValue("data-key")] = n.AttributeValue("data-count")
			}
			items, err := api.QueryAll(bg, console.GroupQuery(g.path), 100)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for _, it := range items {
				var row map[string]any
				if err := json.Unmarshal(it, &row); err != nil {
					t.Fatal(err)
				}
				key := ""
				if v, ok := row["v"]; ok && v != nil {
					key = fmt.Sprint(v)
				}
				want[key] = strconv.Itoa(int(row["n"].(float64)))
			}
			if fmt.Sprint(shown) != fmt.Sprint(want) || len(want) < 2 {
				t.Errorf("group %s: page shows %v, hub answers %v", g.id, shown, want)
			}
		}
		screenshot(t, ctx, "console-fleet")
		// Each number links to its devices: follow "Connected".
		n := attr(t, ctx, `#group-connection a[data-key="Connected"]`, "data-count")
		do(t, ctx, "open the Connected list", click(`#group-connection a[data-key="Connected"]`), visible("#device-table"))
		if rows := count(t, ctx, "#device-table tbody tr"); n != "2" || rows != 2 {
			t.Errorf("Connected: count %s, list has %d rows, want 2", n, rows)
		}
	})

	t.Run("bad query shows the positioned error", func(t *testing.T) {
		do(t, ctx, "run a bad query",
			chromedp.Navigate(f.base+"/ui/devices"),
			visible("#q"),
			set("#q", "SELECT * FRM devices"),
			click("#run-query"),
			visible("#query-error"),
		)
		msg, at := text(t, ctx, "#query-error p"), text(t, ctx, "#query-error-at")
		if !strings.Contains(msg, "at 9") || !strings.Contains(msg, "FROM") || at != "FRM" {
			t.Errorf("query error %q, marked %q; want the hub's positioned error with FRM marked", msg, at)
		}
	})

	t.Run("edit desired and see the version rise", func(t *testing.T) {
		before := desiredVersion(t, ctx, f, "pump-1")
		do(t, ctx, "save desired",
			set("#patch", `{"config":{"setpoint":21.5}}`),
			click("#save-twin"),
			visible("#saved"),
		)
		if after := text(t, ctx, "#desired-version"); after != strconv.Itoa(before+1) {
			t.Errorf("desired version %s after the edit, want %d", after, before+1)
		}
		tw, err := api.GetTwin(bg, "pump-1")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(tw.Properties.Desired["config"]) != "map[setpoint:21.5]" {
			t.Errorf("hub's desired config %v", tw.Properties.Desired["config"])
		}
	})

	t.Run("etag conflict is shown", func(t *testing.T) {
		desiredVersion(t, ctx, f, "pump-1") // the page now holds the current etag
		if _, err := api.UpdateTwin(bg, "pump-1", serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"config": map[string]any{"setpoint": 19.0}}}}, ""); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, "save over a newer twin",
			set("#patch", `{"config":{"setpoint":25}}`),
			click("#save-twin"),
			visible("#conflict"),
		)
		if txt := text(t, ctx, "#conflict"); !strings.Contains(txt, "changed since you loaded it") {
			t.Errorf("conflict text %q", txt)
		}
		tw, err := api.GetTwin(bg, "pump-1")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(tw.Properties.Desired["config"]) != "map[setpoint:19]" {
			t.Errorf("conflicting edit was applied: %v", tw.Properties.Desired["config"])
		}
	})

	t.Run("invoke a direct method", func(t *testing.T) {
		do(t, ctx, "invoke reboot",
			chromedp.Navigate(f.base+"/ui/devices/pump-1"),
			visible("#method"),
			chromedp.SendKeys(chromedp.CSS("#method"), "reboot"),
			set("#payload", `{"delay":3}`),
			click("#invoke"),
			visible("#method-status"),
		)
		status, payload := text(t, ctx, "#method-status"), text(t, ctx, "#method-payload")
		if status != "200" || !strings.Contains(payload, `"method": "reboot"`) || !strings.Contains(payload, `"delay": 3`) {
			t.Errorf("method answer %s %s", status, payload)
		}
	})

	t.Run("live telemetry", func(t *testing.T) {
		do(t, ctx, "open the stream",
			chromedp.Navigate(f.base+"/ui/devices/pump-1"),
			visible(`#telemetry[data-open="true"]`),
		)
		if err := f.pump1.Publish("devices/pump-1/messages/events/", 1, []byte(`{"temperature":22.4}`)); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, "see the message", visible("#telemetry .telemetry-row"))
		if body := text(t, ctx, "#telemetry .telemetry-row td:last-child"); body != `{"temperature":22.4}` {
			t.Errorf("telemetry row %q", body)
		}
		screenshot(t, ctx, "console-device")
	})

	t.Run("create a job and watch it finish", func(t *testing.T) {
		do(t, ctx, "create a twin job",
			chromedp.Navigate(f.base+"/ui/jobs"),
			visible("#create"),
			click("#create summary"),
			visible("#job-id"),
			set("#job-id", "eco-mode"),
			set("#condition", "tags.site = 'plant1' AND connectionState = 'Connected'"),
			set("#job-desired", `{"mode":"eco"}`),
			click("#create-job"),
			visible("#job-status"),
			visible(`#job-status[data-status="completed"]`),
		)
		if n := text(t, ctx, "#n-succeeded"); n != "2" {
			t.Errorf("succeeded %s, want 2", n)
		}
		screenshot(t, ctx, "console-job")
		j, err := api.GetJob(bg, "eco-mode")
		if err != nil || j.Status != "completed" {
			t.Fatalf("hub's job: %+v %v", j, err)
		}
	})

	t.Run("sign out", func(t *testing.T) {
		do(t, ctx, "sign out",
			click("#signout"),
			visible("#signin"),
			chromedp.Navigate(f.base+"/ui/fleet"),
			visible("#signin"), // redirected: the session is gone
		)
	})

	t.Run("read-only policy sees no edit controls", func(t *testing.T) {
		do(t, ctx, "sign in as registryRead",
			chromedp.Navigate(f.base+"/ui/signin"),
			visible("#policy-name"),
			chromedp.SendKeys(chromedp.CSS("#policy-name"), "registryRead"),
			chromedp.SendKeys(chromedp.CSS("#policy-key"), f.policyKey(t, "registryRead")),
			click("#signin"),
			visible("#fleet-error"),
			chromedp.Navigate(f.base+"/ui/devices/pump-1"),
			visible("#identity-status"),
		)
		if n := count(t, ctx, "#edit-form, #method-form, #save-twin, #invoke"); n != 0 {
			t.Errorf("registryRead sees %d edit controls", n)
		}
		do(t, ctx, "open jobs", chromedp.Navigate(f.base+"/ui/jobs"), visible("#job-error"))
		if n := count(t, ctx, "#job-form, #create-job"); n != 0 {
			t.Errorf("registryRead sees %d job controls", n)
		}
	})
}

// desiredVersion opens the device page and reads its desired $version.
func desiredVersion(t *testing.T, ctx context.Context, f *fleet, id string) int {
	t.Helper()
	do(t, ctx, "open "+id, chromedp.Navigate(f.base+"/ui/devices/"+id), visible("#desired-version"))
	v := text(t, ctx, "#desired-version")
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("desired version %q: %v", v, err)
	}
	return n
}

// waitJob waits for a job to end, following the hub's own answers.
func waitJob(t *testing.T, api *serviceclient.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := api.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Done() {
			if j.Status != "completed" {
				t.Fatalf("job %s ended %s: %s", id, j.Status, j.FailureReason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after 30s", id, j.Status)
		}
		time.Sleep(50 * time.Millisecond) // polling the hub's answer, not a guess at timing
	}
}
