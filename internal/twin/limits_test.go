package twin

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// nested returns {"a1":{"a2":…{"a<n>":leaf}}}.
func nested(n int, leaf any) map[string]any {
	var v any = leaf
	for i := n; i >= 1; i-- {
		v = map[string]any{"a" + strconv.Itoa(i): v}
	}
	return v.(map[string]any)
}

func TestValidate(t *testing.T) {
	deep := func(n int) string { // path of nested(n)
		var b strings.Builder
		for i := 1; i <= n; i++ {
			b.WriteString(".a" + strconv.Itoa(i))
		}
		return b.String()
	}
	cases := []struct {
		name    string
		kind    Kind
		doc     map[string]any
		isPatch bool
		wantErr string // "" means valid
		limit   string
	}{
		{"empty", Desired, map[string]any{}, false, "", ""},
		{"nil map", Reported, nil, true, "", ""},
		{"depth 10 is fine", Desired, nested(10, json.Number("1")), false, "", ""},
		{"depth 11", Desired, nested(11, json.Number("1")), false,
			"twin: nesting depth 11 exceeds 10 at properties.desired" + deep(11), LimitDepth},
		{"empty object at depth 10 is fine", Tags, nested(10, map[string]any{}), false, "", ""},
		{"array element at depth 11", Reported, nested(10, []any{json.Number("1")}), false,
			"twin: nesting depth 11 exceeds 10 at properties.reported" + deep(10) + "[0]", LimitDepth},
		{"deleting at depth 11 is a no-op, not an error", Reported, nested(11, nil), true, "", ""},
		{"depth 11 in a patch", Reported, nested(11, true), true,
			"twin: nesting depth 11 exceeds 10 at properties.reported" + deep(11), LimitDepth},

		{"empty key", Tags, map[string]any{"x": map[string]any{"": json.Number("1")}}, false,
			"twin: key is empty at tags.x", LimitKey},
		{"key with dot", Tags, map[string]any{"x": map[string]any{"a.b": json.Number("1")}}, false,
			`twin: key "a.b" contains '.' at tags.x`, LimitKey},
		{"key with dollar below root", Desired, map[string]any{"x": map[string]any{"a$": json.Number("1")}}, true,
			`twin: key "a$" contains '$' at properties.desired.x`, LimitKey},
		{"key with space", Reported, map[string]any{"a b": true}, true,
			`twin: key "a b" contains a space at properties.reported`, LimitKey},
		{"key with C0 control", Reported, map[string]any{"a\x01": true}, false,
			`twin: key "a\x01" contains control character U+0001 at properties.reported`, LimitKey},
		{"key with DEL", Reported, map[string]any{"a\x7f": true}, false,
			`twin: key "a\x7f" contains control character U+007F at properties.reported`, LimitKey},
		{"key with C1 control", Reported, map[string]any{"a\u0085": true}, false,
			`twin: key "a\u0085" contains control character U+0085 at properties.reported`, LimitKey},
		{"key not UTF-8", Tags, map[string]any{"a\xff": true}, false,
			`twin: key "a\xff" is not valid UTF-8 at tags`, LimitKey},
		{"key of 1024 bytes is fine", Tags, map[string]any{strings.Repeat("k", 1024): true}, false, "", ""},
		{"key of 1025 bytes", Tags, map[string]any{strings.Repeat("k", 1025): true}, false,
			`twin: key "` + strings.Repeat("k", 32) + `"… is 1025 bytes, over 1024 at tags`, LimitKey},
		{"$version at root of patch", Desired, map[string]any{"$version": json.Number("4")}, true,
			`twin: key "$version" is read-only and may not be set at properties.desired`, LimitKey},
		{"$metadata at root of document", Desired, map[string]any{"$metadata": map[string]any{}}, false,
			`twin: key "$metadata" is read-only and may not be set at properties.desired`, LimitKey},
		{"$ key at root of reported patch", Reported, map[string]any{"$other": nil}, true,
			`twin: key "$other" is read-only and may not be set at properties.reported`, LimitKey},
		{"unicode key is fine", Reported, map[string]any{"température": json.Number("21.5")}, false, "", ""},

		{"string of 4096 bytes is fine", Reported, map[string]any{"s": strings.Repeat("x", 4096)}, false, "", ""},
		{"string of 4097 bytes", Reported, map[string]any{"s": strings.Repeat("x", 4097)}, false,
			"twin: string of 4097 bytes exceeds 4096 at properties.reported.s", LimitString},
		{"multi-byte string over 4096 bytes", Reported, map[string]any{"s": strings.Repeat("é", 2049)}, false,
			"twin: string of 4098 bytes exceeds 4096 at properties.reported.s", LimitString},
		{"string inside array", Tags, map[string]any{"a": []any{"ok", strings.Repeat("x", 4097)}}, false,
			"twin: string of 4097 bytes exceeds 4096 at tags.a[1]", LimitString},
		{"string not UTF-8", Tags, map[string]any{"s": "\xff"}, false,
			"twin: string is not valid UTF-8 at tags.s", LimitType},

		{"max integer is fine", Desired, map[string]any{"i": json.Number("4503599627370495"), "j": json.Number("-4503599627370496")}, false, "", ""},
		{"integer 2^52", Desired, map[string]any{"i": json.Number("4503599627370496")}, false,
			"twin: integer 4503599627370496 outside [-4503599627370496, 4503599627370495] at properties.desired.i", LimitNumber},
		{"integer below -2^52", Desired, map[string]any{"i": json.Number("-4503599627370497")}, false,
			"twin: integer -4503599627370497 outside [-4503599627370496, 4503599627370495] at properties.desired.i", LimitNumber},
		{"integer beyond int64", Desired, map[string]any{"i": json.Number("99999999999999999999")}, false,
			"twin: integer 99999999999999999999 outside [-4503599627370496, 4503599627370495] at properties.desired.i", LimitNumber},
		{"big float is fine", Desired, map[string]any{"f": json.Number("1e300"), "g": json.Number("4503599627370496.5"), "h": json.Number("-0.0")}, false, "", ""},
		{"float beyond float64", Desired, map[string]any{"f": json.Number("1e400")}, false,
			"twin: number 1e400 is out of range at properties.desired.f", LimitNumber},
		{"Go int out of range", Reported, map[string]any{"i": int64(1 << 53)}, false,
			"twin: integer 9007199254740992 outside [-4503599627370496, 4503599627370495] at properties.reported.i", LimitNumber},
		{"Go uint out of range", Reported, map[string]any{"i": uint64(1 << 53)}, false,
			"twin: integer 9007199254740992 outside [-4503599627370496, 4503599627370495] at properties.reported.i", LimitNumber},
		{"Go numbers in range", Reported, map[string]any{"i": 3, "u": uint8(4), "f": 2.5, "g": float32(1.5)}, false, "", ""},
		{"NaN", Reported, map[string]any{"f": math.NaN()}, false, "twin: number NaN is not finite at properties.reported.f", LimitNumber},
		{"bad json.Number", Reported, map[string]any{"n": json.Number("0x10")}, false,
			`twin: "0x10" is not a JSON number at properties.reported.n`, LimitType},
		{"unsupported Go type", Tags, map[string]any{"m": map[string]string{"a": "b"}}, false,
			"twin: unsupported value type map[string]string at tags.m", LimitType},

		{"value of 4096 is fine", Reported, map[string]any{"a": map[string]any{"x": strings.Repeat("x", 2000), "y": strings.Repeat("y", 2094)}}, false, "", ""},
		{"value over 4096", Reported, map[string]any{"a": map[string]any{"x": strings.Repeat("x", 3000), "y": strings.Repeat("y", 3000)}}, false,
			"twin: property value size 6002 exceeds 4096 at properties.reported.a", LimitValueSize},
		{"patch nulls do not count", Reported, map[string]any{"a": map[string]any{"x": strings.Repeat("x", 4000), "y": nil, "z": nil}}, true, "", ""},
		{"document nulls count 4", Reported, map[string]any{"a": map[string]any{"x": strings.Repeat("x", 4091), "y": nil}}, false,
			"twin: property value size 4097 exceeds 4096 at properties.reported.a", LimitValueSize},
		{"tags over 8 KB", Tags, bigDoc(3, 3000), false, "twin: tags exceeds 8192 bytes (is 9006)", LimitSectionSize},
		{"desired over 32 KB", Desired, bigDoc(9, 3900), true, "twin: desired exceeds 32768 bytes (is 35118)", LimitSectionSize},
		{"reported at 32 KB is fine", Reported, bigDoc(8, 4094), false, "", ""},
		{"reported over 32 KB", Reported, bigDoc(9, 3900), false, "twin: reported exceeds 32768 bytes (is 35118)", LimitSectionSize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate(c.kind, c.doc, c.isPatch)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate(%v, isPatch=%v): %v", c.kind, c.isPatch, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%v, isPatch=%v) = nil, want %q", c.kind, c.isPatch, c.wantErr)
			}
			if err.Error() != c.wantErr {
				t.Errorf("Validate(%v, isPatch=%v) error\n got %q\nwant %q", c.kind, c.isPatch, err, c.wantErr)
			}
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != c.limit {
				t.Errorf("Validate error %#v, want *LimitError with Limit %q", err, c.limit)
			}
		})
	}
}

