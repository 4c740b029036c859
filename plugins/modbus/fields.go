package modbus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// object decodes one JSON object key by key, collecting FieldErrors with the
// key path, so one pass reports every problem (not only the first, as
// json.Decoder.DisallowUnknownFields would).
type object struct {
	path  string
	m     map[string]json.RawMessage
	used  map[string]bool
	errs  *[]plugins.FieldError
	valid bool
}

// openObject starts decoding raw at path. A missing or non-object value is
// reported once; the returned object then yields nothing.
func openObject(raw json.RawMessage, path string, errs *[]plugins.FieldError) *object {
	o := &object{path: path, used: map[string]bool{}, errs: errs}
	if isNull(raw) {
		o.fail(path, "want an object")
		return o
	}
	if err := json.Unmarshal(raw, &o.m); err != nil {
		o.fail(path, "want an object")
		return o
	}
	o.valid = true
	return o
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (o *object) fail(path, format string, args ...any) {
	if path == "" {
		path = "(document)"
	}
	*o.errs = append(*o.errs, plugins.FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// key returns the raw value of key, or false when absent or null.
func (o *object) key(k string) (json.RawMessage, bool) {
	o.used[k] = true
	v, ok := o.m[k]
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

// has reports whether key is present and not null.
func (o *object) has(k string) bool {
	v, ok := o.m[k]
	return ok && !isNull(v)
}

// ignore marks keys as known without decoding them.
func (o *object) ignore(keys ...string) {
	for _, k := range keys {
		o.used[k] = true
	}
}

func (o *object) decode(k string, dst any, want string) bool {
	v, ok := o.key(k)
	if !ok {
		return false
	}
	if err := json.Unmarshal(v, dst); err != nil {
		o.fail(joinPath(o.path, k), "want %s, got %s", want, short(v))
		return false
	}
	return true
}

func short(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func (o *object) str(k string, dst *string) bool   { return o.decode(k, dst, "a string") }
func (o *object) boolean(k string, dst *bool) bool { return o.decode(k, dst, "true or false") }
func (o *object) integer(k string, dst *int) bool  { return o.decode(k, dst, "an integer") }
func (o *object) number(k string, dst *float64) bool {
	return o.decode(k, dst, "a number")
}

// duration decodes a Go duration string ("500ms", "5s").
func (o *object) duration(k string, dst *time.Duration) bool {
	var s string
	if !o.decode(k, &s, `a duration string such as "500ms"`) {
		return false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		o.fail(joinPath(o.path, k), "bad duration %q (want e.g. \"500ms\", \"5s\")", s)
		return false
	}
	*dst = d
	return true
}

// list decodes an array value into its raw elements.
func (o *object) list(k string) ([]json.RawMessage, bool) {
	var items []json.RawMessage
	if !o.decode(k, &items, "a list") {
		return nil, false
	}
	return items, true
}

// done reports every key that no decoder asked for.
func (o *object) done(known []string) {
	if !o.valid {
		return
	}
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		o.fail(joinPath(o.path, k), "unknown key %q (want one of %s)", k, strings.Join(known, ", "))
	}
}

func oneOf[T ~string](vals []T) string {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
