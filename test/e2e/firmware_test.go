package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/internal/smpsim"
	"github.com/drover-iot/drover/test/harness"
)

// fwRig is hub + gateway + drover-plugin-serial + devsim serial, with a
// trusted signing key and an untrusted one made by droverctl.
type fwRig struct {
	*system
	trustedKey, untrustedKey string // private key files
	ports                    []string
}

// newFwRig starts the rig with n MCUs (mcu-1 … mcu-n, one UART each);
// simArgs go to devsim serial.
func newFwRig(t *testing.T, n int, simArgs ...string) *fwRig {
	t.Helper()
	s := &system{t: t, dir: t.TempDir(), gwID: "gw-fw"}
	r := &fwRig{system: s}
	s.hub = harness.StartHub(t, "")
	s.svc = s.hub.Service(t)
	connStr, childrenKey := harness.ProvisionGateway(t, s.svc, s.hub.Hostname, s.gwID, "fw-line", s.dir)

	r.trustedKey, r.untrustedKey = filepath.Join(s.dir, "release.key"), filepath.Join(s.dir, "other.key")
	pub := r.keygen(r.trustedKey)
	r.keygen(r.untrustedKey)

	args := append([]string{"serial", "--log-level", "info", "--baud", "115200", "--buf-size", "2048",
		"--reset-silence", "300ms", "--count", fmt.Sprint(n)}, simArgs...)
	s.sim = harness.Start(t, harness.Bin(t, "devsim"), args...)
	for range n {
		r.ports = append(r.ports, s.sim.Await(t, "serial:", 30*time.Second))
	}
	s.sim.Await(t, "ready", 10*time.Second)

	profiles := filepath.Join(s.dir, "profiles")
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(profiles, "e2e-mcu.yaml"), mcuProfileYAML)
	s.binDir = filepath.Dir(harness.Bin(t, "drover-plugin-serial"))
	s.api = freeAddr(t)
	cfg := harness.GatewayConfig{
		ID: s.gwID, DataDir: filepath.Join(s.dir, "data"), LocalAPI: s.api,
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: s.hub.MQTTAddr, HTTPSAddress: s.hub.HTTPSAddr,
			CAFile: s.hub.CAFile, ChildrenKeyFile: childrenKey, TokenTTL: time.Hour},
		PluginsDir: s.binDir, RestartBackoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second},
		ProfilesDir:  profiles,
		FirmwareKeys: []string{pub},
	}
	for i, port := range r.ports {
		bus := fmt.Sprintf("uart-%d", i+1)
		cfg.Buses = append(cfg.Buses, harness.Bus{Name: bus, Plugin: "serial", Port: port, Baud: 115200, Timeout: time.Second})
		cfg.Devices = append(cfg.Devices, harness.Device{ID: fmt.Sprintf("mcu-%d", i+1), Bus: bus, Profile: "e2e-mcu", Poll: 2 * time.Second})
	}
	cfg.Write(t, filepath.Join(s.dir, "gateway.yaml"))
	s.runGateway()
	for i := range n {
		id := fmt.Sprintf("mcu-%d", i+1)
		s.eventually(t, 90*time.Second, id+" reports what it runs", func() (bool, string) {
			fw, _ := path(s.reported(id), "firmware").(map[string]any)
			return fw["currentVersion"] == "1.0.0" && fw["status"] == "idle", fmt.Sprint(fw)
		})
	}
	return r
}

