package console

import (
	"errors"
	"testing"
)

func TestPositionError(t *testing.T) {
	cases := []struct {
		name, q, msg      string
		before, at, after string
		hasPos            bool
	}{
		{"word at offset", "SELECT * FRM devices", "query: at 9: expected FROM, found \"FRM\"", "SELECT * ", "FRM", " devices", true},
		{"end of query", "SELECT *", "query: at 8: expected FROM", "SELECT *", " ", "", true},
		{"no position", "x", "query is required", "", "", "", false},
		{"offset past the end", "abc", "query: at 99: nonsense", "", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pe := positionError(tc.q, errors.New(tc.msg))
			if pe.HasPosition != tc.hasPos || pe.Before != tc.before || pe.At != tc.at || pe.After != tc.after {
				t.Errorf("positionError(%q, %q) = %+v", tc.q, tc.msg, pe)
			}
		})
	}
}

func TestLiteral(t *testing.T) {
	for in, want := range map[any]string{"a'b": `'a\'b'`, `c\d`: `'c\\d'`, 3.5: "3.5", true: "true"} {
		if got := literal(in); got != want {
			t.Errorf("literal(%v) = %s, want %s", in, got, want)
		}
	}
}

func TestGatewayLabel(t *testing.T) {
	for in, want := range map[string]string{
		"ms-azure-iot-edge://gw-1-638000000000000000": "gw-1",
		"ms-azure-iot-edge://line-a-gw-2-1":           "line-a-gw-2",
		"ms-azure-iot-edge://odd":                     "odd",
		"":                                            "(no gateway)",
	} {
		if got := gatewayLabel(in, nil); got != want {
			t.Errorf("gatewayLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/devices?q=x": "/ui/devices?q=x",
		"//evil.example":  "",
		"https://evil":    "",
		"/ui/\\evil":      "",
		"/metrics":        "",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
