package modbussim

import (
	"bytes"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestCRC16(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint16
	}{
		{"check value 123456789", hex.EncodeToString([]byte("123456789")), 0x4B37},
		{"read 1 holding unit 1", "01 03 00 00 00 01", 0x0A84}, // wire: 84 0A
		{"empty", "", 0xFFFF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CRC16(unhex(t, tt.in)); got != tt.want {
				t.Errorf("CRC16(%s) = %04X, want %04X", tt.in, got, tt.want)
			}
		})
	}
	t.Run("test vector on the wire", func(t *testing.T) {
		got := appendCRC(unhex(t, "01 03 00 00 00 01"))
		if want := unhex(t, "01 03 00 00 00 01 84 0A"); !bytes.Equal(got, want) {
			t.Errorf("frame % X, want % X", got, want)
		}
		if !crcOK(got) {
			t.Error("crcOK rejects the test vector")
		}
	})
}

func TestLRC(t *testing.T) {
	// ":010300000001FB\r\n" reads 1 holding register from unit 1.
	if got := LRC(unhex(t, "01 03 00 00 00 01")); got != 0xFB {
		t.Errorf("LRC = %02X, want FB", got)
	}
}

// rtuCases is the catalogue of RTU request frames: bytes in, frames out.
var rtuCases = []struct {
	name   string
	in     string
	frames []string // address + PDU, CRC stripped
	flush  string   // frame returned by the silence flush, if any
}{
	{"test vector", "01 03 00 00 00 01 84 0A", []string{"01 03 00 00 00 01"}, ""},
	{"two frames in one chunk", "01 03 00 00 00 01 84 0A 01 03 00 00 00 01 84 0A",
		[]string{"01 03 00 00 00 01", "01 03 00 00 00 01"}, ""},
	{"bad crc then good frame", "01 03 00 00 00 01 84 0B 01 03 00 00 00 01 84 0A",
		[]string{"01 03 00 00 00 01"}, ""},
	{"truncated frame waits", "01 03 00 00 00", nil, ""},
	{"fc16 with byte count", "01 10 00 0A 00 02 04 41 AC 00 00" + " " + crcHex("01 10 00 0A 00 02 04 41 AC 00 00"),
		[]string{"01 10 00 0A 00 02 04 41 AC 00 00"}, ""},
	{"unknown fc ends at silence", "01 41 01 02" + " " + crcHex("01 41 01 02"), nil, "01 41 01 02"},
	{"garbage ends at silence", "FF FF FF 10 55 AA", nil, ""},
}

func crcHex(s string) string {
	b, _ := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	c := CRC16(b)
	return hex.EncodeToString([]byte{byte(c), byte(c >> 8)})
}

func TestRTUFramer(t *testing.T) {
	for _, tt := range rtuCases {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.in)
			// Same result whether bytes come at once or one by one.
			for _, chunk := range []int{len(in), 1} {
				var fr rtuFramer
				var got []string
				for i := 0; i < len(in); i += max(chunk, 1) {
					fr.push(in[i:min(i+chunk, len(in))])
					for f := fr.next(); f != nil; f = fr.next() {
						got = append(got, strings.ToUpper(hex.EncodeToString(f)))
					}
				}
				var want []string
				for _, f := range tt.frames {
					want = append(want, strings.ToUpper(strings.ReplaceAll(f, " ", "")))
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("chunk %d: frames %v, want %v", chunk, got, want)
				}
				flushed := strings.ToUpper(hex.EncodeToString(fr.flush()))
				if flushed != strings.ToUpper(strings.ReplaceAll(tt.flush, " ", "")) {
					t.Errorf("chunk %d: flush %q, want %q", chunk, flushed, tt.flush)
				}
				if fr.pending() {
					t.Errorf("chunk %d: bytes pending after flush", chunk)
				}
			}
		})
	}
}

