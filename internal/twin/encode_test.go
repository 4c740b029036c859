package twin

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestAppendJSON(t *testing.T) {
	cases := []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"empty object", map[string]any{}},
		{"nil map", map[string]any(nil)},
		{"nil slice", []any(nil)},
		{"sorted keys", map[string]any{"b": json.Number("1"), "a": true, "$version": json.Number("3"), "A": false}},
		{"nested", map[string]any{"a": []any{nil, "x", map[string]any{"z": json.Number("-1.5e3")}}, "e": []any{}}},
		{"escapes", "q\" b\\ \b\f\n\r\t \x00\x1f <a&b> é \u2028\u2029 😀 \x7f"},
		{"invalid UTF-8", "a\xffb\xc3"},
		{"empty json.Number", json.Number("")},
		{"Go numbers", map[string]any{"i": 3, "f": 2.5, "u": uint8(7), "big": 1e21}},
		{"other Go types", map[string]any{"m": map[string]string{"x": "<y>"}, "s": []string{"a"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := json.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendJSON([]byte("prefix:"), c.v)
			if err != nil {
				t.Fatalf("AppendJSON(%#v): %v", c.v, err)
			}
			if !bytes.Equal(got, append([]byte("prefix:"), want...)) {
				t.Errorf("AppendJSON(%#v)\n got %s\nwant prefix:%s", c.v, got, want)
			}
		})
	}
}

func TestAppendJSONErrors(t *testing.T) {
	cases := []struct {
		name, wantErr string
		v             any
	}{
		{"bad json.Number", `twin: encode: invalid number literal "1x"`, map[string]any{"a": []any{json.Number("1x")}}},
		{"unsupported type", "twin: encode chan int: json: unsupported type: chan int", map[string]any{"c": make(chan int)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := AppendJSON([]byte("keep"), c.v)
			if err == nil || err.Error() != c.wantErr {
				t.Fatalf("AppendJSON error %v, want %s", err, c.wantErr)
			}
			if string(got) != "keep" {
				t.Errorf("AppendJSON returned %q on error, want the input buffer", got)
			}
		})
	}
}

// FuzzAppendJSON checks AppendJSON against json.Marshal.
func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte(`{"a":[1,"<x>",null,{"b":false}],"c":1.5e-7}`), "plain")
	f.Add([]byte(`{}`), "\xff\u2028\x01&")
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		doc, err := DecodeObject(b)
		if err != nil {
			doc = map[string]any{}
		}
		doc["s"] = s
		doc[s] = []any{s, nil}
		want, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendJSON(nil, doc)
		if err != nil {
			t.Fatalf("AppendJSON: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
		}
	})
}
