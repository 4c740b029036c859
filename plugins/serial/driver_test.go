package serial

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/portlock"
	"github.com/drover-iot/drover/plugins"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// attached returns a driver with the bus open on m and device mcu-1 attached.
func attached(t *testing.T, m *testMCU, bus map[string]any) *Driver {
	t.Helper()
	d := newDriver(t)
	if err := d.OpenBus(testCtx(t), plugins.BusConfig{Name: "mcu", Config: busJSON(m.Port, bus)}); err != nil {
		t.Fatal(err)
	}
	if err := d.Attach(testCtx(t), plugins.DeviceConfig{ID: "mcu-1", Bus: "mcu", Profile: json.RawMessage(testProfile)}); err != nil {
		t.Fatal(err)
	}
	return d
}

func phases(evs []plugins.FlashEvent) []string {
	var out []string
	for _, ev := range evs {
		if len(out) == 0 || out[len(out)-1] != ev.Phase {
			out = append(out, ev.Phase)
		}
	}
	return out
}

// TestFlash: a good image ends active and confirmed; one that fails to boot
// ends rolled back, as an event and as an error; flashing the running
// image again only confirms it.
func TestFlash(t *testing.T) {
	v1, v2 := mcuboot.Version{Major: 1}, mcuboot.Version{Major: 2, Minor: 1}
	for _, tc := range []struct {
		name       string
		badBoot    bool
		wantPhases string
		wantErr    string
		wantActive string
	}{
		{"boots", false, "uploading verifying applying rebooting confirming done", "", "2.1.0"},
		{"fails to boot", true, "uploading verifying applying rebooting rolled-back", "rolled-back: device mcu-1 runs 1.0.0 again", "1.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMCU(t, v1)
			m.badBoot = tc.badBoot
			d := attached(t, m, nil)
			var evs []plugins.FlashEvent
			err := d.Flash(testCtx(t), plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: writeImage(t, v2, 20000),
				Manifest: json.RawMessage(`{"version": "2.1.0"}`)}, func(ev plugins.FlashEvent) { evs = append(evs, ev) })
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Flash: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || plugins.CodeOf(err) != plugins.CodeDeviceError) {
				t.Fatalf("Flash: %v, want a device error saying %q", err, tc.wantErr)
			}
			if got := strings.Join(phases(evs), " "); got != tc.wantPhases {
				t.Errorf("phases %q, want %q", got, tc.wantPhases)
			}
			m.mu.Lock()
			active, confirmed := m.slots[0].meta.Version.String(), m.slots[0].confirmed
			m.mu.Unlock()
			if active != tc.wantActive || !confirmed {
				t.Errorf("device runs %s (confirmed %v), want %s confirmed", active, confirmed, tc.wantActive)
			}
			id, err := d.Identify(testCtx(t), "mcu-1")
			if err != nil || id.FirmwareVersion != tc.wantActive {
				t.Errorf("Identify after flash: %+v, %v", id, err)
			}
		})
	}

	t.Run("already running", func(t *testing.T) {
		m := newTestMCU(t, v1)
		d := attached(t, m, nil)
		img := writeImage(t, v2, 3000)
		if err := d.Flash(testCtx(t), plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: img}, nil); err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		resets := m.resets
		m.mu.Unlock()
		var evs []plugins.FlashEvent
		if err := d.Flash(testCtx(t), plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: img}, func(ev plugins.FlashEvent) { evs = append(evs, ev) }); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(phases(evs), " "); got != "confirming done" || m.resets != resets {
			t.Errorf("second flash of the running image: phases %q, %d more resets", got, m.resets-resets)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		m := newTestMCU(t, v1)
		d := attached(t, m, nil)
		notImage := writeImage(t, v2, 100)
		if err := writeFile(notImage, []byte("not an image")); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			req  plugins.FlashRequest
			code plugins.Code
			msg  string
		}{
			{"missing file", plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: "/no/such.bin"}, plugins.CodeNotFound, "no such file"},
			{"not mcuboot", plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: notImage}, plugins.CodeInvalid, "not an MCUboot image"},
			{"manifest version", plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: writeImage(t, v2, 100), Manifest: json.RawMessage(`{"version":"3.0.0"}`)}, plugins.CodeInvalid, "manifest says version 3.0.0"},
			{"manifest sha", plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: writeImage(t, v2, 100), Manifest: json.RawMessage(`{"sha256":"00"}`)}, plugins.CodeInvalid, "SHA-256"},
		} {
			err := d.Flash(testCtx(t), tc.req, nil)
			if plugins.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.code, tc.msg)
			}
		}
	})
}