// bigDoc returns n keys "k0".."k<n-1>" holding strings of size chars:
// n*(2+size) bytes.
func bigDoc(n, size int) map[string]any {
	m := make(map[string]any, n)
	for i := 0; i < n; i++ {
		m["k"+strconv.Itoa(i)] = strings.Repeat("v", size)
	}
	return m
}

func TestValidateReportsFirstErrorInKeyOrder(t *testing.T) {
	doc := map[string]any{"z.z": 1, "b": map[string]any{"x y": 1}, "a": map[string]any{"$": 1}, "c.c": 1}
	for range 20 {
		err := Validate(Tags, doc, false)
		if want := `twin: key "$" contains '$' at tags.a`; err == nil || err.Error() != want {
			t.Fatalf("Validate = %v, want %s", err, want)
		}
	}
}

func TestValidateUnknownKind(t *testing.T) {
	if err := Validate(Kind(7), map[string]any{}, false); err == nil || err.Error() != "twin: unknown section kind 7" {
		t.Fatalf("Validate(Kind(7)) = %v", err)
	}
	if _, err := NewSection(Desired, t0).Patch(Kind(-1), map[string]any{}, t1); err == nil {
		t.Fatal("Patch with Kind(-1) succeeded")
	}
}

func TestSize(t *testing.T) {
	cases := []struct {
		name string
		v    any
		want int
	}{
		{"ascii string", "abc", 3},
		{"characters not bytes", "héllo✓", 6},
		{"control characters excluded", "a\x01\tb\u0085", 2},
		{"empty string", "", 0},
		{"true", true, 4},
		{"null", nil, 4},
		{"json number", json.Number("12345678901"), 8},
		{"float", 1.5, 8},
		{"object: key bytes plus values", map[string]any{"ab": json.Number("1"), "é": "xy"}, 2 + 8 + 2 + 2},
		{"empty object", map[string]any{}, 0},
		{"array: sum of elements", []any{json.Number("1"), "x", nil}, 13},
		{"unsupported", make(chan int), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Size(c.v); got != c.want {
				t.Errorf("Size(%#v) = %d, want %d", c.v, got, c.want)
			}
		})
	}
}