func TestRTURequestLen(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"01", 0}, {"01 03", 8}, {"01 05", 8}, {"01 10 00 00 00 01", 0}, {"01 10 00 00 00 01 02", 11},
		{"01 0F 00 00 00 0A 02", 11}, {"01 17 00 00 00 01 00 00 00 01", 0}, {"01 17 00 00 00 01 00 00 00 01 02", 15},
		{"01 2B", 0}, {"01 2B 0E", 7}, {"01 2B 0D", -1}, {"01 07", 4}, {"01 63", -1},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := rtuRequestLen(unhex(t, tt.in)); got != tt.want {
				t.Errorf("rtuRequestLen(%s) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestASCIIFramer(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"read holding", ":010300000001FB\r\n", []string{"010300000001"}},
		{"lower case hex", ":010300000001fb\r\n", []string{"010300000001"}},
		{"bad lrc", ":010300000001FC\r\n", nil},
		{"garbage before", "xx\r\n:010300000001FB\r\n", []string{"010300000001"}},
		{"restart inside frame", ":0103:010300000001FB\r\n", []string{"010300000001"}},
		{"odd hex", ":0103000000001FB\r\n", nil},
		{"too short", ":01\r\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fr asciiFramer
			fr.push([]byte(tt.in))
			var got []string
			for f := fr.next(); f != nil; f = fr.next() {
				got = append(got, strings.ToUpper(hex.EncodeToString(f)))
			}
			if strings.Join(got, ",") != strings.ToUpper(strings.Join(tt.want, ",")) {
				t.Errorf("frames %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("encode", func(t *testing.T) {
		got := string((&asciiFramer{}).encode(1, unhex(t, "03 02 00 07"), false))
		if want := ":01030200" + "07F3\r\n"; got != want {
			t.Errorf("encode = %q, want %q", got, want)
		}
	})
}

// FuzzRTUFramer feeds arbitrary bytes: no panic, bounded buffer, and every
// frame returned carries a valid CRC.
func FuzzRTUFramer(f *testing.F) {
	for _, c := range rtuCases {
		f.Add(unhex(f, c.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var fr rtuFramer
		fr.push(in)
		for fr2 := fr.next(); fr2 != nil; fr2 = fr.next() {
			if len(fr2) < 2 {
				t.Fatalf("short frame % X", fr2)
			}
		}
		if len(fr.buf) > len(in) {
			t.Fatalf("buffer grew")
		}
		fr.flush()
		var af asciiFramer
		af.push(in)
		for fa := af.next(); fa != nil; fa = af.next() {
		}
	})
}

func TestRTUFramerRandomGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	good := unhex(t, "01 03 00 00 00 01 84 0A")
	for i := range 2000 {
		var fr rtuFramer
		junk := make([]byte, rng.IntN(300))
		for k := range junk {
			junk[k] = byte(rng.UintN(256))
		}
		fr.push(junk)
		for fr.next() != nil {
		}
		fr.flush() // the silence after garbage
		fr.push(good)
		if got := fr.next(); !bytes.Equal(got, good[:6]) {
			t.Fatalf("round %d: after garbage % X the good frame gave % X", i, junk, got)
		}
	}
}

func TestEncodeValue(t *testing.T) {
	tests := []struct {
		name  string
		typ   string
		order string
		scale float64
		v     float64
		want  []uint16
	}{
		{"int16 scaled", TypeInt16, "ABCD", 0.1, 21.5, []uint16{215}},
		{"int16 negative", TypeInt16, "ABCD", 0.1, -1.5, []uint16{0xFFF1}},
		{"int16 clamps", TypeInt16, "ABCD", 1, 1e9, []uint16{0x7FFF}},
		{"uint16 clamps low", TypeUint16, "ABCD", 1, -5, []uint16{0}},
		{"uint16 max", TypeUint16, "ABCD", 1, 65535, []uint16{0xFFFF}},
		{"int16 BADC", TypeInt16, "BADC", 1, 0x0102, []uint16{0x0201}},
		{"float32 ABCD", TypeFloat32, "ABCD", 1, 21.5, []uint16{0x41AC, 0x0000}},
		{"float32 CDAB", TypeFloat32, "CDAB", 1, 21.5, []uint16{0x0000, 0x41AC}},
		{"float32 BADC", TypeFloat32, "BADC", 1, 21.5, []uint16{0xAC41, 0x0000}},
		{"float32 DCBA", TypeFloat32, "DCBA", 1, 21.5, []uint16{0x0000, 0xAC41}},
		{"uint32 ABCD", TypeUint32, "ABCD", 1, 0x01020304, []uint16{0x0102, 0x0304}},
		{"uint32 CDAB", TypeUint32, "CDAB", 1, 0x01020304, []uint16{0x0304, 0x0102}},
		{"int32 scaled", TypeInt32, "ABCD", 0.01, -1, []uint16{0xFFFF, 0xFF9C}},
		{"uint64 DCBA", TypeUint64, "DCBA", 1, 0x0102030405060700, []uint16{0x0007, 0x0605, 0x0403, 0x0201}},
		{"int64 saturates", TypeInt64, "ABCD", 1, 1e30, []uint16{0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF}},
		{"float64 ABCD", TypeFloat64, "ABCD", 1, 1, []uint16{0x3FF0, 0, 0, 0}},
		{"bool in register", TypeBool, "ABCD", 1, 1, []uint16{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Point{Table: Holding, Type: tt.typ, ByteOrder: tt.order, Scale: tt.scale}
			got := encodeValue(p, tt.v, "")
			if !equalRegs(got, tt.want) {
				t.Fatalf("encode %v as %s %s scale %v = %04X, want %04X", tt.v, tt.typ, tt.order, tt.scale, got, tt.want)
			}
			back, _ := decodeValue(p, got)
			if tt.name != "int16 clamps" && tt.name != "uint16 clamps low" && tt.name != "int64 saturates" &&
				math.Abs(back-tt.v) > 1e-9*math.Max(1, math.Abs(tt.v)) {
				t.Errorf("decode back = %v, want %v", back, tt.v)
			}
		})
	}
	t.Run("string", func(t *testing.T) {
		p := &Point{Table: Input, Type: TypeString, ByteOrder: "ABCD", Scale: 1, Length: 3}
		got := encodeValue(p, 0, "ABC")
		if want := []uint16{0x4142, 0x4300, 0}; !equalRegs(got, want) {
			t.Fatalf("string regs %04X, want %04X", got, want)
		}
		if _, s := decodeValue(p, got); s != "ABC" {
			t.Errorf("decode %q", s)
		}
		p.ByteOrder = "BADC"
		if got := encodeValue(p, 0, "ABC"); got[0] != 0x4241 {
			t.Errorf("BADC string regs %04X", got)
		}
	})
}

func equalRegs(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
