package mcuboot

import (
	"bytes"
	"errors"
	"testing"
)

func TestBuildParse(t *testing.T) {
	v := Version{Major: 1, Minor: 4, Revision: 2, Build: 7}
	body := bytes.Repeat([]byte("firmware"), 1000)
	img, err := Parse(Build(v, body))
	if err != nil {
		t.Fatal(err)
	}
	if img.Version != v || img.BodySize != len(body) || len(img.Hash) != 32 {
		t.Fatalf("parsed %+v", img)
	}
	if v.String() != "1.4.2.7" || (Version{Major: 2}).String() != "2.0.0" {
		t.Fatalf("version strings %q", v.String())
	}
}

func TestParseRejects(t *testing.T) {
	good := Build(Version{Major: 1}, []byte("body of the image"))
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":          nil,
		"short":          good[:10],
		"bad magic":      mut(func(b []byte) []byte { b[0] ^= 0xff; return b }),
		"body flipped":   mut(func(b []byte) []byte { b[HeaderSize+3] ^= 1; return b }),
		"truncated":      good[:len(good)-5],
		"huge body size": mut(func(b []byte) []byte { b[15] = 0x7f; return b }),
		"no tlv magic":   mut(func(b []byte) []byte { b[HeaderSize+17] = 0; return b }),
		"tiny hdr size":  mut(func(b []byte) []byte { b[8] = 4; return b }),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(b); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestVersions(t *testing.T) {
	for _, c := range []struct {
		s    string
		want Version
		err  bool
	}{
		{"1.2.3", Version{1, 2, 3, 0}, false},
		{"1.2.3+9", Version{1, 2, 3, 9}, false},
		{"1.2.3.9", Version{1, 2, 3, 9}, false},
		{"256.0.0", Version{}, true},
		{"a.b", Version{}, true},
		{"", Version{}, true},
	} {
		got, err := ParseVersion(c.s)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseVersion(%q) = %v, %v", c.s, got, err)
		}
	}
	if (Version{1, 2, 3, 0}).Compare(Version{1, 10, 0, 0}) != -1 {
		t.Fatal("compare")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Build(Version{Major: 1}, []byte("x")))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = Parse(b) })
}
