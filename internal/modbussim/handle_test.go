package modbussim

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func newPumpSim(t *testing.T, units ...byte) (*Sim, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	s, err := New(loadPump(t), Options{Units: units, Now: clk.Now})
	if err != nil {
		t.Fatalf("new sim: %v", err)
	}
	return s, clk
}

func hexs(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func norm(s string) string { return strings.ToUpper(strings.ReplaceAll(s, " ", "")) }

// pduCases is the catalogue of request → response PDUs for unit 1 of the
// pump profile at the simulator's start (temperature 22.0, pressure 4.2,
// setpoint 21.5, uptime 0, running on). Cases run in order: writes stick.
var pduCases = []struct {
	name string
	req  string
	resp string
}{
	{"read temperature", "03 0000 0001", "03 02 00DC"},
	{"read with gaps", "03 0000 000C", "03 18 00DC 0000 4086 6666 0000 0000 0000 0000 0000 0000 41AC 0000"},
	{"read gap only", "03 0032 000A", "83 02"},
	{"read method register", "03 0064 0001", "03 02 0000"},
	{"read zero registers", "03 0000 0000", "83 03"},
	{"read 126 registers", "03 0000 007E", "83 03"},
	{"read 125 registers", "03 0000 007D", "03 FA 00DC 0000 4086 6666" + strings.Repeat(" 0000", 6) + " 41AC 0000" + strings.Repeat(" 0000", 113)},
	{"read past 65535", "03 FFFF 0002", "83 02"},
	{"read short pdu", "03 0000", "83 03"},
	{"read coil", "01 0000 0001", "01 01 01"},
	{"read 2001 coils", "01 0000 07D1", "81 03"},
	{"read unmapped coil", "01 0005 0001", "81 02"},
	{"read discrete none defined", "02 0000 0001", "82 02"},
	{"read uptime", "04 0000 0002", "04 04 0000 0000"},
	{"read serial string", "04 000A 0004", "04 08 534E 2D30 3030 3432"},
	{"write half of setpoint", "06 000A 4248", "06 000A 4248"},
	{"other half kept", "03 000A 0002", "03 04 4248 0000"},
	{"write gap register", "06 0032 0001", "86 02"},
	{"write coil off", "05 0000 0000", "05 0000 0000"},
	{"coil stays off", "01 0000 0001", "01 01 00"},
	{"write coil bad value", "05 0000 1234", "85 03"},
	{"write unmapped coil", "05 0007 FF00", "85 02"},
	{"write multiple registers", "10 000A 0002 04 41C8 0000", "10 000A 0002"},
	{"setpoint is 25.0", "03 000A 0002", "03 04 41C8 0000"},
	{"write multiple byte count lies", "10 000A 0002 03 41C8 00", "90 03"},
	{"write 124 registers", "10 0000 007C F8", "90 03"},
	{"write multiple over gaps", "10 0000 0004 08 0064 FFFF FFFF FFFF", "10 0000 0004"},
	{"gap write discarded", "03 0000 0004", "03 08 0064 0000 FFFF FFFF"},
	{"write multiple coils", "0F 0000 0001 01 01", "0F 0000 0001"},
	{"write coils bad byte count", "0F 0000 0009 01 FF", "8F 03"},
	{"read/write writes first", "17 000A 0002 000A 0002 04 41A0 0000", "17 04 41A0 0000"},
	{"read/write unmapped read", "17 0032 0001 000A 0002 04 41A0 0000", "97 02"},
	{"device id basic", "2B 0E 01 00", "2B 0E 01 82 00 00 03 00 04 41636D65 01 06 41502D313030 02 03 322E33"},
	{"device id one object", "2B 0E 04 05", "2B 0E 04 82 00 00 01 05 09 41502D3130302D4555"},
	{"device id unknown object", "2B 0E 04 10", "AB 02"},
	{"device id regular from 4", "2B 0E 02 04", "2B 0E 02 82 00 00 03 04 09 41636D652050756D70 05 09 41502D3130302D4555 06 06 64657673696D"},
	{"device id bad code", "2B 0E 09 00", "AB 03"},
	{"device id short", "2B 0E 01", "AB 03"},
	{"canopen mei", "2B 0D 00", "AB 01"},
	{"read exception status", "07", "87 01"},
	{"user function code", "41 0102", "C1 01"},
}

func TestPDUCatalogue(t *testing.T) {
	s, _ := newPumpSim(t)
	for _, tt := range pduCases {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := s.dispatch(1, unhex(t, norm(tt.req)), true)
			if !ok {
				t.Fatalf("no reply to %s", tt.req)
			}
			if got, want := hexs(r.pdu), norm(tt.resp); got != want {
				t.Errorf("request %s\n got %s\nwant %s", tt.req, got, want)
			}
		})
	}
}

