package iothubtopic

import (
	"errors"
	"reflect"
	"testing"
)

func TestProperties(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    Properties
		encoded string // "" means raw is canonical
		wantErr bool
	}{
		{name: "empty", raw: "", want: nil},
		{name: "only question mark", raw: "?", want: nil, encoded: ""},
		{name: "system and app", raw: "%24.mid=1&k=v", want: Properties{{Name: "$.mid", Value: "1"}, {Name: "k", Value: "v"}}},
		{name: "null and empty", raw: "a&b=", want: Properties{{Name: "a", NoValue: true}, {Name: "b"}}},
		{name: "lower hex", raw: "a=%2f", want: Properties{{Name: "a", Value: "/"}}, encoded: "a=%2F"},
		{name: "equals in value", raw: "a=b=c", want: Properties{{Name: "a", Value: "b=c"}}, encoded: "a=b%3Dc"},
		{name: "unreserved kept", raw: "a=-_.!~*'()", want: Properties{{Name: "a", Value: "-_.!~*'()"}}},
		{name: "space and binary", raw: "a=%20%00%FF", want: Properties{{Name: "a", Value: " \x00\xff"}}},
		{name: "bad escape", raw: "a=%g0", wantErr: true},
		{name: "percent at end", raw: "a=%", wantErr: true},
		{name: "bad escape in name", raw: "%x=1", wantErr: true},
		{name: "empty name", raw: "=1", wantErr: true},
		{name: "encoded empty name", raw: "%=1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeProperties(tc.raw)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformedProperties) {
					t.Fatalf("DecodeProperties(%q) = %v, %v; want ErrMalformedProperties", tc.raw, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeProperties(%q): %v", tc.raw, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("DecodeProperties(%q) = %+v, want %+v", tc.raw, got, tc.want)
			}
			want := tc.raw
			if tc.encoded != "" || tc.raw == "?" {
				want = tc.encoded
			}
			if enc := tc.want.Encode(); enc != want {
				t.Fatalf("Encode(%+v) = %q, want %q", tc.want, enc, want)
			}
		})
	}
}

func TestPropertiesAccessors(t *testing.T) {
	ps := Properties{{Name: "$.mid", Value: "m"}, {Name: "k", Value: "1"}, {Name: "k", Value: "2"}, {Name: "$x", Value: "app"}}
	if v, ok := ps.Get("k"); !ok || v != "2" {
		t.Fatalf("Get(k) = %q, %v; want last value 2", v, ok)
	}
	if _, ok := ps.Get("missing"); ok {
		t.Fatal("Get(missing) found something")
	}
	if got, want := ps.System(), map[string]string{"$.mid": "m"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("System() = %v, want %v", got, want)
	}
	if got, want := ps.App(), map[string]string{"k": "2", "$x": "app"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("App() = %v, want %v", got, want)
	}
	if Properties(nil).System() != nil || Properties(nil).App() != nil {
		t.Fatal("empty bag gave non-nil maps")
	}
}
