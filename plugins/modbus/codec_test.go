package modbus

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/drover-iot/drover/plugins"
)

func vInt(i int64) plugins.Value     { return plugins.Value{Kind: plugins.KindInt, Int: i} }
func vUint(u uint64) plugins.Value   { return plugins.Value{Kind: plugins.KindUint, Uint: u} }
func vFloat(f float64) plugins.Value { return plugins.Value{Kind: plugins.KindFloat, Float: f} }
func vBool(b bool) plugins.Value     { return plugins.Value{Kind: plugins.KindBool, Bool: b} }
func vStr(s string) plugins.Value    { return plugins.Value{Kind: plugins.KindString, String: s} }

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func withOrder(p Point, o ByteOrder) Point { p.ByteOrder = o; return p }
func withScale(p Point, s, off float64) Point {
	p.Scale, p.Offset = s, off
	return p
}

// codecCases is the shared catalogue: wire bytes ↔ value. Decoding the
// wire must give the value; encoding the value must give the wire.
var codecCases = []struct {
	name  string
	p     Point
	wire  string
	value plugins.Value
}{
	{"int16 negative", pt("t", TableHolding, 0, TypeInt16), "FF 9C", vInt(-100)},
	{"int16 byte swapped", withOrder(pt("t", TableHolding, 0, TypeInt16), OrderBADC), "9C FF", vInt(-100)},
	{"uint16 max", pt("t", TableHolding, 0, TypeUint16), "FF FF", vUint(65535)},
	{"int16 scaled 0.1", withScale(pt("t", TableHolding, 0, TypeInt16), 0.1, 0), "00 D7", vFloat(21.5)},
	{"uint16 scale and offset", withScale(pt("t", TableInput, 0, TypeUint16), 0.5, -40), "00 64", vFloat(10)},
	{"int32 ABCD", pt("t", TableHolding, 0, TypeInt32), "FF FE 1D C0", vInt(-123456)},
	{"int32 CDAB", withOrder(pt("t", TableHolding, 0, TypeInt32), OrderCDAB), "1D C0 FF FE", vInt(-123456)},
	{"int32 BADC", withOrder(pt("t", TableHolding, 0, TypeInt32), OrderBADC), "FE FF C0 1D", vInt(-123456)},
	{"int32 DCBA", withOrder(pt("t", TableHolding, 0, TypeInt32), OrderDCBA), "C0 1D FE FF", vInt(-123456)},
	{"uint32", pt("t", TableHolding, 0, TypeUint32), "DE AD BE EF", vUint(0xDEADBEEF)},
	{"float32 ABCD", pt("t", TableHolding, 0, TypeFloat32), "41 C8 00 00", vFloat(25)},
	{"float32 CDAB", withOrder(pt("t", TableHolding, 0, TypeFloat32), OrderCDAB), "00 00 41 C8", vFloat(25)},
	{"float32 DCBA", withOrder(pt("t", TableHolding, 0, TypeFloat32), OrderDCBA), "00 00 C8 41", vFloat(25)},
	{"float32 BADC", withOrder(pt("t", TableHolding, 0, TypeFloat32), OrderBADC), "C8 41 00 00", vFloat(25)},
	{"int64 min", pt("t", TableHolding, 0, TypeInt64), "80 00 00 00 00 00 00 00", vInt(math.MinInt64)},
	{"uint64 max", pt("t", TableHolding, 0, TypeUint64), "FF FF FF FF FF FF FF FF", vUint(math.MaxUint64)},
	{"uint64 CDAB reverses all registers", withOrder(pt("t", TableHolding, 0, TypeUint64), OrderCDAB), "07 08 05 06 03 04 01 02", vUint(0x0102030405060708)},
	{"uint64 DCBA", withOrder(pt("t", TableHolding, 0, TypeUint64), OrderDCBA), "08 07 06 05 04 03 02 01", vUint(0x0102030405060708)},
	{"float64", pt("t", TableHolding, 0, TypeFloat64), "40 09 21 FB 54 44 2D 18", vFloat(math.Pi)},
	{"bool bit 0 set", bitIn("b", TableHolding, 0, 0), "00 01", vBool(true)},
	{"bool bit 15 set", bitIn("b", TableHolding, 0, 15), "80 00", vBool(true)},
	{"bool bit 3 clear", bitIn("b", TableHolding, 0, 3), "00 00", vBool(false)},
	{"string NUL padded", str("s", TableHolding, 0, 4), "50 31 30 30 00 00 00 00", vStr("P100")},
	{"string byte swapped", withOrder(str("s", TableHolding, 0, 2), OrderBADC), "31 50 30 30", vStr("P100")},
	{"empty string", str("s", TableHolding, 0, 2), "00 00 00 00", vStr("")},
}

