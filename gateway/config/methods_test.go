package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const methodsProfileHead = `name: m
plugin: modbus
points:
  - { name: counter_reset, table: coil, address: 1, type: bool, writable: true }
  - { name: setpoint, table: holding, address: 10, type: float32, writable: true }
  - { name: mode, table: holding, address: 11, type: uint16, writable: true }
  - { name: temperature, table: holding, address: 0, type: int16 }
methods:
  reboot: { write: { table: holding, address: 100, value: 1 } }
`

// TestCustomMethods checks the validation of custom methods (every method
// but reboot and factoryReset) and what CustomMethods returns for good ones.
func TestCustomMethods(t *testing.T) {
	cases := []struct {
		name    string
		methods string // appended under methods:
		want    map[string]CustomMethod
		wantErr []string // substrings of problems, in file order
	}{
		{"point writes", `  resetCounters: { points: { counter_reset: true } }
  eco: { points: { setpoint: 18.5, mode: 2 }, disruptive: true }
`, map[string]CustomMethod{
			"resetCounters": {Points: map[string]any{"counter_reset": true}},
			"eco":           {Points: map[string]any{"setpoint": 18.5, "mode": int64(2)}, Disruptive: true},
		}, nil},
		{"an integer fits a float point", `  warm: { points: { setpoint: 25 } }
`, map[string]CustomMethod{"warm": {Points: map[string]any{"setpoint": int64(25)}}}, nil},
		{"read-only point", `  zero: { points: { temperature: 0 } }
`, nil, []string{`m.yaml:10: methods.zero.points.temperature: point "temperature" is not writable`}},
		{"unknown point", `  eco: { points: { setpont: 18.5 } }
`, nil, []string{`methods.eco.points.setpont: unknown point "setpont" (did you mean "setpoint"?)`}},
		{"wrong value types", `  eco: { points: { counter_reset: 1, setpoint: "warm", mode: 2.5 } }
`, nil, []string{
			`methods.eco.points.counter_reset: 1 does not fit point "counter_reset" of type bool`,
			`methods.eco.points.setpoint: "warm" does not fit point "setpoint" of type float32`,
			`methods.eco.points.mode: 2.5 does not fit point "mode" of type uint16`,
		}},
		{"null value", `  eco: { points: { setpoint: null } }
`, nil, []string{`methods.eco.points.setpoint: want a value for point "setpoint" of type float32`}},
		{"no points", `  eco: { disruptive: true }
`, nil, []string{`methods.eco: required: points`}},
		{"empty points", `  eco: { points: {} }
`, nil, []string{`methods.eco.points: no points`}},
		{"points not a mapping", `  eco: { points: [setpoint] }
`, nil, []string{`methods.eco.points: want a mapping of point name to value`}},
		{"disruptive not a bool", `  eco: { points: { setpoint: 18.5 }, disruptive: yes please }
`, nil, []string{`methods.eco.disruptive: want true or false`}},
		{"typo key", `  eco: { point: { setpoint: 18.5 } }
`, nil, []string{`methods.eco: required: points`, `methods.eco.point: unknown key "point" (did you mean "points"?)`}},
		{"not a mapping", `  eco: true
`, nil, []string{`methods.eco: want a mapping: points:`}},
		{"built-in name", `  identify: { points: { setpoint: 1.5 } }
`, nil, []string{`methods.identify: "identify" is a built-in method of every device`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.yaml")
			if err := writeFile(path, methodsProfileHead+tc.methods); err != nil {
				t.Fatal(err)
			}
			p, err := LoadProfile(path)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("LoadProfile:\n%s\n%v", tc.methods, err)
				}
				if got := p.CustomMethods(); !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("CustomMethods() = %#v, want %#v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadProfile(%s) succeeded, want %q", tc.methods, tc.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.wantErr) {
				t.Fatalf("methods:\n%s\ngot %d problems:\n%v\nwant %q", tc.methods, len(lines), err, tc.wantErr)
			}
			for i, want := range tc.wantErr {
				if !strings.Contains(lines[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], want)
				}
			}
		})
	}
}

func TestIsCustomMethod(t *testing.T) {
	for name, want := range map[string]bool{"reboot": false, "factoryReset": false, "write": false, "read": false,
		"identify": false, "firmwareUpdate": false, "resetCounters": true} {
		if got := IsCustomMethod(name); got != want {
			t.Errorf("IsCustomMethod(%q) = %v, want %v", name, got, want)
		}
	}
}
