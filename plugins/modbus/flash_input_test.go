package modbus

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/drover-iot/drover/plugins"
)

// withFirmware is a profile around a firmware section: a holding point at
// 0 and a reboot register at 100, for the overlap checks.
func withFirmware(section string) json.RawMessage {
	return json.RawMessage(`{"name": "x", "plugin": "modbus",
	  "points": [{"name": "temperature", "table": "holding", "address": 0, "type": "int16"}],
	  "methods": {"reboot": {"write": {"table": "holding", "address": 100, "value": 1}}},
	  "firmware": ` + section + `}`)
}

// TestValidateProfileFirmware validates the firmware sections under
// testdata/firmware/bad: each must give exactly the listed field errors
// (path: message fragment), and never a panic.
func TestValidateProfileFirmware(t *testing.T) {
	want := map[string][]string{
		"not-an-object.json": {"firmware: want an object"},
		"empty.json": {"firmware.transfer: missing", "firmware.block: missing", "firmware.offset.address: missing",
			"firmware.image_size.address: missing", "firmware.crc.address: missing", "firmware.control.address: missing",
			"firmware.status.address: missing", "firmware.version: missing (want fc43: true, point: NAME, or table, address and type)"},
		"block-too-big.json": {"firmware.block.size: 124 out of range 3..123"},
		"overlapping-registers.json": {"firmware.crc.address: registers 993..994 overlap firmware.offset (992..993)",
			"firmware.crc.address: registers 993..994 overlap firmware.image_size (994..995)",
			"firmware.control.address: registers 1050..1050 overlap firmware.block (1000..1122)"},
		"overlaps-point-and-method.json": {"firmware.block.address: registers 0..99 overlap point temperature",
			"firmware.control.address: registers 100..100 hold the reboot method's register 100"},
		"past-the-end.json": {"firmware.block.address: 123 registers from 65500 would run past 65535",
			"firmware.offset.address: 2 registers from 65535 would run past 65535",
			"firmware.image_size.address: 70000 out of range 0..65535"},
		"unknown-keys.json": {`firmware.transfer: unknown value "xmodem" (want one of registers, file_records)`,
			`firmware.blok: unknown key "blok"`, `firmware.offset.table: unknown key "table"`, "firmware.block: missing"},
		"bad-version-registers.json": {`firmware.version.table: unknown or bit table "coil" (want input or holding)`,
			`firmware.version.type: unknown type "float" (want one of string, uint16x3)`},
		"file-records-bad.json": {"firmware.block.address: only for transfer registers",
			"firmware.block.size: 123 out of range 1..122 (registers per FC 21 request)",
			"firmware.file.number: 0 out of range 1..65535", "firmware.file.records: 20000 out of range 1..10000"},
		"file-records-without-file.json":     {"firmware.file: missing (want {number} for transfer file_records)"},
		"two-version-sources.json":           {"firmware.version: give one of fc43, point, or table/address/type"},
		"version-point-unknown.json":         {`firmware.version.point: no point named "fw"`},
		"string-version-without-length.json": {"firmware.version.length: a string version needs length 1..125 (registers), got 0"},
		"wrong-value-types.json": {"firmware.transfer: want a string, got 1", "firmware.block: want an object",
			`firmware.offset.address: want an integer, got "992"`, "firmware.image_size: want an object",
			"firmware.crc.address: want an integer, got 99.5", "firmware.version.fc43: want true or false",
			`firmware.busy_timeout: bad duration "-1s"`, "firmware.reboot_timeout: want a duration",
			"firmware.control.address: missing"},
	}
	files, err := filepath.Glob("testdata/firmware/bad/*.json")
	if err != nil || len(files) != len(want) {
		t.Fatalf("fixtures %v (%v), want the %d of the table", files, err, len(want))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			errs := ValidateProfile(withFirmware(string(raw)))
			var got []string
			for _, e := range errs {
				got = append(got, e.Path+": "+e.Message)
			}
			for _, w := range want[name] {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
					t.Errorf("missing error %q", w)
				}
			}
			for _, g := range got {
				if !slices.ContainsFunc(want[name], func(w string) bool { return strings.HasPrefix(g, w) }) {
					t.Errorf("unexpected error %q", g)
				}
			}
		})
	}
}

// TestValidateProfileFirmwareGood: the sections of the example and demo
// profiles and of the test profile validate, and Describe offers flash
// and the firmware key.
func TestValidateProfileFirmwareGood(t *testing.T) {
	for src := range versionSources {
		for _, records := range []bool{false, true} {
			r := newFlashRig(t, rigOpts{version: src, records: records})
			if errs := ValidateProfile(r.prof); errs != nil {
				t.Errorf("version %s, file records %v: %v", src, records, errs)
			}
		}
	}
	for _, f := range []string{"../../configs/devsim/demo-pump.yaml", "../../configs/profiles/acme-pump.yaml"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, errs := ParseProfile(deviceProfileJSON(t, raw))
		if errs != nil || p.Firmware == nil || p.Firmware.DataBytes() != 242 {
			t.Errorf("%s: %v, firmware %+v", f, errs, p)
		}
	}
	d, _ := New(Options{}).Describe(context.Background())
	if !slices.Contains(d.Capabilities, plugins.CapFlash) || !slices.Contains(d.ProfileKeys, "firmware") {
		t.Errorf("Describe: %+v", d)
	}
}

