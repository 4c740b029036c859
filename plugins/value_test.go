package plugins

import "testing"

func TestValueText(t *testing.T) {
	for _, tc := range []struct {
		v    Value
		want string
	}{
		{Value{}, "no value"},
		{Value{Kind: KindBool, Bool: true}, "true"},
		{Value{Kind: KindInt, Int: -3}, "-3"},
		{Value{Kind: KindUint, Uint: 7}, "7"},
		{Value{Kind: KindFloat, Float: 1.5}, "1.5"},
		{Value{Kind: KindString, String: `a"b`}, `"a\"b"`},
	} {
		if got := tc.v.Text(); got != tc.want {
			t.Errorf("%+v.Text() = %s, want %s", tc.v, got, tc.want)
		}
	}
}