func TestDecodeRegisters(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRegisters(&tc.p, unhex(t, tc.wire))
			if err != nil {
				t.Fatalf("decode %s: %v", tc.wire, err)
			}
			if !valuesClose(got, tc.value) {
				t.Fatalf("decode %s as %s/%s = %+v, want %+v", tc.wire, tc.p.Type, tc.p.ByteOrder, got, tc.value)
			}
		})
	}
}

func TestEncodeRegisters(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodeRegisters(&tc.p, tc.value)
			if err != nil {
				t.Fatalf("encode %+v: %v", tc.value, err)
			}
			if want := unhex(t, tc.wire); !bytes.Equal(got, want) {
				t.Fatalf("encode %+v as %s/%s = % X, want % X", tc.value, tc.p.Type, tc.p.ByteOrder, got, want)
			}
		})
	}
}

func valuesClose(a, b plugins.Value) bool {
	if a.Kind == plugins.KindFloat && b.Kind == plugins.KindFloat {
		return math.Abs(a.Float-b.Float) <= 1e-9*math.Max(1, math.Abs(b.Float))
	}
	return a == b
}

func TestDecodeStringTrims(t *testing.T) {
	p := str("s", TableHolding, 0, 4)
	got, err := DecodeRegisters(&p, []byte("  SN-1 \x00xyz"[:8]))
	if err != nil || got.String != "SN-1" {
		t.Fatalf("got %q, %v", got.String, err)
	}
	got, _ = DecodeRegisters(&p, []byte("AB      "))
	if got.String != "AB" {
		t.Fatalf("space padded: got %q", got.String)
	}
}

func TestCodecErrors(t *testing.T) {
	i16 := pt("t", TableHolding, 0, TypeInt16)
	u16 := pt("t", TableHolding, 0, TypeUint16)
	scaled := withScale(pt("t", TableHolding, 0, TypeInt16), 0.1, 0)
	f32 := pt("t", TableHolding, 0, TypeFloat32)
	s := str("s", TableHolding, 0, 2)
	cases := []struct {
		name string
		p    Point
		v    plugins.Value
		want string
	}{
		{"int16 too big", i16, vInt(32768), "out of int16 range"},
		{"uint16 negative", u16, vInt(-1), "out of uint16 range"},
		{"uint16 from a too-big uint", u16, vUint(70000), "out of uint16 range"},
		{"scaled out of range", scaled, vFloat(3276.8), "out of int16 range"},
		{"not integral after scale", scaled, vFloat(21.55), "is not an integer after scale and offset"},
		{"float for an unscaled int that is not whole", i16, vFloat(1.5), "is not an integer"},
		{"string for a number", i16, vStr("1"), "is numeric"},
		{"number for a string", s, vInt(1), "is a string"},
		{"string too long", s, vStr("12345"), "holds at most 4 bytes"},
		{"float32 overflow", f32, vFloat(1e39), "out of float32 range"},
		{"NaN", f32, vFloat(math.NaN()), "cannot be written"},
		{"bool from 2", bitIn("b", TableHolding, 0, 1), vInt(2), "is a bool"},
		{"no value", i16, plugins.Value{}, "is numeric"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EncodeRegisters(&tc.p, tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("encode %+v as %s: err %v, want %q", tc.v, tc.p.Type, err, tc.want)
			}
		})
	}
	if _, err := DecodeRegisters(&f32, []byte{1, 2}); err == nil {
		t.Fatal("decoding 2 bytes as float32 should fail")
	}
}