// TestFlashRefusesBadInput: problems with the request, the image or the
// device are refused before a single request goes to the device.
func TestFlashRefusesBadInput(t *testing.T) {
	r := newFlashRig(t, rigOpts{})
	plain := json.RawMessage(`{"name": "plain", "points": [{"name": "temperature", "table": "holding", "address": 0, "type": "int16"}]}`)
	if err := r.d.Attach(testContext(t), plugins.DeviceConfig{ID: "plain", Bus: "b", Address: 1, Profile: plain}); err != nil {
		t.Fatal(err)
	}
	img := modbussim.FirmwareImage("2.0.0", 4000)
	good := r.image(t, "2.0.0", img)
	truncated := r.image(t, "2.0.0", img[:3000])
	manifest := func(m string) json.RawMessage { return json.RawMessage(m) }
	var goodM map[string]any
	_ = json.Unmarshal(good.Manifest, &goodM)
	sha := goodM["sha256"].(string)
	for _, tc := range []struct {
		name string
		edit func(*plugins.FlashRequest)
		code plugins.Code
		want string
	}{
		{"sha256 mismatch", func(q *plugins.FlashRequest) {
			q.Manifest = manifest(`{"version": "2.0.0", "sha256": "` + strings.Repeat("ab", 32) + `"}`)
		}, plugins.CodeInvalid, "is not the manifest's abab"},
		{"truncated image (sha256 of the whole)", func(q *plugins.FlashRequest) {
			q.ImagePath = truncated.ImagePath
			q.Manifest = good.Manifest
		}, plugins.CodeInvalid, "(3000 bytes) is not the manifest's " + sha},
		{"truncated image (size)", func(q *plugins.FlashRequest) {
			q.ImagePath = truncated.ImagePath
			q.Manifest = manifest(fmt.Sprintf(`{"version": "2.0.0", "sha256": %q, "size": 4000}`, sha))
		}, plugins.CodeInvalid, "has 3000 bytes, the manifest says 4000 (truncated or wrong file)"},
		{"no version", func(q *plugins.FlashRequest) { q.Manifest = manifest(`{"sha256": "` + sha + `"}`) },
			plugins.CodeInvalid, "manifest has no version"},
		{"no sha256", func(q *plugins.FlashRequest) { q.Manifest = manifest(`{"version": "2.0.0"}`) },
			plugins.CodeInvalid, "manifest has no sha256"},
		{"manifest not JSON", func(q *plugins.FlashRequest) { q.Manifest = manifest(`{"version": `) },
			plugins.CodeInvalid, "manifest:"},
		{"no manifest", func(q *plugins.FlashRequest) { q.Manifest = nil }, plugins.CodeInvalid, "no manifest"},
		{"no image file", func(q *plugins.FlashRequest) { q.ImagePath = filepath.Join(r.dir, "nope.bin") },
			plugins.CodeNotFound, "no such file"},
		{"empty image", func(q *plugins.FlashRequest) {
			q.ImagePath = r.image(t, "2.0.0", nil).ImagePath
			q.Manifest = manifest(`{"version": "2.0.0", "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`)
		}, plugins.CodeInvalid, "is empty"},
		{"unknown device", func(q *plugins.FlashRequest) { q.DeviceID = "pump-9" }, plugins.CodeNotFound, `device "pump-9" is not attached`},
		{"profile without firmware", func(q *plugins.FlashRequest) { q.DeviceID = "plain" },
			plugins.CodeUnsupported, "profile plain has no firmware section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := good
			tc.edit(&req)
			before := r.sim.Unit(1).Requests()
			var evs []plugins.FlashEvent
			err := r.d.Flash(testContext(t), req, func(ev plugins.FlashEvent) { evs = append(evs, ev) })
			if plugins.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Flash: %v (code %v), want %v with %q", err, plugins.CodeOf(err), tc.code, tc.want)
			}
			if n := r.sim.Unit(1).Requests() - before; n != 0 || len(evs) != 0 {
				t.Errorf("%d requests sent and events %+v before the refusal", n, evs)
			}
		})
	}
}

// TestSameVersion pins how device and manifest versions compare.
func TestSameVersion(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1.2.0", "1.2.0", true}, {"1.2", "1.2.0", true}, {"v1.2.0", "1.2", true}, {"1.2.0\x00\x00", "1.2.0", true},
		{" 2.3 ", "2.3", true}, {"1.2.1", "1.2.0", false}, {"1.2.0-rc1", "1.2.0", false}, {"", "1.0", false},
		{"abc", "abc", true}, {"1..2", "1.0.2", false},
	} {
		if got := sameVersion(tc.a, tc.b); got != tc.want {
			t.Errorf("sameVersion(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
