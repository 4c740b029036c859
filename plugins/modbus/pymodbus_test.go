package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// testProfile maps the values pymodbus_server.py serves.
const testProfile = `{
  "name": "drover-test", "plugin": "modbus",
  "points": [
    {"name": "temperature", "table": "holding", "address": 0, "type": "int16", "scale": 0.1},
    {"name": "delta", "table": "holding", "address": 1, "type": "int16"},
    {"name": "setpoint", "table": "holding", "address": 10, "type": "float32", "writable": true, "verify": true},
    {"name": "counter", "table": "holding", "address": 20, "type": "uint64"},
    {"name": "model", "table": "holding", "address": 30, "type": "string", "length": 4},
    {"name": "alarm0", "table": "holding", "address": 40, "type": "bool", "bit": 0},
    {"name": "alarm1", "table": "holding", "address": 40, "type": "bool", "bit": 1, "writable": true, "verify": true},
    {"name": "flow", "table": "input", "address": 0, "type": "int32", "byte_order": "CDAB"},
    {"name": "seven", "table": "input", "address": 5, "type": "uint16"},
    {"name": "running", "table": "coil", "address": 0, "writable": true},
    {"name": "valve", "table": "coil", "address": 3, "writable": true, "verify": true},
    {"name": "door", "table": "discrete", "address": 1},
    {"name": "limit_lo", "table": "holding", "address": 50, "type": "int16", "writable": true},
    {"name": "limit_hi", "table": "holding", "address": 51, "type": "uint32", "writable": true, "verify": true},
    {"name": "missing", "table": "holding", "address": 5000, "type": "uint16"}
  ],
  "methods": {"reboot": {"write": {"table": "holding", "address": 100, "value": 1}}},
  "in_use": {"point": "running", "equals": true}
}`

func TestPymodbusTCP(t *testing.T) {
	runPymodbusSuite(t, func(t *testing.T) string {
		port := startPymodbus(t, "tcp")
		return fmt.Sprintf(`{"mode": "tcp", "address": "127.0.0.1:%s", "timeout": "1s", "retries": 1}`, port)
	})
}

func TestPymodbusRTU(t *testing.T) {
	runPymodbusSuite(t, func(t *testing.T) string {
		srv, cli := ptyPair(t)
		startPymodbus(t, "rtu", srv, "115200")
		return fmt.Sprintf(`{"mode": "rtu", "port": %q, "baud": 115200, "parity": "none", "stop_bits": 1, "timeout": "1s", "retries": 1}`, cli)
	})
}

func TestPymodbusASCII(t *testing.T) {
	runPymodbusSuite(t, func(t *testing.T) string {
		srv, cli := ptyPair(t)
		startPymodbus(t, "ascii", srv, "115200")
		return fmt.Sprintf(`{"mode": "ascii", "port": %q, "baud": 115200, "data_bits": 8, "parity": "none", "timeout": "1s"}`, cli)
	})
}

func openTestBus(t *testing.T, d *Driver, name, bus string) {
	t.Helper()
	ctx := testContext(t)
	if err := d.OpenBus(ctx, plugins.BusConfig{Name: name, Config: json.RawMessage(bus)}); err != nil {
		t.Fatalf("OpenBus %s: %v", bus, err)
	}
	t.Cleanup(func() { _ = d.CloseBus(context.Background(), name) })
}