func TestEncodeIntegerEdges(t *testing.T) {
	cases := []struct {
		p    Point
		v    plugins.Value
		wire string
	}{
		{pt("t", TableHolding, 0, TypeInt64), vInt(math.MaxInt64), "7F FF FF FF FF FF FF FF"},
		{pt("t", TableHolding, 0, TypeUint64), vUint(math.MaxUint64), "FF FF FF FF FF FF FF FF"},
		{pt("t", TableHolding, 0, TypeInt16), vFloat(-32768), "80 00"},
		{withScale(pt("t", TableHolding, 0, TypeUint16), 0.01, 0), vFloat(655.35), "FF FF"},
		{pt("t", TableHolding, 0, TypeUint32), vUint(1), "00 00 00 01"},
	}
	for _, tc := range cases {
		got, err := EncodeRegisters(&tc.p, tc.v)
		if err != nil || !bytes.Equal(got, unhex(t, tc.wire)) {
			t.Errorf("encode %+v as %s: % X, %v; want %s", tc.v, tc.p.Type, got, err, tc.wire)
		}
	}
}

// TestCodecGolden checks every type × byte order for fixed values against
// testdata/codec.golden (regenerate with -update after a deliberate change).
func TestCodecGolden(t *testing.T) {
	var b strings.Builder
	vals := map[Type]plugins.Value{
		TypeInt16: vInt(-2), TypeUint16: vUint(0x1234), TypeInt32: vInt(-0x1234568), TypeUint32: vUint(0x89ABCDEF),
		TypeInt64: vInt(-0x123456789ABCDEF), TypeUint64: vUint(0xFEDCBA9876543210), TypeFloat32: vFloat(-1.5),
		TypeFloat64: vFloat(1e-300), TypeString: vStr("Drover"),
	}
	for _, typ := range types {
		if typ == TypeBool {
			continue
		}
		for _, o := range byteOrders {
			p := withOrder(pt("g", TableHolding, 0, typ), o)
			if typ == TypeString {
				p.Length = 4
			}
			wire, err := EncodeRegisters(&p, vals[typ])
			if err != nil {
				t.Fatalf("%s %s: %v", typ, o, err)
			}
			back, err := DecodeRegisters(&p, wire)
			if err != nil || !valuesClose(back, vals[typ]) {
				t.Fatalf("%s %s: round trip gave %+v, %v", typ, o, back, err)
			}
			fmt.Fprintf(&b, "%-7s %s %-23s = %s\n", typ, o, fmt.Sprintf("% X", wire), vals[typ].Text())
		}
	}
	const golden = "testdata/codec.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (regenerate with -update): %v", err)
	}
	if b.String() != string(want) {
		t.Fatalf("codec output differs from %s:\n%s", golden, b.String())
	}
}

func TestBits(t *testing.T) {
	bits := []bool{true, false, true, true, false, false, false, false, true}
	packed := packBits(bits)
	if !bytes.Equal(packed, []byte{0x0D, 0x01}) {
		t.Fatalf("packBits = % X", packed)
	}
	for i, b := range bits {
		if bitAt(packed, i) != b {
			t.Fatalf("bit %d", i)
		}
	}
}

// FuzzDecodeRegisters: any bytes of the right length decode without panic,
// and numeric values re-encode to the same bytes.
func FuzzDecodeRegisters(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, ti, oi uint8) {
		typ := types[int(ti)%len(types)]
		if typ == TypeBool || typ == TypeString || typ == TypeFloat32 || typ == TypeFloat64 {
			return // NaN payloads and trimmed strings do not round-trip byte for byte
		}
		p := withOrder(pt("f", TableHolding, 0, typ), byteOrders[int(oi)%len(byteOrders)])
		_, n := p.Span()
		if len(raw) < 2*n {
			return
		}
		raw = raw[:2*n]
		v, err := DecodeRegisters(&p, raw)
		if err != nil {
			t.Fatal(err)
		}
		back, err := EncodeRegisters(&p, v)
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("%s %s: % X -> %+v -> % X, %v", typ, p.ByteOrder, raw, v, back, err)
		}
	})
}
