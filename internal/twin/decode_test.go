package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeObject(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want map[string]any
	}{
		{"empty object", `{}`, map[string]any{}},
		{"whitespace around", " \t\r\n{ \"a\" : 1 }\n ", map[string]any{"a": json.Number("1")}},
		{"number text kept", `{"a":1.50,"b":-0,"c":1E+2,"d":4503599627370496}`,
			map[string]any{"a": json.Number("1.50"), "b": json.Number("-0"), "c": json.Number("1E+2"), "d": json.Number("4503599627370496")}},
		{"literals", `{"t":true,"f":false,"n":null}`, map[string]any{"t": true, "f": false, "n": nil}},
		{"nested", `{"a":{"b":[1,{"c":[]},null]}}`,
			map[string]any{"a": map[string]any{"b": []any{json.Number("1"), map[string]any{"c": []any{}}, nil}}}},
		{"escapes", `{"s":"q\" b\\ s\/ \b\f\n\r\t \u00e9 \ud83d\ude00"}`, map[string]any{"s": "q\" b\\ s/ \b\f\n\r\t é 😀"}},
		{"lone surrogate becomes U+FFFD", `{"s":"\ud800x"}`, map[string]any{"s": "\uFFFDx"}},
		{"raw UTF-8", `{"ключ":"значение ✓"}`, map[string]any{"ключ": "значение ✓"}},
		{"same key in different objects", `{"a":{"x":1},"b":{"x":2}}`,
			map[string]any{"a": map[string]any{"x": json.Number("1")}, "b": map[string]any{"x": json.Number("2")}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeObject([]byte(c.in))
			if err != nil {
				t.Fatalf("DecodeObject(%q): %v", c.in, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("DecodeObject(%q) = %#v, want %#v", c.in, got, c.want)
			}
		})
	}
}

func TestDecodeObjectGarbage(t *testing.T) {
	cases := []struct {
		name, in, wantErr string
	}{
		{"empty", ``, "empty input, want a JSON object at offset 0"},
		{"only space", "  \n", "empty input, want a JSON object at offset 3"},
		{"not JSON", `hello`, `top-level value is not JSON (starts with 'h'), want a JSON object at offset 0`},
		{"array", `[1,2]`, "top-level value is an array, want a JSON object at offset 0"},
		{"number", ` 42`, "top-level value is a number, want a JSON object at offset 1"},
		{"string", `"x"`, "top-level value is a string, want a JSON object at offset 0"},
		{"null", `null`, "top-level value is null, want a JSON object at offset 0"},
		{"boolean", `true`, "top-level value is a boolean, want a JSON object at offset 0"},
		{"trailing junk", `{"a":1} x`, "trailing data after the object at offset 8"},
		{"two objects", `{}{}`, "trailing data after the object at offset 2"},
		{"duplicate key", `{"a":1,"a":2}`, `duplicate key "a" at offset 7`},
		{"duplicate nested key", `{"a":{"b":1,"b":null}}`, `duplicate key "b" at offset 12`},
		{"duplicate after escape", `{"a":1,"\u0061":2}`, `duplicate key "a" at offset 7`},
		{"invalid UTF-8 in value", "{\"a\":\"\xff\"}", "invalid UTF-8 in string at offset 6"},
		{"invalid UTF-8 in key", "{\"\xc3\":1}", "invalid UTF-8 in string at offset 2"},
		{"truncated after colon", `{"a":`, "unexpected end of input, want a value at offset 5"},
		{"truncated object", `{"a":1`, "unexpected end of input in object at offset 6"},
		{"truncated array", `{"a":[1`, "unexpected end of input in array at offset 7"},
		{"truncated string", `{"a":"xy`, "unexpected end of input in string at offset 8"},
		{"missing colon", `{"a" 1}`, `missing ':' after key "a" at offset 5`},
		{"single quotes", `{'a':1}`, `invalid character '\'', want a string key at offset 1`},
		{"unquoted key", `{a:1}`, `invalid character 'a', want a string key at offset 1`},
		{"trailing comma", `{"a":1,}`, `invalid character '}', want a string key at offset 7`},
		{"leading zero", `{"a":01}`, `invalid character '1', want ',' or '}' at offset 6`},
		{"bare dot", `{"a":1.}`, "invalid number, want a digit after '.' at offset 7"},
		{"bare minus", `{"a":-}`, "invalid number, want a digit at offset 6"},
		{"bad exponent", `{"a":1e}`, "invalid number, want a digit in the exponent at offset 7"},
		{"bad literal", `{"a":tru}`, "invalid literal, want true at offset 5"},
		{"bad escape", `{"a":"\x"}`, `invalid escape "\\x" in string at offset 6`},
		{"bad unicode escape", `{"a":"\u12G4"}`, `invalid \u escape at offset 8`},
		{"raw control char", "{\"a\":\"x\ny\"}", `control character '\n' in string at offset 7`},
		{"NUL outside", "{\x00}", `invalid character '\x00', want a string key at offset 1`},
		{"too deep", `{"a":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, "nesting deeper than 512 levels at offset 516"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := DecodeObject([]byte(c.in))
			if err == nil {
				t.Fatalf("DecodeObject(%q) = %v, want error %q", c.in, m, c.wantErr)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeObject(%q) error %v does not wrap ErrMalformed", c.in, err)
			}
			if want := "twin: malformed JSON object: " + c.wantErr; err.Error() != want {
				t.Errorf("DecodeObject(%q) error\n got %q\nwant %q", c.in, err, want)
			}
		})
	}
}

// FuzzDecodeObject compares DecodeObject with encoding/json. It must accept
// only what encoding/json accepts, produce the same value, and reject
// additionally only duplicates, invalid UTF-8, non-objects and deep nesting.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":{"b":[1,"x",null,true]}}`, `{"a":1,"a":2}`, "{\"a\":\"\xff\"}",
		`{"s":"\ud83d\ude00 \ud800"}`, `null`, `[1]`, `{"a":1e5,"b":-0.5E-3}`, ` {"a" : "b"} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeObject(b)
		var ref map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		refErr := dec.Decode(&ref)
		if refErr == nil {
			if _, e := dec.Token(); !errors.Is(e, io.EOF) {
				refErr = errors.New("trailing data")
			}
		}
		if err == nil {
			if refErr != nil {
				t.Fatalf("DecodeObject(%q) accepted what encoding/json rejects: %v", b, refErr)
			}
			if !reflect.DeepEqual(got, ref) {
				t.Fatalf("DecodeObject(%q) = %#v, encoding/json = %#v", b, got, ref)
			}
			return
		}
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeObject(%q) error %v does not wrap ErrMalformed", b, err)
		}
		if refErr == nil && ref != nil && utf8.Valid(b) && !strings.Contains(err.Error(), "duplicate key") &&
			!strings.Contains(err.Error(), "nesting deeper") {
			t.Fatalf("DecodeObject(%q) rejected valid input: %v", b, err)
		}
	})
}