func runPymodbusSuite(t *testing.T, busJSON func(t *testing.T) string) {
	bus := busJSON(t)
	ctx := testContext(t)
	d := New(Options{})
	openTestBus(t, d, "b", bus)
	attach := func(t *testing.T, id string, unit int, opts string) {
		t.Helper()
		if err := d.Attach(ctx, plugins.DeviceConfig{ID: id, Bus: "b", Address: unit, Profile: json.RawMessage(testProfile), Options: json.RawMessage(opts)}); err != nil {
			t.Fatalf("Attach %s: %v", id, err)
		}
	}
	attach(t, "pump", 1, "")

	t.Run("read mixed types", func(t *testing.T) {
		vals, err := d.Read(ctx, "pump", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]plugins.Value{
			"temperature": vFloat(21.5), "delta": vInt(-100), "setpoint": vFloat(25), "counter": vUint(0x0102030405060708),
			"model": vStr("P100"), "alarm0": vBool(true), "alarm1": vBool(false), "flow": vInt(-123456), "seven": vUint(7),
			"running": vBool(true), "valve": vBool(false), "door": vBool(true), "limit_lo": vInt(0), "limit_hi": vUint(0),
		}
		for _, v := range vals {
			if v.Point == "missing" {
				continue
			}
			if v.Quality != plugins.QualityGood || !valuesClose(v.Value, want[v.Point]) {
				t.Errorf("%s = %+v (quality %d, %s), want %+v", v.Point, v.Value, v.Quality, v.Error, want[v.Point])
			}
			if v.Time.IsZero() {
				t.Errorf("%s has no timestamp", v.Point)
			}
		}
	})

	t.Run("unmapped address is exception 02", func(t *testing.T) {
		vals, err := d.Read(ctx, "pump", []string{"missing", "seven"})
		if err != nil {
			t.Fatal(err)
		}
		if vals[0].Quality != plugins.QualityBad || !strings.Contains(vals[0].Error, "illegal data address") ||
			!strings.HasPrefix(vals[0].Error, "invalid:") {
			t.Fatalf("missing = %+v, want bad quality with an invalid: illegal data address error", vals[0])
		}
		if vals[1].Quality != plugins.QualityGood || vals[1].Value.Uint != 7 {
			t.Fatalf("seven = %+v (a failed request must not spoil the others)", vals[1])
		}
	})

	t.Run("write and read back", func(t *testing.T) {
		res, err := d.Write(ctx, "pump", []plugins.PointWrite{
			{Point: "setpoint", Value: vFloat(42.25)},
			{Point: "limit_lo", Value: vInt(-7)}, {Point: "limit_hi", Value: vUint(70000)}, // contiguous: one FC 16
			{Point: "valve", Value: vBool(true)},
			{Point: "alarm1", Value: vBool(true)}, // FC 22 mask write
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if !r.OK {
				t.Errorf("write %s failed: %s", r.Point, r.Error)
			}
		}
		if res[0].ReadBack == nil || res[0].ReadBack.Float != 42.25 {
			t.Errorf("setpoint read-back = %+v", res[0].ReadBack)
		}
		vals, err := d.Read(ctx, "pump", []string{"setpoint", "limit_lo", "limit_hi", "valve", "alarm0", "alarm1"})
		if err != nil {
			t.Fatal(err)
		}
		want := []plugins.Value{vFloat(42.25), vInt(-7), vUint(70000), vBool(true), vBool(true), vBool(true)}
		for i, v := range vals {
			if v.Quality != plugins.QualityGood || !valuesClose(v.Value, want[i]) {
				t.Errorf("after write %s = %+v, want %+v", v.Point, v.Value, want[i])
			}
		}
	})

	t.Run("write rejects bad values before sending", func(t *testing.T) {
		for _, w := range []plugins.PointWrite{
			{Point: "limit_lo", Value: vInt(40000)}, {Point: "temperature", Value: vFloat(1)}, {Point: "model", Value: vStr("x")},
		} {
			_, err := d.Write(ctx, "pump", []plugins.PointWrite{w})
			if plugins.CodeOf(err) != plugins.CodeInvalid {
				t.Errorf("write %+v: %v, want CodeInvalid", w, err)
			}
		}
		if _, err := d.Write(ctx, "pump", []plugins.PointWrite{{Point: "nope", Value: vInt(1)}}); plugins.CodeOf(err) != plugins.CodeNotFound {
			t.Errorf("unknown point: %v", err)
		}
	})

	t.Run("identify", func(t *testing.T) {
		id, err := d.Identify(ctx, "pump")
		if err != nil {
			t.Fatal(err)
		}
		if id.Manufacturer != "Drover Test" || id.FirmwareVersion != "3.0" || id.Model == "" {
			t.Fatalf("Identify = %+v", id)
		}
	})

	t.Run("in-use rule", func(t *testing.T) {
		err := d.Reboot(ctx, "pump", plugins.ManageOptions{})
		if plugins.CodeOf(err) != plugins.CodeInUse {
			t.Fatalf("Reboot while running: %v, want CodeInUse", err)
		}
		if err := d.Reboot(ctx, "pump", plugins.ManageOptions{Force: true}); err != nil {
			t.Fatalf("forced Reboot: %v", err)
		}
		if err := d.FactoryReset(ctx, "pump", plugins.ManageOptions{Force: true}); plugins.CodeOf(err) != plugins.CodeUnsupported {
			t.Fatalf("FactoryReset without a method: %v", err)
		}
	})

	t.Run("silent unit times out", func(t *testing.T) {
		attach(t, "ghost", 5, `{"timeout": "200ms", "retries": 0}`)
		defer func() { _ = d.Detach(ctx, "ghost") }()
		vals, err := d.Read(ctx, "ghost", []string{"temperature", "flow", "running"})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if v.Quality != plugins.QualityTimeout {
				t.Errorf("%s = %+v, want QualityTimeout", v.Point, v)
			}
		}
		_, err = d.Identify(ctx, "ghost")
		if plugins.CodeOf(err) != plugins.CodeTimeout || !errors.Is(err, ErrTimeout) {
			t.Fatalf("Identify of a silent unit: %v, want CodeTimeout wrapping ErrTimeout", err)
		}
		// The bus still works after timeouts (late garbage drained).
		if vals, _ := d.Read(ctx, "pump", []string{"seven"}); vals[0].Quality != plugins.QualityGood {
			t.Fatalf("read after timeouts: %+v", vals[0])
		}
	})

	t.Run("scan", func(t *testing.T) {
		err := d.Scan(ctx, plugins.ScanRequest{Bus: "b", From: 1, To: 3}, nil)
		if plugins.CodeOf(err) != plugins.CodeBusy {
			t.Fatalf("Scan with attached devices: %v, want CodeBusy", err)
		}
		// A serial line takes one master: the first driver lets go of the
		// port (it is locked while open) before a fresh one scans it.
		if err := d.CloseBus(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		d2 := New(Options{})
		openTestBus(t, d2, "scan", bus)
		var events []plugins.ScanEvent
		err = d2.Scan(ctx, plugins.ScanRequest{Bus: "scan", From: 1, To: 3, Interval: 5 * time.Millisecond, Timeout: 200 * time.Millisecond},
			func(e plugins.ScanEvent) { events = append(events, e) })
		if err != nil {
			t.Fatal(err)
		}
		found := map[int]bool{}
		for _, e := range events {
			found[e.Address] = e.Found
		}
		if len(events) != 3 || !found[1] || !found[2] || found[3] {
			t.Fatalf("scan events %+v, want units 1 and 2 found, 3 not", events)
		}
		if events[0].Identity == nil || events[0].Identity.Manufacturer != "Drover Test" {
			t.Fatalf("scan identity %+v", events[0].Identity)
		}
	})
}