// TestFlashResumes: a flash cut half way (the gateway's side went away)
// resumes from the offset the device holds: one session request, answered
// with that offset, and only the rest of the image on the line.
func TestFlashResumes(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	d := attached(t, m, nil)
	img := writeImage(t, mcuboot.Version{Major: 1, Minor: 5}, 30000)
	ctx, cancel := context.WithCancel(testCtx(t))
	m.onUpload = func(off int) {
		if off > 15000 {
			cancel()
		}
	}
	err := d.Flash(ctx, plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: img}, nil)
	if err == nil {
		t.Fatal("cut flash succeeded")
	}
	m.mu.Lock()
	m.onUpload = nil
	held, sent := len(m.upData), m.received
	m.firsts = nil
	m.mu.Unlock()
	var evs []plugins.FlashEvent
	if err := d.Flash(testCtx(t), plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: img, ResumeOffset: int64(held)}, func(ev plugins.FlashEvent) { evs = append(evs, ev) }); err != nil {
		t.Fatalf("resumed flash: %v", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.firsts) != 1 || m.firsts[0] != held {
		t.Errorf("session requests found the device at %v, want once at %d", m.firsts, held)
	}
	total := len(mcuboot.Build(mcuboot.Version{Major: 1, Minor: 5}, make([]byte, 30000)))
	if again := m.received - sent; again != total-held {
		t.Errorf("resumed upload sent %d bytes, want the %d the device lacked", again, total-held)
	}
	resumed := slices.ContainsFunc(evs, func(ev plugins.FlashEvent) bool { return strings.Contains(ev.Message, "resuming at offset") })
	if !resumed {
		t.Errorf("no event says the upload resumed: %+v", evs)
	}
	if m.slots[0].meta.Version.String() != "1.5.0" || !m.slots[0].confirmed {
		t.Errorf("device runs %s", m.slots[0].meta.Version)
	}
}

