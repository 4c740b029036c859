package modbus

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseBusDefaults(t *testing.T) {
	b, errs := ParseBus(json.RawMessage(`{"name": "rs485-1", "plugin": "modbus", "mode": "rtu", "port": "/dev/ttyUSB0"}`))
	if errs != nil {
		t.Fatal(errs)
	}
	want := Bus{Mode: ModeRTU, Port: "/dev/ttyUSB0", Baud: 19200, DataBits: 8, Parity: ParityEven, StopBits: 1, Timeout: time.Second, Retries: 1}
	if *b != want {
		t.Fatalf("got %+v, want %+v", *b, want)
	}
	a, errs := ParseBus(json.RawMessage(`{"mode": "ascii", "port": "/dev/ttyS1"}`))
	if errs != nil || a.DataBits != 7 {
		t.Fatalf("ascii defaults: %+v %v", a, errs)
	}
}

func TestValidateBus(t *testing.T) {
	cases := []struct {
		name string
		bus  string
		want []string
	}{
		{"rtu from ARCHITECTURE.md", `{"name": "rs485-1", "plugin": "modbus", "mode": "rtu", "port": "/dev/ttyUSB0", "baud": 19200, "parity": "even", "stop_bits": 1, "timeout": "500ms"}`, nil},
		{"tcp from ARCHITECTURE.md", `{"name": "plant-lan", "plugin": "modbus", "mode": "tcp", "address": "10.0.0.5:502"}`, nil},
		{"8N2", `{"mode": "rtu", "port": "/dev/x", "parity": "none", "stop_bits": 2, "retries": 0}`, nil},
		{"missing mode", `{"port": "/dev/x"}`, []string{"mode: missing (want one of rtu, ascii, tcp)"}},
		{"unknown mode", `{"mode": "udp"}`, []string{`mode: unknown mode "udp"`}},
		{"unknown key", `{"mode": "tcp", "address": "h:1", "baudrate": 9600}`, []string{`baudrate: unknown key "baudrate"`}},
		{"rtu without port", `{"mode": "rtu"}`, []string{"port: missing"}},
		{"bad baud", `{"mode": "rtu", "port": "/dev/x", "baud": 12345}`, []string{"baud: unsupported baud rate 12345"}},
		{"rtu with 7 bits", `{"mode": "rtu", "port": "/dev/x", "data_bits": 7}`, []string{"data_bits: rtu needs 8 data bits"}},
		{"bad parity", `{"mode": "rtu", "port": "/dev/x", "parity": "mark"}`, []string{`parity: unknown parity "mark"`}},
		{"bad stop bits", `{"mode": "rtu", "port": "/dev/x", "stop_bits": 3}`, []string{"stop_bits: 3 not supported"}},
		{"serial keys on tcp", `{"mode": "tcp", "address": "h:502", "baud": 9600}`, []string{"baud: not used with mode tcp"}},
		{"address on rtu", `{"mode": "rtu", "port": "/dev/x", "address": "h:1"}`, []string{"address: not used with mode rtu"}},
		{"tcp without address", `{"mode": "tcp"}`, []string{"address: missing"}},
		{"tcp address without port", `{"mode": "tcp", "address": "10.0.0.5"}`, []string{`address: bad address "10.0.0.5"`}},
		{"tcp port out of range", `{"mode": "tcp", "address": "h:70000"}`, []string{`address: bad port "70000"`}},
		{"bad timeout", `{"mode": "tcp", "address": "h:1", "timeout": "soon"}`, []string{`timeout: bad duration "soon"`}},
		{"zero timeout", `{"mode": "tcp", "address": "h:1", "timeout": "0s"}`, []string{"timeout: 0s out of range"}},
		{"too many retries", `{"mode": "tcp", "address": "h:1", "retries": 99}`, []string{"retries: 99 out of range 0..10"}},
		{"baud as a string", `{"mode": "rtu", "port": "/dev/x", "baud": "fast"}`, []string{`baud: want an integer, got "fast"`}},
		{"garbage", `{{`, []string{"(document): want an object"}},
		{"list", `[]`, []string{"(document): want an object"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertFieldErrors(t, tc.bus, ValidateBus(json.RawMessage(tc.bus)), tc.want)
		})
	}
}

func TestInterFrameGap(t *testing.T) {
	cases := []struct {
		baud int
		want time.Duration
	}{
		{9600, 4010416}, {19200, 2005208}, {38400, 1750 * time.Microsecond}, {115200, 1750 * time.Microsecond},
	}
	for _, tc := range cases {
		b := Bus{Mode: ModeRTU, Baud: tc.baud, DataBits: 8, Parity: ParityEven, StopBits: 1}
		if got := b.interFrameGap(); got != tc.want {
			t.Errorf("baud %d: t3.5 = %v, want %v", tc.baud, got, tc.want)
		}
	}
}
