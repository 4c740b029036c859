package config

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/drover-iot/drover/plugins"
)

// fakeValidator answers with fixed field errors and records what it saw.
type fakeValidator struct {
	bus, profile []plugins.FieldError
	err          error
	seenBus      []map[string]any
	seenProfile  []map[string]any
}

func (f *fakeValidator) ValidateBus(_ context.Context, raw json.RawMessage) ([]plugins.FieldError, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	f.seenBus = append(f.seenBus, m)
	return f.bus, f.err
}

func (f *fakeValidator) ValidateProfile(_ context.Context, raw json.RawMessage) ([]plugins.FieldError, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	f.seenProfile = append(f.seenProfile, m)
	return f.profile, f.err
}

// A plugins.Plugin is a PluginValidator.
var _ PluginValidator = plugins.Plugin(nil)

func TestValidateWithPlugins(t *testing.T) {
	modbus := &fakeValidator{
		bus: []plugins.FieldError{
			{Path: "baudrate", Message: "unknown key"},
			{Path: "timeout", Message: "too short for this line"},
		},
		profile: []plugins.FieldError{
			{Path: "points[1].table", Message: `unknown table "coils"`},
			{Path: "/points/0/address", Message: "address past 65535"},
			{Path: "points.0.scale.deep", Message: "nested"},
			{Path: "", Message: "profile-wide"},
		},
	}
	serial := &fakeValidator{}
	fsys := memFiles{
		"gw.yaml": `gateway: { id: gw }
buses:
  - name: line1
    plugin: modbus
    mode: rtu
    port: /dev/ttyUSB0
    baudrate: 9600
    timeout: 20ms
  - { name: uart, plugin: serial, port: /dev/ttyS1 }
devices:
  - { id: pump-1, bus: line1, address: 3, profile: pump }
  - { id: mcu-1, bus: uart, profile: mcu }
`,
		"profiles/pump.yaml": `name: pump
plugin: modbus
points:
  - name: temperature
    table: holding
    address: 70000
    type: int16
  - name: running
    table: coils
    address: 0
    type: bool
`,
		"profiles/mcu.yaml": testProfiles["profiles/mcu.yaml"],
	}
	c, ps := load(fsys, "gw.yaml")
	if len(ps.list) > 0 {
		t.Fatalf("load: %v", ps.sorted())
	}
	err := c.ValidateWithPlugins(context.Background(), map[string]PluginValidator{"modbus": modbus, "serial": serial})
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("ValidateWithPlugins = %v, want *LoadError", err)
	}
	want := []string{
		"gw.yaml:7: buses[0].baudrate: unknown key",
		"gw.yaml:8: buses[0].timeout: too short for this line",
		"profiles/pump.yaml:1: profile-wide",
		"profiles/pump.yaml:4: points[0].scale.deep: nested",
		"profiles/pump.yaml:6: points[0].address: address past 65535",
		`profiles/pump.yaml:9: points[1].table: unknown table "coils"`,
	}
	if got := le.Error(); got != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	// The plugin saw the bus with defaults and its own keys, and the profile with its keys.
	if len(modbus.seenBus) != 1 || modbus.seenBus[0]["baudrate"] != float64(9600) || modbus.seenBus[0]["parity"] != "even" || modbus.seenBus[0]["timeout"] != "20ms" {
		t.Errorf("bus JSON = %v", modbus.seenBus)
	}
	pts, _ := modbus.seenProfile[0]["points"].([]any)
	if len(pts) != 2 || pts[1].(map[string]any)["table"] != "coils" {
		t.Errorf("profile JSON = %v", modbus.seenProfile)
	}
	if len(serial.seenBus) != 1 || len(serial.seenProfile) != 1 {
		t.Errorf("serial plugin not asked: %v %v", serial.seenBus, serial.seenProfile)
	}

	t.Run("missing plugin", func(t *testing.T) {
		err := c.ValidateWithPlugins(context.Background(), map[string]PluginValidator{"modbus": &fakeValidator{}})
		if err == nil || !strings.Contains(err.Error(), `gw.yaml:9: buses[1].plugin: no plugin "serial" (known plugins: modbus)`) ||
			!strings.Contains(err.Error(), `profiles/mcu.yaml:2: plugin: no plugin "serial"`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("plugin call fails", func(t *testing.T) {
		boom := errors.New("boom")
		err := c.ValidateWithPlugins(context.Background(), map[string]PluginValidator{"modbus": &fakeValidator{err: boom}, "serial": serial})
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), `validate bus "line1" with plugin "modbus"`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("all good", func(t *testing.T) {
		if err := c.ValidateWithPlugins(context.Background(), map[string]PluginValidator{"modbus": &fakeValidator{}, "serial": &fakeValidator{}}); err != nil {
			t.Errorf("err = %v", err)
		}
	})
}

func TestNormalizePath(t *testing.T) {
	tests := map[string]string{
		"points[3].type":   "points[3].type",
		"points.3.type":    "points[3].type",
		"/points/3/type":   "points[3].type",
		"$.quirks.a":       "quirks.a",
		"/methods/a~1b/x":  "methods.a/b.x",
		"/methods/a.b/x":   `methods["a.b"].x`,
		"":                 "",
		"timeout":          "timeout",
		"/":                "",
		"points[x].type":   "points[x].type",
		"/tags/site.name/": `tags["site.name"]`,
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := normalizePath(in); got != want {
				t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		validators map[string]PluginValidator
		want       []string // substrings, in order
		wantErr    bool
	}{
		{name: "good without plugins", path: "testdata/good.yaml"},
		{name: "good with plugins", path: "testdata/good.yaml", validators: map[string]PluginValidator{"modbus": &fakeValidator{}, "serial": &fakeValidator{}}},
		{name: "plugin problems", path: "testdata/good.yaml", validators: map[string]PluginValidator{
			"modbus": &fakeValidator{bus: []plugins.FieldError{{Path: "mode", Message: "rtu needs an RS-485 adapter"}}}, "serial": &fakeValidator{}},
			want: []string{"testdata/good.yaml:7: buses[0].mode: rtu needs an RS-485 adapter", "testdata/good.yaml:11: buses[1].mode"}},
		{name: "missing file", path: "testdata/nope.yaml", want: []string{"testdata/nope.yaml: cannot read: no such file or directory"}},
		{name: "generic and plugin problems together", path: "testdata/bad/typo-key.yaml", validators: map[string]PluginValidator{
			"modbus": &fakeValidator{bus: []plugins.FieldError{{Path: "port", Message: "no such port"}}}},
			want: []string{"typo-key.yaml:5: buses[0].port: no such port", "typo-key.yaml:9: devices[0].adress"}},
		{name: "plugin error", path: "testdata/good.yaml", validators: map[string]PluginValidator{"modbus": &fakeValidator{err: context.Canceled}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := Check(context.Background(), tt.path, tt.validators)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			var out strings.Builder
			if err := FormatProblems(&out, ps); err != nil {
				t.Fatal(err)
			}
			if len(tt.want) == 0 {
				if !tt.wantErr && out.String() != "ok\n" {
					t.Errorf("want ok, got:\n%s", out.String())
				}
				return
			}
			rest := out.String()
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("missing (or out of order) %q in:\n%s", w, out.String())
				}
				rest = rest[i+len(w):]
			}
			if !strings.HasSuffix(out.String(), " problems\n") && !strings.HasSuffix(out.String(), "1 problem\n") {
				t.Errorf("no count line:\n%s", out.String())
			}
		})
	}
}

func TestDeviceConfig(t *testing.T) {
	c := mustLoad(t)
	dc, err := c.DeviceConfig("pump-1")
	if err != nil {
		t.Fatal(err)
	}
	var prof map[string]any
	if err := json.Unmarshal(dc.Profile, &prof); err != nil || prof["name"] != "pump" {
		t.Errorf("profile JSON %s: %v", dc.Profile, err)
	}
	if dc.ID != "pump-1" || dc.Bus != "line1" || dc.Address != 3 || dc.Options != nil {
		t.Errorf("DeviceConfig = %+v", dc)
	}
	if _, err := c.DeviceConfig("nope"); err == nil {
		t.Error("unknown device: no error")
	}
}