// TestFlashDeviceResetMidUpload: the device reboots during the upload
// (its session, in RAM, is lost); the plugin sends the session fields
// again when the device answers offset 0, and the flash completes.
func TestFlashDeviceResetMidUpload(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	m.cutAt = 8000
	d := attached(t, m, nil)
	if err := d.Flash(testCtx(t), plugins.FlashRequest{DeviceID: "mcu-1", ImagePath: writeImage(t, mcuboot.Version{Major: 3}, 20000)}, nil); err != nil {
		t.Fatalf("Flash: %v", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots[0].meta.Version.String() != "3.0.0" || len(m.firsts) < 2 {
		t.Errorf("device runs %s after %d session requests", m.slots[0].meta.Version, len(m.firsts))
	}
}

// TestRebootAndFactoryReset: an application refusing the reset (EBUSY)
// makes Reboot fail with CodeInUse unless forced; forced, the reset is
// sent with force=1; the device answers again before Reboot returns.
// Factory reset erases storage, then resets.
func TestRebootAndFactoryReset(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	m.busy = true
	d := attached(t, m, nil)
	err := d.Reboot(testCtx(t), "mcu-1", plugins.ManageOptions{})
	if plugins.CodeOf(err) != plugins.CodeInUse || !strings.Contains(err.Error(), "EBUSY") {
		t.Fatalf("Reboot of a busy device: %v, want in-use", err)
	}
	if err := d.Reboot(testCtx(t), "mcu-1", plugins.ManageOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	if m.resets != 1 || m.forced != 1 || time.Now().Before(m.silent) {
		t.Errorf("resets %d, forced %d, still silent %v: want one forced reset, answered", m.resets, m.forced, time.Now().Before(m.silent))
	}
	m.busy = false
	m.mu.Unlock()
	if err := d.FactoryReset(testCtx(t), "mcu-1", plugins.ManageOptions{}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	if m.erased != 1 || m.resets != 2 || len(m.settings) != 0 {
		t.Errorf("factory reset: erased %d, resets %d, settings %v", m.erased, m.resets, m.settings)
	}
	m.mu.Unlock()

	// The answer to the reset is lost: the device reset all the same, and
	// Reboot waits for it instead of failing.
	m.mu.Lock()
	m.dropNext = 1
	m.mu.Unlock()
	if err := d.Reboot(testCtx(t), "mcu-1", plugins.ManageOptions{}); err != nil {
		t.Fatalf("Reboot with its answer lost: %v", err)
	}
	m.mu.Lock()
	if m.resets != 3 {
		t.Errorf("resets %d, want 3", m.resets)
	}
	m.mu.Unlock()

	vals, err := d.Read(testCtx(t), "mcu-1", []string{"interval", "uptime"})
	if err != nil || vals[0].Quality != plugins.QualityBad || !strings.Contains(vals[0].Error, "ENOENT") || vals[1].Quality != plugins.QualityGood {
		t.Errorf("read after factory reset: %+v, %v; want the erased setting bad (ENOENT), the stat good", vals, err)
	}
}

// TestRebootSilentDevice: a device that answers neither the reset nor
// anything after it makes Reboot fail as a timeout by the caller's
// deadline.
func TestRebootSilentDevice(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	d := attached(t, m, nil)
	m.mu.Lock()
	m.silent = time.Now().Add(time.Hour)
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(testCtx(t), 3*time.Second)
	defer cancel()
	err := d.Reboot(ctx, "mcu-1", plugins.ManageOptions{})
	if plugins.CodeOf(err) != plugins.CodeTimeout || !strings.Contains(err.Error(), "no answer to the reset, nor since") {
		t.Fatalf("Reboot of a silent device: %v, want a timeout", err)
	}
}

// TestBadLine: log noise and corrupt frames before every answer, a lost
// answer, a v1-only device, missing stats and settings: every point reads
// or fails with a clear error, and the plugin keeps serving.
func TestBadLine(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	m.noise, m.v1Only, m.dropNext = true, true, 1
	m.bufSize = 0 // no params command
	d := attached(t, m, nil)
	vals, err := d.Read(testCtx(t), "mcu-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if v.Quality != plugins.QualityGood {
			t.Errorf("%s: %v %s", v.Point, v.Quality, v.Error)
		}
	}
	if vals[5].Value.Uint != 384 {
		t.Errorf("buffer of a device without params: %+v, want 384", vals[5].Value)
	}
	id, err := d.Identify(testCtx(t), "mcu-1")
	if err != nil || id.Extra["smpVersion"] != "1" || id.Extra["slot0Flags"] != "active,confirmed,bootable" || id.Serial != "pump" {
		t.Errorf("Identify: %+v, %v", id, err)
	}
	m.mu.Lock()
	delete(m.stats, "app")
	m.settings["app/interval"] = []byte{1, 2} // wrong width for int32
	m.mu.Unlock()
	vals, err = d.Read(testCtx(t), "mcu-1", []string{"uptime", "interval", "label"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"ENOENT", "holds 2 bytes, a int32 takes 4", ""} {
		if want == "" {
			if vals[i].Quality != plugins.QualityGood {
				t.Errorf("%s: %+v", vals[i].Point, vals[i])
			}
		} else if vals[i].Quality != plugins.QualityBad || !strings.Contains(vals[i].Error, want) {
			t.Errorf("%s: %+v, want bad with %q", vals[i].Point, vals[i], want)
		}
	}
	res, err := d.Write(testCtx(t), "mcu-1", []plugins.PointWrite{
		{Point: "interval", Value: plugins.Value{Kind: plugins.KindFloat, Float: 2.5}},
		{Point: "uptime", Value: plugins.Value{Kind: plugins.KindInt, Int: 1}},
		{Point: "interval", Value: plugins.Value{Kind: plugins.KindInt, Int: 1 << 40}},
		{Point: "interval", Value: plugins.Value{Kind: plugins.KindInt, Int: -7}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"not an integer", "not writable", "out of range", ""} {
		if (want == "") != res[i].OK || !strings.Contains(res[i].Error, want) {
			t.Errorf("write %d: %+v, want %q", i, res[i], want)
		}
	}
	if rb := res[3].ReadBack; rb == nil || rb.Int != -7 {
		t.Errorf("read back %+v", rb)
	}
}

// TestScanPorts: address 0 is the bus's port, 1.. the scan_ports; a port
// another process holds is reported with its error, not probed.
func TestScanPorts(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	other := newTestMCU(t, mcuboot.Version{Major: 4, Minor: 2})
	held := newTestMCU(t, mcuboot.Version{Major: 1})
	lock, err := portlock.Lock(held.Port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	d := attached(t, m, map[string]any{"scan_ports": []string{other.Port, held.Port, m.Port}})
	var evs []plugins.ScanEvent
	if err := d.Scan(testCtx(t), plugins.ScanRequest{Bus: "mcu", From: 0, To: 10, Timeout: 300 * time.Millisecond}, func(ev plugins.ScanEvent) { evs = append(evs, ev) }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("events %+v, want 3 (the bus's port listed once)", evs)
	}
	if !evs[0].Found || evs[0].Identity.FirmwareVersion != "1.0.0" {
		t.Errorf("address 0: %+v", evs[0])
	}
	if !evs[1].Found || evs[1].Identity.FirmwareVersion != "4.2.0" || evs[1].Identity.Extra["port"] != other.Port {
		t.Errorf("address 1: %+v", evs[1])
	}
	if evs[2].Found || !strings.Contains(evs[2].Error, "in use by another process") {
		t.Errorf("address 2 (held port): %+v", evs[2])
	}
}

// TestValidateBus: each problem is reported at its key.
func TestValidateBus(t *testing.T) {
	for _, tc := range []struct {
		bus  string
		want string // "path: message part"; "" = valid
	}{
		{`{"port":"/dev/ttyS1"}`, ""},
		{`{"port":"/dev/ttyS1","baud":115200,"parity":"none","timeout":"1s","retries":1,"smp_version":"auto","transport":"raw","line_length":127,"erase_timeout":"60s","scan_ports":["/dev/ttyUSB*"]}`, ""},
		{`{"port":"/dev/ttyS1","line_pacing":"20ms"}`, ""},
		{`{"baud":115200}`, "port: missing"},
		{`{"port":"/dev/ttyS1","baud":12345}`, "baud: unsupported baud rate 12345"},
		{`{"port":"/dev/ttyS1","smp_version":"3"}`, `smp_version: unknown value "3"`},
		{`{"port":"/dev/ttyS1","transport":"hex"}`, `transport: unknown value "hex"`},
		{`{"port":"/dev/ttyS1","line_pacing":"fast"}`, `line_pacing: bad value "fast"`},
		{`{"port":"/dev/ttyS1","transport":"raw","line_pacing":"auto"}`, "line_pacing: not used with transport raw"},
		{`{"port":"/dev/ttyS1","line_length":3}`, "line_length: 3 out of range"},
		{`{"port":"/dev/ttyS1","data_bits":7}`, "data_bits: SMP carries 8-bit bytes"},
		{`{"port":"/dev/ttyS1","mode":"rtu"}`, "mode: not used by the serial plugin"},
		{`{"port":"/dev/ttyS1","timeout":"soon"}`, `timeout: bad duration "soon"`},
		{`{"port":"/dev/ttyS1","scan_ports":["ttyUSB0"]}`, `scan_ports[0]: "ttyUSB0" is not an absolute path`},
		{`{"port":"/dev/ttyS1","speed":9600}`, `speed: unknown key "speed"`},
	} {
		got := ValidateBus(json.RawMessage(tc.bus))
		if tc.want == "" {
			if len(got) > 0 {
				t.Errorf("%s: %v, want valid", tc.bus, got)
			}
			continue
		}
		if !hasProblem(got, tc.want) {
			t.Errorf("%s: %v, want %q", tc.bus, got, tc.want)
		}
	}
}

func hasProblem(fes []plugins.FieldError, want string) bool {
	path, msg, _ := strings.Cut(want, ": ")
	return slices.ContainsFunc(fes, func(fe plugins.FieldError) bool {
		return fe.Path == path && strings.Contains(fe.Message, msg)
	})
}

// TestValidateProfile: each problem is reported at its key path.
func TestValidateProfile(t *testing.T) {
	pt := func(s string) string { return `{"name":"p","plugin":"serial","points":[` + s + `]}` }
	for _, tc := range []struct {
		profile string
		want    string
	}{
		{testProfile, ""},
		{pt(`{"name":"a","stat":"app","field":"x","type":"float32"}`), ""},
		{pt(`{"name":"a","os":"info","format":"snr"}`), ""},
		{pt(`{"name":"a","stat":"app"}`), `points[0].field: missing`},
		{pt(`{"name":"a"}`), `points[0]: say where the value comes from`},
		{pt(`{"name":"a","stat":"app","field":"x","setting":"a/b"}`), `points[0].setting: a point has one source`},
		{pt(`{"name":"a","setting":"a/b"}`), `points[0].type: missing: the setting's stored encoding`},
		{pt(`{"name":"a","setting":"a/b","type":"int24"}`), `points[0].type: unknown value "int24"`},
		{pt(`{"name":"a","stat":"app","field":"x","writable":true}`), `points[0].writable: only setting points`},
		{pt(`{"name":"a","os":"uptime"}`), `points[0].os: unknown value "uptime"`},
		{pt(`{"name":"a","os":"datetime","type":"int32"}`), `points[0].type: os datetime is a string`},
		{pt(`{"name":"a","stat":"s","field":"x","table":"holding"}`), `points[0].table: unknown key "table"`},
		{pt(`{"name":"a","stat":"s","field":"x"},{"name":"a","stat":"s","field":"y"}`), `points[1].name: duplicate point name "a"`},
		{`{"name":"p","plugin":"modbus"}`, `plugin: profile is for plugin "modbus"`},
		{`{"name":"p","methods":{"reboot":{"write":{"table":"holding"}}}}`, `methods.reboot: the serial plugin's reboot is an SMP command`},
		{`{"name":"p","identify":{"serial_point":"nope"}}`, `identify.serial_point: no point "nope"`},
		{`{"name":"p","settings":{"persist":true}}`, `settings.persist: unknown key "persist"`},
		{`{"name":"p","in_use":{"point":"nope","equals":true}}`, `in_use.point: no point "nope"`},
	} {
		got := ValidateProfile(json.RawMessage(tc.profile))
		if tc.want == "" {
			if len(got) > 0 {
				t.Errorf("%s: %v, want valid", tc.profile, got)
			}
			continue
		}
		if !hasProblem(got, tc.want) {
			t.Errorf("%s: %v, want %q", tc.profile, got, tc.want)
		}
	}
}

// TestOpenBusErrors: a missing port and a port another process holds fail
// OpenBus with CodeUnavailable and say which port.
func TestOpenBusErrors(t *testing.T) {
	m := newTestMCU(t, mcuboot.Version{Major: 1})
	lock, err := portlock.Lock(m.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	d := newDriver(t)
	for _, port := range []string{"/dev/no-such-tty", m.Port} {
		err := d.OpenBus(testCtx(t), plugins.BusConfig{Name: "mcu", Config: busJSON(port, nil)})
		if plugins.CodeOf(err) != plugins.CodeUnavailable || !strings.Contains(err.Error(), port) {
			t.Errorf("OpenBus(%s): %v, want unavailable naming the port", port, err)
		}
		if port == m.Port && !errors.Is(err, portlock.ErrInUse) {
			t.Errorf("OpenBus of a held port: %v, want ErrInUse in the chain", err)
		}
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
