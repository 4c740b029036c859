package modbus

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseDeviceID(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want deviceIDPage
		err  bool
	}{
		{"basic, three objects",
			[]byte{0x0E, 0x01, 0x81, 0x00, 0x00, 0x03, 0x00, 0x04, 'A', 'c', 'm', 'e', 0x01, 0x02, 'P', '1', 0x02, 0x03, '1', '.', '0'},
			deviceIDPage{Code: 1, Conformity: 0x81, Objects: map[byte]string{0: "Acme", 1: "P1", 2: "1.0"}}, false},
		{"more follows",
			[]byte{0x0E, 0x02, 0x82, 0xFF, 0x05, 0x01, 0x04, 0x01, 'X'},
			deviceIDPage{Code: 2, Conformity: 0x82, MoreFollows: true, NextID: 5, Objects: map[byte]string{4: "X"}}, false},
		{"empty object value", []byte{0x0E, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00},
			deviceIDPage{Code: 1, Conformity: 1, Objects: map[byte]string{0: ""}}, false},
		{"too short", []byte{0x0E, 0x01}, deviceIDPage{}, true},
		{"wrong MEI", []byte{0x0D, 0x01, 0x01, 0x00, 0x00, 0x00}, deviceIDPage{}, true},
		{"bad more-follows", []byte{0x0E, 0x01, 0x01, 0x07, 0x00, 0x00}, deviceIDPage{}, true},
		{"object cut short", []byte{0x0E, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x05, 'a'}, deviceIDPage{}, true},
		{"count larger than objects", []byte{0x0E, 0x01, 0x01, 0x00, 0x00, 0x02, 0x00, 0x01, 'a'}, deviceIDPage{}, true},
		{"trailing bytes", []byte{0x0E, 0x01, 0x01, 0x00, 0x00, 0x00, 0x99}, deviceIDPage{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDeviceID(tc.data)
			if tc.err {
				if !errors.Is(err, ErrBadFrame) {
					t.Fatalf("parseDeviceID(% X): err %v, want ErrBadFrame", tc.data, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseDeviceID(% X) = %+v, %v; want %+v", tc.data, got, err, tc.want)
			}
		})
	}
}

func FuzzParseDeviceID(f *testing.F) {
	f.Add([]byte{0x0E, 0x01, 0x81, 0x00, 0x00, 0x01, 0x00, 0x01, 'A'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseDeviceID(b)
		_, _ = responseLength([]byte{1, 0x2B, 0x0E, 1, 0}, append([]byte{1, 0x2B}, b...), 2)
	})
}