func TestUnknownUnit(t *testing.T) {
	s, _ := newPumpSim(t, 1, 2)
	req := unhex(t, "03 0000 0001")
	if r, ok := s.dispatch(9, req, true); !ok || hexs(r.pdu) != "830B" {
		t.Errorf("tcp: reply %v %s, want exception 0B", ok, hexs(r.pdu))
	}
	if _, ok := s.dispatch(9, req, false); ok {
		t.Error("serial: unknown unit answered")
	}
	if r, ok := s.dispatch(255, req, true); !ok || hexs(r.pdu) != "830B" {
		t.Errorf("tcp unit 255 with two units: %s, want exception 0B", hexs(r.pdu))
	}
	single, _ := newPumpSim(t, 7)
	if r, ok := single.dispatch(255, req, true); !ok || hexs(r.pdu) != "030200DC" {
		t.Errorf("tcp unit 255 with one unit: %s, want the unit's answer", hexs(r.pdu))
	}
}

func TestBroadcastWrite(t *testing.T) {
	s, _ := newPumpSim(t, 1, 2, 3)
	if _, ok := s.dispatch(0, unhex(t, "10 000A 0002 04 41C8 0000"), false); ok {
		t.Fatal("broadcast answered")
	}
	for _, id := range s.Units() {
		if v, _ := s.Unit(id).Value("setpoint"); v != 25 {
			t.Errorf("unit %d setpoint %v after broadcast, want 25", id, v)
		}
	}
}

