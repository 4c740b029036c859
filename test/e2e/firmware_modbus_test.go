package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/test/harness"
)

// newModbusFwRig is hub + gateway + drover-plugin-modbus + devsim modbus
// serving the demo pump (firmware by register window, version by FC 43,
// 2.3 at start) as unit 1 on Modbus TCP. Each answer is held 3 ms, so a
// 256 KiB upload (1,084 blocks) takes about 4 s and can be cut. The
// profile drops the demo's in-use rule (its pump always runs), so a
// deployment needs no force.
func newModbusFwRig(t *testing.T) *fwRig {
	t.Helper()
	s := &system{t: t, dir: t.TempDir(), gwID: "gw-mfw"}
	r := &fwRig{system: s}
	s.hub = harness.StartHub(t, "")
	s.svc = s.hub.Service(t)
	connStr, childrenKey := harness.ProvisionGateway(t, s.svc, s.hub.Hostname, s.gwID, "mfw-line", s.dir)
	r.trustedKey = filepath.Join(s.dir, "release.key")
	pub := r.keygen(r.trustedKey)

	src, err := os.ReadFile(filepath.Join(repoRoot(), "configs", "devsim", "demo-pump.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(src), "\n") {
		if !strings.HasPrefix(l, "in_use:") {
			lines = append(lines, l)
		}
	}
	profiles := filepath.Join(s.dir, "profiles")
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(profiles, "demo-pump.yaml"), strings.Join(lines, "\n"))

	s.sim = harness.Start(t, harness.Bin(t, "devsim"), "modbus", "--profile", filepath.Join(profiles, "demo-pump.yaml"),
		"--tcp", "127.0.0.1:0", "--delay", "3ms", "--firmware-boot", "300ms", "--log-level", "info")
	s.simTCP = s.sim.Await(t, "tcp:", 30*time.Second)
	s.sim.Await(t, "ready", 10*time.Second)

	s.binDir = filepath.Dir(harness.Bin(t, "drover-plugin-modbus"))
	s.api = freeAddr(t)
	harness.GatewayConfig{
		ID: s.gwID, DataDir: filepath.Join(s.dir, "data"), LocalAPI: s.api,
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: s.hub.MQTTAddr, HTTPSAddress: s.hub.HTTPSAddr,
			CAFile: s.hub.CAFile, ChildrenKeyFile: childrenKey, TokenTTL: time.Hour},
		PluginsDir: s.binDir, RestartBackoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second},
		ProfilesDir:  profiles,
		FirmwareKeys: []string{pub},
		Buses:        []harness.Bus{{Name: "plant-lan", Plugin: "modbus", Mode: "tcp", Address: s.simTCP, Timeout: 500 * time.Millisecond}},
		Devices:      []harness.Device{{ID: "pump-1", Bus: "plant-lan", Address: 1, Profile: "demo-pump", Poll: 2 * time.Second}},
	}.Write(t, filepath.Join(s.dir, "gateway.yaml"))
	s.runGateway()
	s.eventually(t, 90*time.Second, "pump-1 reports what it runs", func() (bool, string) {
		fw, _ := path(s.reported("pump-1"), "firmware").(map[string]any)
		return fw["currentVersion"] == "2.3" && fw["status"] == "idle", fmt.Sprint(fw)
	})
	return r
}

// publishPump uploads a simulator image (modbussim.FirmwareImage, or a
// BADBOOT one that fails to boot) for the demo pump's model, signed with
// the trusted key.
func (r *fwRig) publishPump(version string, size int, bad bool) *serviceclient.Image {
	r.t.Helper()
	data := modbussim.FirmwareImage(version, size)
	if bad {
		data = append([]byte(modbussim.BadBootMagic+"\n"), data[:size-8]...)
	}
	img := filepath.Join(r.dir, "pump-"+version+".bin")
	write(r.t, img, string(data))
	r.mustCtl("firmware", "upload", img, "--version", version, "--manufacturer", "Acme", "--model", "AP-100-EU",
		"--key", r.trustedKey, "--name", "pump-fw")
	im, err := r.svc.GetImage(context.Background(), firmware.UpdateID{Provider: "Acme", Name: "pump-fw", Version: version})
	if err != nil {
		r.t.Fatal(err)
	}
	return im
}

