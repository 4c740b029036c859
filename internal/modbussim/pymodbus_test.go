package modbussim

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/testenv"
)

const python = "/usr/bin/python3"

func needPymodbus(t *testing.T) {
	t.Helper()
	testenv.RequirePython(t, python, "Debian python3-pymodbus with python3-serial-asyncio", "pymodbus.client")
}

// TestPymodbusClient cross-checks the simulator with pymodbus 3.0's client
// over TCP, RTU and ASCII on ptys.
func TestPymodbusClient(t *testing.T) {
	needPymodbus(t)
	ep := startSim(t, startOpts{opts: Options{Units: []byte{3, 4, 5}}, rtu: true, ascii: true})
	_, port, _ := net.SplitHostPort(ep.tcp)
	tests := []struct {
		mode, target string
		unit         byte
	}{
		{"tcp", port, 3},
		{"rtu", ep.rtu, 4},
		{"ascii", ep.ascii, 5},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, python, "testdata/pyclient.py", tt.mode, tt.target, strconv.Itoa(int(tt.unit))).CombinedOutput()
			if err != nil {
				t.Fatalf("pyclient %s: %v\n%s", tt.mode, err, out)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("pyclient output: %v\n%s", err, out)
			}
			want := map[string]any{
				"holding":        []any{220.0, 0.0, 0x4086 * 1.0, 0x6666 * 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0x41AC * 1.0, 0.0},
				"input":          []any{0x534E * 1.0, 0x2D30 * 1.0, 0x3030 * 1.0, 0x3432 * 1.0},
				"coils":          []any{true},
				"id_basic":       map[string]any{"0": "Acme", "1": "AP-100", "2": "2.3"},
				"id_regular":     map[string]any{"0": "Acme", "1": "AP-100", "2": "2.3", "3": "https://acme.invalid", "4": "Acme Pump", "5": "AP-100-EU", "6": "devsim"},
				"write":          true,
				"write_coil":     true,
				"setpoint_after": []any{0x41C8 * 1.0, 0.0},
				"coils_after":    []any{false},
				"exc_unmapped":   2.0,
				"exc_quantity":   3.0,
			}
			if tt.mode == "tcp" {
				want["exc_unknown_unit"] = 11.0
			}
			for k, w := range want {
				if !reflect.DeepEqual(got[k], w) {
					t.Errorf("%s: pymodbus saw %v, want %v", k, got[k], w)
				}
			}
			u := ep.sim.Unit(tt.unit)
			if v, _ := u.Value("setpoint"); v != 25 {
				t.Errorf("setpoint in the simulator = %v after pymodbus wrote 25", v)
			}
		})
	}
}