// droverctl runs the operator CLI against the rig's hub.
func (r *fwRig) droverctl(args ...string) (string, error) {
	cmd := exec.Command(harness.Bin(r.t, "droverctl"), args...)
	cmd.Env = append(os.Environ(), "DROVER_HUB_CONNECTION_STRING="+r.hub.OwnerConnectionString,
		"DROVER_CA_FILE="+r.hub.CAFile, "DROVER_HUB_ADDRESS="+r.hub.HTTPSAddr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *fwRig) mustCtl(args ...string) string {
	r.t.Helper()
	out, err := r.droverctl(args...)
	if err != nil {
		r.t.Fatalf("droverctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// keygen makes a signing key and returns its public key.
func (r *fwRig) keygen(file string) string {
	r.t.Helper()
	var k struct {
		PublicKey string `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(r.mustCtl("firmware", "keygen", file, "-o", "json")), &k); err != nil || k.PublicKey == "" {
		r.t.Fatalf("keygen output: %v", err)
	}
	return k.PublicKey
}

// publish builds an MCUboot image of version (one that crashes at boot
// when bad), signs it with key for model and uploads it.
func (r *fwRig) publish(version, model, key string, size int, bad bool) *serviceclient.Image {
	r.t.Helper()
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		r.t.Fatal(err)
	}
	img := filepath.Join(r.dir, "mcu-"+version+".bin")
	write(r.t, img, string(smpsim.BuildImage(v, size, bad)))
	r.mustCtl("firmware", "upload", img, "--version", version, "--manufacturer", "Acme", "--model", model, "--key", key,
		"--name", "mcu-fw")
	im, err := r.svc.GetImage(context.Background(), firmware.UpdateID{Provider: "Acme", Name: "mcu-fw", Version: version})
	if err != nil {
		r.t.Fatal(err)
	}
	return im
}

// firmware is the device's reported.firmware.
func (r *fwRig) firmware(id string) map[string]any {
	fw, _ := path(r.reported(id), "firmware").(map[string]any)
	return fw
}

// watch polls reported.firmware of id until done says so, and returns
// the statuses seen, in order.
func (r *fwRig) watch(t *testing.T, id string, timeout time.Duration, done func(fw map[string]any) bool) []string {
	t.Helper()
	var seen []string
	var last map[string]any
	r.eventually(t, timeout, id+" firmware update", func() (bool, string) {
		last = r.firmware(id)
		if st, _ := last["status"].(string); st != "" && (len(seen) == 0 || seen[len(seen)-1] != st) {
			seen = append(seen, st)
		}
		return done(last), fmt.Sprintf("%v; statuses %v", last, seen)
	})
	return seen
}

// simCount counts lines of the simulator's log matching re.
func (r *fwRig) simCount(re string) int {
	return len(regexp.MustCompile(re).FindAllString(r.sim.Stderr(), -1))
}

// methodPayload is a firmwareUpdate payload naming im (manifest, url, sha256).
func methodPayload(t *testing.T, im *serviceclient.Image, edit func(m map[string]any)) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(im.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	p := map[string]any{"url": im.URL, "sha256": im.File.SHA256, "manifest": m}
	if edit != nil {
		edit(p)
	}
	b, _ := json.Marshal(p)
	return b
}

// inOrder reports whether seen follows the status machine forward (a
// poll may miss statuses, never reorder them).
func inOrder(seen []string, order ...string) bool {
	i := 0
	for _, s := range seen {
		for i < len(order) && order[i] != s {
			i++
		}
		if i == len(order) {
			return false
		}
	}
	return true
}

var happyPath = []string{"idle", "current", "failed", "downloading", "downloaded", "verifying", "applying", "rebooting", "confirming", "current"}

// TestFirmwareEndToEnd updates a simulated MCU from the hub, by desired
// property and by direct method, through the gateway's durable firmware
// job, and shows what is refused, what rolls back and what survives a
// gateway SIGKILL.
func TestFirmwareEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	ctx := context.Background()
	r := newFwRig(t, 1)
	const size = 24 << 10

	t.Run("deployment by desired property ends current", func(t *testing.T) {
		r.publish("1.1.0", "MCU-1", r.trustedKey, size, false)
		out := r.mustCtl("firmware", "deploy", "--version", "1.1.0", "--model", "MCU-1", "--query", "deviceId = 'mcu-1'", "--job-id", "fw-110")
		seen := r.watch(t, "mcu-1", 90*time.Second, func(fw map[string]any) bool { return fw["status"] == "current" && fw["currentVersion"] == "1.1.0" })
		if !inOrder(seen, happyPath...) || !strings.Contains(strings.Join(seen, " "), "applying") {
			t.Errorf("statuses %v: want them in the machine's order, applying among them", seen)
		}
		fw := r.firmware("mcu-1")
		if fw["deployment"] != "fw-110" || fw["result"] != "success" || fw["pendingVersion"] != nil {
			t.Errorf("reported.firmware %v", fw)
		}
		r.eventually(t, 30*time.Second, "the hub job completes", func() (bool, string) {
			j, err := r.svc.GetJob(ctx, "fw-110")
			return err == nil && j.Status == "completed", fmt.Sprint(j, err, out)
		})
		r.eventually(t, 30*time.Second, "identify after the flash shows the new version", func() (bool, string) {
			v := path(r.reported("mcu-1"), "device", "firmwareVersion")
			return v == "1.1.0", fmt.Sprint(v)
		})
		t.Logf("statuses seen: %v", seen)
	})

	t.Run("direct method with url, sha256 and manifest", func(t *testing.T) {
		im := r.publish("1.2.0", "MCU-1", r.trustedKey, size, false)
		res, err := r.svc.InvokeMethod(ctx, "mcu-1", serviceclient.MethodRequest{MethodName: "firmwareUpdate", Payload: methodPayload(t, im, nil), ResponseTimeoutInSeconds: 30})
		if err != nil || res.Status != 202 {
			t.Fatalf("firmwareUpdate: %+v %v", res, err)
		}
		r.watch(t, "mcu-1", 90*time.Second, func(fw map[string]any) bool { return fw["status"] == "current" && fw["currentVersion"] == "1.2.0" })
	})

	t.Run("refused images flash nothing", func(t *testing.T) {
		good := r.publish("1.5.0", "MCU-1", r.trustedKey, size, false)
		untrusted := r.publish("1.6.0", "MCU-1", r.untrustedKey, size, false)
		otherModel := r.publish("1.7.0", "MCU-9", r.trustedKey, size, false)
		started := r.simCount(`smpsim upload started`)
		cases := []struct {
			name, result string
			payload      json.RawMessage
		}{
			{"tampered manifest", "badSignature", methodPayload(t, good, func(p map[string]any) {
				p["manifest"].(map[string]any)["compatibility"] = []any{map[string]any{"manufacturer": "Acme", "model": "MCU-1"}, map[string]any{"manufacturer": "Acme", "model": "MCU-2"}}
			})},
			{"unsigned", "unsigned", methodPayload(t, good, func(p map[string]any) { delete(p["manifest"].(map[string]any), "signature") })},
			{"untrusted key", "untrustedKey", methodPayload(t, untrusted, nil)},
			{"other model", "incompatibleTarget", methodPayload(t, otherModel, nil)},
			// The bytes at url are another image's: the digest check catches them.
			{"tampered image", "digestMismatch", methodPayload(t, good, func(p map[string]any) { p["url"] = untrusted.URL })},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				res, err := r.svc.InvokeMethod(ctx, "mcu-1", serviceclient.MethodRequest{MethodName: "firmwareUpdate", Payload: c.payload, ResponseTimeoutInSeconds: 30})
				if err != nil || res.Status != 202 {
					t.Fatalf("firmwareUpdate: %+v %v", res, err)
				}
				var acc struct {
					JobID string `json:"jobId"`
				}
				_ = json.Unmarshal(res.Payload, &acc)
				r.eventually(t, 60*time.Second, "refusal reported", func() (bool, string) {
					fw := r.firmware("mcu-1")
					return fw["status"] == "failed" && fw["result"] == c.result, fmt.Sprint(fw)
				})
				if reason, _ := r.firmware("mcu-1")["reason"].(string); reason == "" {
					t.Error("no reason reported")
				}
				if fw := r.firmware("mcu-1"); fw["currentVersion"] != "1.2.0" {
					t.Errorf("currentVersion %v, want 1.2.0 still", fw["currentVersion"])
				}
			})
		}
		if n := r.simCount(`smpsim upload started`); n != started {
			t.Errorf("%d uploads started for refused images", n-started)
		}
		// A payload that cannot be read is refused by the method itself.
		res, err := r.svc.InvokeMethod(ctx, "mcu-1", serviceclient.MethodRequest{MethodName: "firmwareUpdate", Payload: json.RawMessage(`{"url": 7}`), ResponseTimeoutInSeconds: 30})
		if err != nil || res.Status != 400 {
			t.Errorf("garbage payload: %+v %v, want 400", res, err)
		}
	})

	t.Run("malformed desired.firmware is reported, not queued", func(t *testing.T) {
		for _, doc := range []map[string]any{
			{"version": "9.9.9", "url": "/firmware/content/00", "manifest": map[string]any{"updateId": "nope"}, "deployment": "fw-bad-1"},
			{"version": "9.9.9", "url": "ftp://elsewhere/x.bin", "deployment": "fw-bad-2"},
		} {
			if _, err := r.svc.UpdateTwin(ctx, "mcu-1", serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"firmware": doc}}}, ""); err != nil {
				t.Fatal(err)
			}
			r.eventually(t, 30*time.Second, "malformed manifest reported", func() (bool, string) {
				fw := r.firmware("mcu-1")
				return fw["status"] == "failed" && fw["result"] == "malformedManifest" && fw["deployment"] == doc["deployment"], fmt.Sprint(fw)
			})
		}
		if fw := r.firmware("mcu-1"); fw["currentVersion"] != "1.2.0" {
			t.Errorf("currentVersion %v, want 1.2.0 still", fw["currentVersion"])
		}
	})

	t.Run("image that fails to boot ends rolled back", func(t *testing.T) {
		r.publish("1.3.0", "MCU-1", r.trustedKey, size, true)
		r.mustCtl("firmware", "deploy", "--version", "1.3.0", "--model", "MCU-1", "--query", "deviceId = 'mcu-1'", "--job-id", "fw-130")
		r.watch(t, "mcu-1", 90*time.Second, func(fw map[string]any) bool { return fw["status"] == "failed" && fw["deployment"] == "fw-130" })
		fw := r.firmware("mcu-1")
		if fw["result"] != "rolledBack" || fw["currentVersion"] != "1.2.0" {
			t.Errorf("reported.firmware %v: want rolledBack with 1.2.0 current", fw)
		}
		r.eventually(t, 30*time.Second, "the hub job records the failure", func() (bool, string) {
			j, err := r.svc.GetJob(ctx, "fw-130")
			return err == nil && j.Status == "completed" && j.DeviceJobStatistics.FailedCount == 1, fmt.Sprint(j, err)
		})
	})

	t.Run("gateway SIGKILL mid-flash resumes from the device's offset", func(t *testing.T) {
		const big = 128 << 10
		im := r.publish("1.4.0", "MCU-1", r.trustedKey, big, false)
		started, resumed := r.simCount(`smpsim upload started`), r.simCount(`smpsim upload resumed`)
		r.killMidFlash(t, "mcu-1", im, 30)
		r.runGateway()
		r.watch(t, "mcu-1", 120*time.Second, func(fw map[string]any) bool { return fw["status"] == "current" && fw["currentVersion"] == "1.4.0" })
		if n := r.simCount(`smpsim upload started`); n != started+1 {
			t.Errorf("upload started %d times, want once", n-started)
		}
		offs := regexp.MustCompile(`smpsim upload resumed.* offset=(\d+)`).FindAllStringSubmatch(r.sim.Stderr(), -1)
		if len(offs) <= resumed {
			t.Fatalf("no resumed upload after the restart; devsim:\n%s", harness.Tail(r.sim.Stderr(), 20))
		}
		var off int
		fmt.Sscan(offs[len(offs)-1][1], &off)
		if off < big/4 {
			t.Errorf("resumed at offset %d, want past a quarter of %d", off, big)
		}
	})
}

// killMidFlash asks for im on device by direct method and SIGKILLs the
// gateway once reported.firmware says pct % of it was applied.
func (r *fwRig) killMidFlash(t *testing.T, device string, im *serviceclient.Image, pct float64) {
	t.Helper()
	res, err := r.svc.InvokeMethod(context.Background(), device, serviceclient.MethodRequest{MethodName: "firmwareUpdate", Payload: methodPayload(t, im, nil), ResponseTimeoutInSeconds: 30})
	if err != nil || res.Status != 202 {
		t.Fatalf("firmwareUpdate: %+v %v", res, err)
	}
	r.eventually(t, 60*time.Second, fmt.Sprintf("flash %v%% through", pct), func() (bool, string) {
		fw := r.firmware(device)
		return fw["status"] == "applying" && num(fw["progress"]) >= pct, fmt.Sprint(fw)
	})
	r.gw.Kill()
	<-r.gw.Exited()
}
