package iothubtopic

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error wraps
// ErrUnsupportedTopic, and that an accepted topic formats to one that parses
// to the same Request. Seeds: the shared catalogue plus testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, tc := range catalogue {
		f.Add(tc.device, tc.raw)
	}
	f.Fuzz(func(t *testing.T, device, topic string) {
		r, err := Parse(device, topic)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedTopic) {
				t.Fatalf("Parse(%q, %q) error %v does not wrap ErrUnsupportedTopic", device, topic, err)
			}
			return
		}
		again := r.Topic(device)
		back, err := Parse(device, again)
		if err != nil {
			t.Fatalf("Parse(%q, %q) ok, but its formatted form %q fails: %v", device, topic, again, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v", topic, r, again, back)
		}
	})
}
