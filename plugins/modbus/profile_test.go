package modbus

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// acmePump is ARCHITECTURE.md's profiles/acme-pump.yaml as the gateway
// hands it over (JSON, same keys).
const acmePump = `{
  "name": "acme-pump", "plugin": "modbus",
  "points": [
    {"name": "temperature", "table": "holding", "address": 0, "type": "int16", "scale": 0.1, "unit": "degC", "poll": "5s"},
    {"name": "setpoint", "table": "holding", "address": 10, "type": "float32", "byte_order": "ABCD", "writable": true},
    {"name": "running", "table": "coil", "address": 0, "type": "bool"}
  ],
  "methods": {
    "reboot": {"write": {"table": "holding", "address": 100, "value": 1}},
    "factoryReset": {"write": {"table": "holding", "address": 101, "value": 1}}
  },
  "in_use": {"point": "running", "equals": true}
}`

func TestParseProfileAcmePump(t *testing.T) {
	p, errs := ParseProfile(json.RawMessage(acmePump))
	if errs != nil {
		t.Fatalf("ParseProfile: %v", errs)
	}
	if len(p.Points) != 3 || p.Points[0].Scale != 0.1 || p.Points[0].Poll != 5*time.Second || !p.Points[1].Writable {
		t.Fatalf("points decoded wrong: %+v", p.Points)
	}
	if p.Methods[MethodReboot] != (MethodWrite{TableHolding, 100, 1}) {
		t.Fatalf("reboot = %+v", p.Methods[MethodReboot])
	}
	if p.InUse == nil || p.InUse.Point != "running" || p.InUse.Equals != (plugins.Value{Kind: plugins.KindBool, Bool: true}) {
		t.Fatalf("in_use = %+v", p.InUse)
	}
	if p.Quirks.MaxFill != DefaultMaxFill || p.Quirks.MaxRegistersPerRead != 125 || !p.Identify.FC43 {
		t.Fatalf("defaults not applied: %+v %+v", p.Quirks, p.Identify)
	}
}

// withPoint is a minimal valid profile around one point object.
func withPoint(point string) string {
	return `{"name": "x", "points": [` + point + `]}`
}

