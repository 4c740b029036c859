package modbussim

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLoadPumpProfile(t *testing.T) {
	p := loadPump(t)
	if p.Name != "demo-pump" {
		t.Errorf("name %q", p.Name)
	}
	byName := map[string]Point{}
	for _, pt := range p.Points {
		byName[pt.Name] = pt
	}
	temp := byName["temperature"]
	if temp.Table != Holding || temp.Type != TypeInt16 || temp.Scale != 0.1 || temp.Sim.Kind != KindSine || temp.Sim.Period != time.Minute {
		t.Errorf("temperature = %+v", temp)
	}
	if sp := byName["setpoint"]; sp.Type != TypeFloat32 || sp.Address != 10 || sp.Sim.Value != 21.5 {
		t.Errorf("setpoint = %+v", sp)
	}
	if up := byName["uptime"]; up.Sim.Kind != KindCounter || up.Sim.Step != 1 || up.Sim.Period != time.Second {
		t.Errorf("uptime = %+v", up)
	}
	if r := byName["running"]; r.Table != Coil || r.Sim.Value != 1 {
		t.Errorf("running = %+v", r)
	}
	if m := p.Methods.Reboot; m == nil || m.Table != Holding || m.Address != 100 || m.Value != 1 {
		t.Errorf("reboot method = %+v", m)
	}
	if m := p.Methods.FactoryReset; m == nil || m.Address != 101 {
		t.Errorf("factoryReset method = %+v", m)
	}
	if p.Sim.RebootSilence != 3*time.Second || p.Sim.Identity.Vendor != "Acme" || p.Sim.Identity.Model != "AP-100-EU" {
		t.Errorf("sim = %+v", p.Sim)
	}
}

func TestParseProfileTolerates(t *testing.T) {
	src := `name: x
plugin: modbus
poll: 1s
quirks: {max_registers: 10}
in_use: {point: a, equals: true}
points:
  - name: a
    table: holding
    address: 0
    type: uint16
    poll: 5s
    unit: degC
    deadband: 0.5
    writable: true
    verify: true
methods:
  reboot: {write: {table: holding, address: 9, value: 7}}
  firmwareUpdate: {via: smp}
`
	p, err := ParseProfile("x.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if p.Points[0].Sim.Kind != KindConstant || p.Sim.RebootSilence != DefaultRebootSilence || p.Methods.Reboot.Value != 7 {
		t.Errorf("defaults not applied: %+v %+v", p.Points[0], p.Sim)
	}
}

func TestParseProfileErrors(t *testing.T) {
	head := "name: x\npoints:\n  - name: a\n    table: holding\n    address: 0\n    type: uint16\n"
	tests := []struct {
		name string
		src  string
		line int
		key  string
	}{
		{"unknown key in point sim", head + "    sim: {kind: sine, amplitude: 3}\n", 7, "points[0].sim.amplitude"},
		{"unknown sim kind", head + "    sim:\n      kind: square\n", 8, "points[0].sim.kind"},
		{"bad period", head + "    sim: {kind: sine, period: fast}\n", 7, "points[0].sim.period"},
		{"min above max", head + "    sim:\n      kind: sine\n      min: 5\n      max: 1\n", 8, "points[0].sim"},
		{"unknown top sim key", head + "sim:\n  reboot_silense: 3s\n", 8, "sim.reboot_silense"},
		{"unknown identity key", head + "sim:\n  identity:\n    vendr: x\n", 9, "sim.identity.vendr"},
		{"bad table", "points:\n  - name: a\n    table: register\n    address: 0\n    type: uint16\n", 3, "points[0].table"},
		{"bad type", "points:\n  - name: a\n    table: holding\n    address: 0\n    type: int17\n", 2, "points[0].type"},
		{"coil not bool", "points:\n  - name: a\n    table: coil\n    address: 0\n    type: int16\n", 2, "points[0].type"},
		{"missing address", "points:\n  - name: a\n    table: holding\n    type: int16\n", 2, "points[0].address"},
		{"address out of range", "points:\n  - name: a\n    table: holding\n    address: 70000\n    type: int16\n", 4, "points[0].address"},
		{"runs past 65535", "points:\n  - name: a\n    table: holding\n    address: 65535\n    type: float32\n", 2, "points[0].address"},
		{"string without length", "points:\n  - name: a\n    table: input\n    address: 0\n    type: string\n", 2, "points[0].length"},
		{"overlap", head + "  - name: b\n    table: holding\n    address: 0\n    type: uint32\n", 7, "points[1].address"},
		{"duplicate name", head + "  - name: a\n    table: input\n    address: 0\n    type: uint16\n", 7, "points[1].name"},
		{"bad byte order", head + "    byte_order: ABDC\n", 7, "points[0].byte_order"},
		{"zero scale", head + "    scale: 0\n", 7, "points[0].scale"},
		{"no points", "name: x\n", 1, "points"},
		{"yaml syntax", "name: x\npoints: [\n", 2, "(document)"},
		{"not a mapping", "- 1\n", 1, "(document)"},
		{"bad method table", head + "methods:\n  reboot: {write: {table: input, address: 1}}\n", 8, "methods.reboot.write.table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseProfile("sim.yaml", []byte(tt.src))
			var pe *ProfileError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ProfileError\n%s", err, tt.src)
			}
			if !errors.Is(err, ErrProfile) {
				t.Errorf("errors.Is(err, ErrProfile) is false")
			}
			if pe.File != "sim.yaml" || pe.Line != tt.line || pe.Key != tt.key {
				t.Errorf("got %s:%d key %q (%v), want line %d key %q\n%s", pe.File, pe.Line, pe.Key, err, tt.line, tt.key, tt.src)
			}
			if !strings.HasPrefix(err.Error(), "sim.yaml:") {
				t.Errorf("message %q does not start with the file", err)
			}
		})
	}
}