func TestValuesMoveWithClock(t *testing.T) {
	s, clk := newPumpSim(t)
	u := s.Unit(1)
	clk.Advance(15 * time.Second) // a quarter of the 60s sine period: the top
	tests := []struct {
		point string
		want  float64
	}{
		{"temperature", 26},
		{"uptime", 15},
		{"setpoint", 21.5},
		{"running", 1},
	}
	for _, tt := range tests {
		t.Run(tt.point, func(t *testing.T) {
			got, err := u.Value(tt.point)
			if err != nil || abs(got-tt.want) > 1e-6 {
				t.Errorf("%s = %v, %v; want %v", tt.point, got, err, tt.want)
			}
		})
	}
	t.Run("random walk stays in range and moves", func(t *testing.T) {
		seen := map[float64]bool{}
		for range 50 {
			clk.Advance(time.Second)
			v, _ := u.Value("pressure")
			if v < 3.5-1e-6 || v > 5.0+1e-6 {
				t.Fatalf("pressure %v outside [3.5, 5]", v)
			}
			seen[v] = true
		}
		if len(seen) < 10 {
			t.Errorf("pressure took only %d values in 50 steps", len(seen))
		}
	})
	if _, err := u.Value("nope"); err == nil {
		t.Error("unknown point accepted")
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestWritesStickPerUnit(t *testing.T) {
	s, clk := newPumpSim(t, 1, 2)
	if err := s.Unit(2).SetValue("setpoint", 30); err != nil {
		t.Fatal(err)
	}
	if err := s.Unit(2).SetValue("temperature", 19.9); err != nil {
		t.Fatal(err)
	}
	clk.Advance(15 * time.Second)
	for _, tt := range []struct {
		unit  byte
		point string
		want  float64
	}{{1, "setpoint", 21.5}, {2, "setpoint", 30}, {2, "temperature", 19.9}, {1, "temperature", 26}} {
		if v, _ := s.Unit(tt.unit).Value(tt.point); abs(v-tt.want) > 1e-6 {
			t.Errorf("unit %d %s = %v, want %v", tt.unit, tt.point, v, tt.want)
		}
	}
	if err := s.Unit(1).SetText("serial", "XY"); err != nil {
		t.Fatal(err)
	}
	if txt, _ := s.Unit(1).Text("serial"); txt != "XY" {
		t.Errorf("serial %q", txt)
	}
	regs, err := s.Unit(1).ReadRegisters(Holding, 50, 1)
	if err != IllegalDataAddress || regs != nil {
		t.Errorf("ReadRegisters of a gap = %v, %v", regs, err)
	}
}

func TestFactoryReset(t *testing.T) {
	s, _ := newPumpSim(t)
	u := s.Unit(1)
	_ = u.SetValue("setpoint", 30)
	_ = u.SetValue("running", 0)
	if r, _ := s.dispatch(1, unhex(t, "06 0065 0002"), true); hexs(r.pdu) != "0600650002" {
		t.Fatalf("write 2 to reset register: %s", hexs(r.pdu))
	}
	if u.FactoryResets() != 0 {
		t.Fatal("a value other than the method's reset the unit")
	}
	if r, _ := s.dispatch(1, unhex(t, "06 0065 0001"), true); hexs(r.pdu) != "0600650001" {
		t.Fatalf("write reset register: %s", hexs(r.pdu))
	}
	if u.FactoryResets() != 1 {
		t.Errorf("FactoryResets = %d, want 1", u.FactoryResets())
	}
	for point, want := range map[string]float64{"setpoint": 21.5, "running": 1} {
		if v, _ := u.Value(point); v != want {
			t.Errorf("%s = %v after reset, want default %v", point, v, want)
		}
	}
}

func TestBitPointsAndOffset(t *testing.T) {
	src := `name: flags
points:
  - {name: alarm, table: holding, address: 5, type: bool, bit: 0, sim: {value: 1}}
  - {name: ready, table: holding, address: 5, type: bool, bit: 3}
  - {name: swapped, table: holding, address: 6, type: bool, bit: 0, byte_order: BADC, sim: {value: true}}
  - {name: level, table: input, address: 0, type: int16, scale: 0.5, offset: -10, sim: {value: 0}}
`
	p, err := ParseProfile("flags.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	s, err := New(p, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	u := s.Unit(1)
	steps := []struct {
		name string
		do   func()
		req  string
		want string
	}{
		{"bits share a register", nil, "03 0005 0002", "03 04 0001 0100"},
		{"offset: 0 is raw 20", nil, "04 0000 0001", "04 02 0014"},
		{"set one bit keeps the other", func() { _ = u.SetValue("ready", 1) }, "03 0005 0001", "03 02 0009"},
		{"clear a bit", func() { _ = u.SetValue("alarm", 0) }, "03 0005 0001", "03 02 0008"},
		{"register write sets both", nil, "06 0005 0001", "06 0005 0001"},
		{"after register write", nil, "03 0005 0001", "03 02 0001"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.do != nil {
				st.do()
			}
			r, _ := s.dispatch(1, unhex(t, norm(st.req)), true)
			if got := hexs(r.pdu); got != norm(st.want) {
				t.Errorf("%s: got %s want %s", st.req, got, norm(st.want))
			}
		})
	}
	if v, _ := u.Value("ready"); v != 0 {
		t.Errorf("ready = %v after register write of 1, want 0", v)
	}
	if v, _ := u.Value("level"); v != 0 {
		t.Errorf("level = %v, want 0", v)
	}
	for _, bad := range []string{
		"points:\n  - {name: a, table: holding, address: 0, type: bool, bit: 1}\n  - {name: b, table: holding, address: 0, type: bool, bit: 1}\n",
		"points:\n  - {name: a, table: coil, address: 0, type: bool, bit: 1}\n",
		"points:\n  - {name: a, table: holding, address: 0, type: int16, bit: 1}\n",
		"points:\n  - {name: a, table: holding, address: 0, type: bool, bit: 16}\n",
	} {
		if _, err := ParseProfile("bad.yaml", []byte(bad)); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