func TestValidateProfile(t *testing.T) {
	cases := []struct {
		name    string
		profile string
		want    []string // "path: message fragment"; empty = valid
	}{
		{"valid acme pump", acmePump, nil},
		{"sim blocks are tolerated", `{"name": "x", "sim": {"a": 1}, "points": [{"name": "a", "table": "holding", "address": 0, "type": "int16", "sim": {"kind": "sine"}}]}`, nil},
		{"unknown type", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "int17"}`),
			[]string{`points[0].type: unknown type "int17" (want one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string)`}},
		{"unknown table", withPoint(`{"name": "a", "table": "register", "address": 0, "type": "int16"}`),
			[]string{`points[0].table: unknown table "register"`}},
		{"unknown key in a point", withPoint(`{"name": "a", "table": "holding", "adress": 0, "type": "int16"}`),
			[]string{`points[0].adress: unknown key "adress"`, "points[0].address: missing"}},
		{"unknown top-level key", `{"name": "x", "pointz": []}`, []string{`pointz: unknown key "pointz"`}},
		{"unknown quirk", `{"name": "x", "quirks": {"max_regs": 3}}`, []string{`quirks.max_regs: unknown key`}},
		{"address out of range", withPoint(`{"name": "a", "table": "holding", "address": 65536, "type": "int16"}`),
			[]string{"points[0].address: 65536 out of range 0..65535"}},
		{"negative address", withPoint(`{"name": "a", "table": "holding", "address": -1, "type": "int16"}`),
			[]string{"points[0].address: missing"}},
		{"32-bit value at 65534 fits", withPoint(`{"name": "a", "table": "holding", "address": 65534, "type": "uint32"}`), nil},
		{"32-bit value at 65535 runs past the end", withPoint(`{"name": "a", "table": "holding", "address": 65535, "type": "float32"}`),
			[]string{"points[0].address: float32 at 65535 needs 2 registers and would run past 65535"}},
		{"64-bit value at 65534 runs past the end", withPoint(`{"name": "a", "table": "input", "address": 65534, "type": "int64"}`),
			[]string{"points[0].address: int64 at 65534 needs 4 registers"}},
		{"string past the end", withPoint(`{"name": "a", "table": "holding", "address": 65530, "type": "string", "length": 8}`),
			[]string{"points[0].address: string at 65530 needs 8 registers"}},
		{"address not an integer", withPoint(`{"name": "a", "table": "holding", "address": "ten", "type": "int16"}`),
			[]string{`points[0].address: want an integer, got "ten"`}},
		{"writable input register", withPoint(`{"name": "a", "table": "input", "address": 0, "type": "int16", "writable": true}`),
			[]string{"points[0].writable: input table is read-only"}},
		{"writable discrete", withPoint(`{"name": "a", "table": "discrete", "address": 0, "type": "bool", "writable": true}`),
			[]string{"points[0].writable: discrete table is read-only"}},
		{"string without length", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "string"}`),
			[]string{"points[0].length: a string needs length 1..125"}},
		{"length on a number", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "int16", "length": 2}`),
			[]string{"points[0].length: only for type string"}},
		{"bool in holding without bit", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "bool"}`),
			[]string{"points[0].bit: missing: a bool in holding registers needs bit"}},
		{"bool in holding with bit", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "bool", "bit": 15, "writable": true}`), nil},
		{"bit out of range", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "bool", "bit": 16}`),
			[]string{"points[0].bit: 16 out of range 0..15"}},
		{"negative bit", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "bool", "bit": -2}`),
			[]string{"points[0].bit: -2 out of range 0..15"}},
		{"bit on a coil", withPoint(`{"name": "a", "table": "coil", "address": 0, "type": "bool", "bit": 1}`),
			[]string{"points[0].bit: only for bool points in input or holding"}},
		{"number in a coil", withPoint(`{"name": "a", "table": "coil", "address": 0, "type": "int16"}`),
			[]string{"points[0].type: coil table holds bits: type must be bool, not int16"}},
		{"coil type may be omitted", withPoint(`{"name": "a", "table": "coil", "address": 0}`), nil},
		{"bad byte order", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "int32", "byte_order": "ACBD"}`),
			[]string{`points[0].byte_order: unknown byte order "ACBD" (want one of ABCD, DCBA, BADC, CDAB)`}},
		{"zero scale", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "int16", "scale": 0}`),
			[]string{"points[0].scale: must not be 0"}},
		{"bad poll", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "int16", "poll": "often"}`),
			[]string{`points[0].poll: bad duration "often"`}},
		{"verify without writable", withPoint(`{"name": "a", "table": "holding", "address": 0, "type": "int16", "verify": true}`),
			[]string{"points[0].verify: read-back verification needs writable: true"}},
		{"duplicate names", `{"name": "x", "points": [{"name": "a", "table": "coil", "address": 0}, {"name": "a", "table": "coil", "address": 1}]}`,
			[]string{`points[1].name: duplicate point name "a" (also points[0])`}},
		{"point in a forbidden range", `{"name": "x", "points": [{"name": "a", "table": "holding", "address": 9, "type": "uint32"}],
			"quirks": {"forbidden": [{"table": "holding", "from": 10, "to": 12}]}}`,
			[]string{"points[0].address: holding 9..10 overlaps a forbidden range"}},
		{"forbidden range backwards", `{"name": "x", "quirks": {"forbidden": [{"table": "holding", "from": 10, "to": 2}]}}`,
			[]string{"quirks.forbidden[0].to: 2 out of range 10..65535"}},
		{"forbidden range unknown table", `{"name": "x", "quirks": {"forbidden": [{"table": "hold", "from": 1}]}}`,
			[]string{`quirks.forbidden[0].table: unknown table "hold"`}},
		{"max registers above the spec", `{"name": "x", "quirks": {"max_registers_per_read": 126}}`,
			[]string{"quirks.max_registers_per_read: 126 out of range 1..125"}},
		{"max bits above the spec", `{"name": "x", "quirks": {"max_bits_per_read": 2001}}`,
			[]string{"quirks.max_bits_per_read: 2001 out of range 1..2000"}},
		{"point bigger than the device cap", `{"name": "x", "points": [{"name": "a", "table": "holding", "address": 0, "type": "float64"}], "quirks": {"max_registers_per_read": 2}}`,
			[]string{"points[0].type: float64 needs 4 registers but the device reads at most 2 per request"}},
		{"in_use point missing", `{"name": "x", "in_use": {"point": "nope", "equals": true}}`,
			[]string{`in_use.point: no point named "nope"`}},
		{"in_use compares bool with number", withPoint(`{"name": "a", "table": "coil", "address": 0}`)[:len(withPoint(`{"name": "a", "table": "coil", "address": 0}`))-1] + `, "in_use": {"point": "a", "equals": 3}}`,
			[]string{"in_use.equals: cannot compare a bool point with a number"}},
		{"method on a read-only table", `{"name": "x", "methods": {"reboot": {"write": {"table": "input", "address": 1, "value": 1}}}}`,
			[]string{`methods.reboot.write.table: unknown or read-only table "input"`}},
		{"method value out of range", `{"name": "x", "methods": {"reboot": {"write": {"table": "holding", "address": 1, "value": 70000}}}}`,
			[]string{"methods.reboot.write.value: register value 70000 out of range -32768..65535"}},
		{"coil method value", `{"name": "x", "methods": {"factoryReset": {"write": {"table": "coil", "address": 1, "value": true}}}}`, nil},
		{"custom methods are the gateway's", `{"name": "x", "methods": {"resetCounters": {"points": {"counter_reset": true}, "disruptive": false},
			"reboot": {"write": {"table": "holding", "address": 1, "value": 1}}}}`, nil},
		{"custom method next to a bad reboot", `{"name": "x", "methods": {"calibrate": {"points": {"a": 1}},
			"reboot": {"write": {"table": "input", "address": 1, "value": 1}}}}`,
			[]string{`methods.reboot.write.table: unknown or read-only table "input"`}},
		{"identify point missing", `{"name": "x", "identify": {"serial_point": "sn"}}`,
			[]string{`identify.serial_point: no point named "sn"`}},
		{"wrong plugin", `{"name": "x", "plugin": "serial"}`, []string{`plugin: profile is for plugin "serial"`}},
		{"missing name", `{"points": []}`, []string{"name: missing"}},
		{"points not a list", `{"name": "x", "points": {"a": 1}}`, []string{"points: want a list"}},
		{"point not an object", `{"name": "x", "points": [3]}`, []string{"points[0]: want an object"}},
		{"document not an object", `[1, 2]`, []string{"(document): want an object"}},
		{"garbage", `{"name": `, []string{"(document): want an object"}},
		{"empty", ``, []string{"(document): want an object"}},
		{"null", `null`, []string{"(document): want an object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := ValidateProfile(json.RawMessage(tc.profile))
			assertFieldErrors(t, tc.profile, errs, tc.want)
		})
	}
}