func TestLoadProfileMissingFile(t *testing.T) {
	if _, err := LoadProfile(t.TempDir() + "/nope.yaml"); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("err = %v, want one naming the file", err)
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add([]byte("points:\n  - {name: a, table: holding, address: 0, type: uint16, sim: {kind: sine}}\n"))
	f.Add([]byte("sim: {identity: {vendor: [1]}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProfile("f.yaml", b)
		if err == nil {
			if _, err := New(p, Options{}); err != nil {
				t.Fatalf("parsed profile rejected by New: %v", err)
			}
		}
	})
}

func TestParseUnitsAndFaults(t *testing.T) {
	units := []struct {
		in   string
		want []byte
		err  bool
	}{
		{"3", []byte{3}, false}, {"1-3", []byte{1, 2, 3}, false}, {"1,4-5", []byte{1, 4, 5}, false},
		{"0", nil, true}, {"248", nil, true}, {"5-2", nil, true}, {"x", nil, true}, {"", nil, true},
	}
	for _, tt := range units {
		t.Run("units "+tt.in, func(t *testing.T) {
			got, err := ParseUnits(tt.in)
			if (err != nil) != tt.err || string(got) != string(tt.want) {
				t.Errorf("ParseUnits(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
	faults := []struct {
		in   string
		unit byte
		want Faults
		err  bool
	}{
		{"unit=3,drop=1", 3, Faults{Drop: 1}, false},
		{"delay=20ms,bad-crc=0.5,exception=0x06", 0, Faults{Delay: 20 * time.Millisecond, BadCRC: 0.5, Exception: ServerDeviceBusy}, false},
		{"drop=2", 0, Faults{}, true}, {"speed=1", 0, Faults{}, true}, {"drop", 0, Faults{}, true},
	}
	for _, tt := range faults {
		t.Run("faults "+tt.in, func(t *testing.T) {
			u, f, err := ParseFaultSpec(tt.in)
			if (err != nil) != tt.err || (!tt.err && (u != tt.unit || f != tt.want)) {
				t.Errorf("ParseFaultSpec(%q) = %d, %+v, %v", tt.in, u, f, err)
			}
		})
	}
}

func TestDeviceProfileYAML(t *testing.T) {
	src, err := os.ReadFile(pumpProfilePath(t))
	if err != nil {
		t.Fatal(err)
	}
	out, err := DeviceProfileYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k := strings.TrimSpace(line); strings.HasPrefix(k, "sim:") || strings.HasPrefix(k, "reboot_silence:") {
			t.Errorf("sim key left: %q", line)
		}
	}
	p, err := ParseProfile("stripped.yaml", out)
	if err != nil {
		t.Fatalf("stripped profile does not load: %v", err)
	}
	if len(p.Points) != len(loadPump(t).Points) || p.Methods.Reboot == nil {
		t.Errorf("stripped profile lost points or methods: %+v", p)
	}
	if _, err := DeviceProfileYAML([]byte("- 1")); err == nil {
		t.Error("a list was accepted")
	}
}