// pumpTransfer reads the demo pump's firmware status and offset registers
// (holding 990, 992-993) over Modbus TCP, as any other master could.
func pumpTransfer(t *testing.T, addr string) (status uint16, offset uint32) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// MBAP (transaction 1, protocol 0, length 6, unit 1), FC 3 from 990, 4 registers.
	if _, err := c.Write([]byte{0, 1, 0, 0, 0, 6, 1, 3, 0x03, 0xDE, 0, 4}); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 9+8)
	if _, err := io.ReadFull(c, resp); err != nil || resp[7] != 3 || resp[8] != 8 {
		t.Fatalf("read the pump's firmware registers: % X, %v", resp, err)
	}
	return binary.BigEndian.Uint16(resp[9:]), binary.BigEndian.Uint32(resp[13:])
}

// TestModbusFirmwareEndToEnd updates a simulated Modbus pump from the hub
// through the gateway's firmware job and the Modbus plugin: a deployment
// ends current, an image that does not boot ends rolled back, and a
// gateway SIGKILLed mid-upload resumes from the device's offset.
func TestModbusFirmwareEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	r := newModbusFwRig(t)
	begun := func() int { return r.simCount(`modbussim firmware transfer begun`) }

	t.Run("deployment by desired property ends current", func(t *testing.T) {
		r.publishPump("2.4", 64<<10, false)
		r.mustCtl("firmware", "deploy", "--version", "2.4", "--model", "AP-100-EU", "--query", "deviceId = 'pump-1'", "--job-id", "fw-24")
		seen := r.watch(t, "pump-1", 90*time.Second, func(fw map[string]any) bool { return fw["status"] == "current" && fw["currentVersion"] == "2.4" })
		if !inOrder(seen, happyPath...) {
			t.Errorf("statuses %v: want them in the machine's order", seen)
		}
		r.eventually(t, 30*time.Second, "identify after the flash shows the new version", func() (bool, string) {
			v := path(r.reported("pump-1"), "device", "firmwareVersion")
			return v == "2.4", fmt.Sprint(v)
		})
		t.Logf("statuses seen: %v", seen)
	})

	t.Run("image that fails to boot ends rolled back", func(t *testing.T) {
		r.publishPump("2.5", 16<<10, true)
		r.mustCtl("firmware", "deploy", "--version", "2.5", "--model", "AP-100-EU", "--query", "deviceId = 'pump-1'", "--job-id", "fw-25")
		r.watch(t, "pump-1", 90*time.Second, func(fw map[string]any) bool { return fw["status"] == "failed" && fw["deployment"] == "fw-25" })
		if fw := r.firmware("pump-1"); fw["result"] != "rolledBack" || fw["currentVersion"] != "2.4" {
			t.Errorf("reported.firmware %v: want rolledBack with 2.4 current", fw)
		}
	})

	t.Run("gateway SIGKILL mid-upload resumes from the device's offset", func(t *testing.T) {
		im := r.publishPump("2.6", 256<<10, false)
		before := begun()
		r.killMidFlash(t, "pump-1", im, 20)
		status, offset := pumpTransfer(t, r.simTCP)
		if status != 1 || offset == 0 || offset >= 256<<10 {
			t.Fatalf("after the kill the pump reports status %d, offset %d: want receiving, part of the image", status, offset)
		}
		r.runGateway()
		r.watch(t, "pump-1", 120*time.Second, func(fw map[string]any) bool { return fw["status"] == "current" && fw["currentVersion"] == "2.6" })
		if n := begun() - before; n != 1 {
			t.Errorf("transfer begun %d times, want once (the restarted gateway resumes)\n%s", n, harness.Tail(r.sim.Stderr(), 20))
		}
	})
}
