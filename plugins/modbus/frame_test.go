package modbus

import (
	"errors"
	"reflect"
	"testing"
)

func TestCRC16(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x4B37 {
		t.Fatalf("check value = %04X, want 4B37", got)
	}
	// shared/notes/modbus.md: read 1 holding register at 0 from unit 1.
	frame := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x84, 0x0A}
	if err := checkCRC(frame); err != nil {
		t.Fatal(err)
	}
	frame[7] ^= 1
	if err := checkCRC(frame); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("corrupt CRC: %v", err)
	}
	if err := checkCRC([]byte{1, 2}); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("short frame: %v", err)
	}
}

func TestCheckASCII(t *testing.T) {
	// Unit 1, FC 3, 2 bytes 00 0A; LRC = -(01+03+02+00+0A) = F0.
	good := []byte(":010302000AF0\r\n")
	body, err := checkASCII(good)
	if err != nil || !reflect.DeepEqual(body, []byte{1, 3, 2, 0, 0x0A}) {
		t.Fatalf("checkASCII = % X, %v", body, err)
	}
	for name, f := range map[string]string{
		"bad LRC":  ":010302000AF1\r\n",
		"not hex":  ":0103020Z0AF0\r\n",
		"no colon": "010302000AF0\r\n\n",
		"no CRLF":  ":010302000AF0\n\n",
		"odd":      ":010302000AF\r\n",
		"short":    ":01\r\n",
	} {
		if _, err := checkASCII([]byte(f)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestResponseLength(t *testing.T) {
	read3 := []byte{0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0, 0}
	coils := []byte{0x11, 0x01, 0x00, 0x13, 0x00, 0x25, 0, 0}
	write6 := []byte{0x11, 0x06, 0x00, 0x01, 0x00, 0x03, 0, 0}
	write16 := []byte{0x11, 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0, 0x0A, 0x01, 0x02, 0, 0}
	mask := []byte{0x11, 0x16, 0, 4, 0, 0xF2, 0, 0x25, 0, 0}
	devid := []byte{0x11, 0x2B, 0x0E, 0x01, 0x00, 0, 0}
	cases := []struct {
		name string
		req  []byte
		got  []byte
		want int
		err  bool
	}{
		{"nothing yet", read3, nil, 2, false},
		{"FC3 needs byte count", read3, []byte{0x11, 0x03}, 3, false},
		{"FC3 3 registers", read3, []byte{0x11, 0x03, 0x06}, 11, false},
		{"FC1 37 coils", coils, []byte{0x11, 0x01, 0x05}, 10, false},
		{"exception", read3, []byte{0x11, 0x83}, 5, false},
		{"FC6 echo", write6, []byte{0x11, 0x06}, 8, false},
		{"FC16", write16, []byte{0x11, 0x10}, 8, false},
		{"FC22", mask, []byte{0x11, 0x16}, 10, false},
		{"wrong unit", read3, []byte{0x12, 0x03}, 0, true},
		{"wrong function", read3, []byte{0x11, 0x04}, 0, true},
		{"FC43 header", devid, []byte{0x11, 0x2B}, 8, false},
		{"FC43 first object header", devid, []byte{0x11, 0x2B, 0x0E, 1, 1, 0, 0, 2}, 10, false},
		{"FC43 second object header", devid, []byte{0x11, 0x2B, 0x0E, 1, 1, 0, 0, 2, 0, 3, 'a', 'b', 'c'}, 15, false},
		{"FC43 complete", devid, []byte{0x11, 0x2B, 0x0E, 1, 1, 0, 0, 2, 0, 3, 'a', 'b', 'c', 1, 1}, 18, false},
		{"FC43 wrong MEI", devid, []byte{0x11, 0x2B, 0x0D, 1, 1, 0, 0, 2}, 0, true},
		{"unknown function", []byte{0x11, 0x41, 0, 0}, []byte{0x11, 0x41}, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := responseLength(tc.req, tc.got, 2)
			if (err != nil) != tc.err || (!tc.err && got != tc.want) {
				t.Fatalf("responseLength(% X) = %d, %v; want %d (error %v)", tc.got, got, err, tc.want, tc.err)
			}
			if err != nil && !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			if err == nil && got <= len(tc.got) && got != len(tc.got) {
				t.Fatalf("length %d does not advance past %d bytes", got, len(tc.got))
			}
		})
	}
}