func assertFieldErrors(t *testing.T, input string, errs []plugins.FieldError, want []string) {
	t.Helper()
	if len(want) == 0 {
		if len(errs) != 0 {
			t.Fatalf("input %s\nwant valid, got %v", input, errs)
		}
		return
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			if strings.HasPrefix(e.Path+": "+e.Message, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("input %s\nwant an error starting %q, got %v", input, w, errs)
		}
	}
}

func TestDecodeQuirksOverlay(t *testing.T) {
	q := DefaultQuirks()
	q.OneRequestPerPoint = true
	var errs []plugins.FieldError
	DecodeQuirks(json.RawMessage(`{"max_fill": 0, "delay_between_requests": "20ms"}`), "quirks", &q, &errs)
	if errs != nil {
		t.Fatal(errs)
	}
	if q.MaxFill != 0 || q.DelayBetweenRequests != 20*time.Millisecond || !q.OneRequestPerPoint || q.MaxRegistersPerRead != 125 {
		t.Fatalf("overlay wrong: %+v", q)
	}
}

// FuzzValidateProfile feeds garbage to the profile decoder: it must never
// panic, and a profile it accepts must plan without panicking.
func FuzzValidateProfile(f *testing.F) {
	f.Add([]byte(acmePump))
	f.Add([]byte(withPoint(`{"name": "a", "table": "holding", "address": 65535, "type": "string", "length": 1}`)))
	f.Add([]byte(`{"quirks": {"forbidden": [{"table": "coil", "from": 0, "to": 65535}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, errs := ParseProfile(b)
		if errs == nil {
			Plan(p.Points, p.Quirks)
		}
	})
}
