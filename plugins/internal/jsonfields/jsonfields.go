// Package jsonfields decodes a plugin's bus, profile and option objects key
// by key, collecting every problem as a plugins.FieldError with its key
// path, so one validation reports them all (json.Decoder's
// DisallowUnknownFields stops at the first). It is shared by the plugins
// in this module so that their configuration errors read alike.
package jsonfields

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Object is one JSON object being decoded. Each getter marks its key as
// known; Done then reports the keys no getter asked for.
type Object struct {
	path string
	m    map[string]json.RawMessage
	seen map[string]bool
	errs *[]plugins.FieldError
	ok   bool // the value was an object
}

// Open starts decoding raw, found at path ("" for the document), adding
// problems to errs. A missing or non-object value is reported once; the
// Object then yields nothing.
func Open(raw json.RawMessage, path string, errs *[]plugins.FieldError) *Object {
	o := &Object{path: path, seen: map[string]bool{}, errs: errs}
	if IsNull(raw) || json.Unmarshal(raw, &o.m) != nil || o.m == nil {
		o.Add("", "want an object")
		return o
	}
	o.ok = true
	return o
}

// IsNull reports whether raw is empty or JSON null (a key given no value).
func IsNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// Join returns the path of key inside the object at path.
func Join(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	}
	return path + "." + key
}

// OK reports whether the value was an object.
func (o *Object) OK() bool { return o.ok }

// Keys returns the object's keys, sorted.
func (o *Object) Keys() []string {
	keys := make([]string, 0, len(o.m))
	for k := range o.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Add reports a problem at key, relative to the object ("" for the object
// itself).
func (o *Object) Add(key, format string, a ...any) {
	o.AddAt(Join(o.path, key), format, a...)
}

// AddAt reports a problem at a full key path.
func (o *Object) AddAt(path, format string, a ...any) {
	if path == "" {
		path = "(document)"
	}
	*o.errs = append(*o.errs, plugins.FieldError{Path: path, Message: fmt.Sprintf(format, a...)})
}

// Raw returns key's value, or false when it is absent or null.
func (o *Object) Raw(key string) (json.RawMessage, bool) {
	o.seen[key] = true
	v, ok := o.m[key]
	return v, ok && !IsNull(v)
}

// Has reports whether key is present and not null, without marking it.
func (o *Object) Has(key string) bool {
	v, ok := o.m[key]
	return ok && !IsNull(v)
}

// Skip marks keys as known without decoding them.
func (o *Object) Skip(keys ...string) {
	for _, k := range keys {
		o.seen[k] = true
	}
}

// Decode unmarshals key into dst; want names the expected value in the
// problem reported when it does not fit. False when absent, null or bad.
func (o *Object) Decode(key string, dst any, want string) bool {
	v, ok := o.Raw(key)
	if !ok {
		return false
	}
	if err := json.Unmarshal(v, dst); err != nil {
		o.Add(key, "want %s, got %s", want, Short(v))
		return false
	}
	return true
}

// Short is v for a message, cut to 40 characters.
func Short(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// Str decodes a string.
func (o *Object) Str(key string, dst *string) bool { return o.Decode(key, dst, "a string") }

// Bool decodes true or false.
func (o *Object) Bool(key string, dst *bool) bool { return o.Decode(key, dst, "true or false") }

// Int decodes an integer.
func (o *Object) Int(key string, dst *int) bool { return o.Decode(key, dst, "an integer") }

// Number decodes a number.
func (o *Object) Number(key string, dst *float64) bool { return o.Decode(key, dst, "a number") }

// List decodes an array into its raw elements.
func (o *Object) List(key string) ([]json.RawMessage, bool) {
	var items []json.RawMessage
	if !o.Decode(key, &items, "a list") {
		return nil, false
	}
	return items, true
}

// Duration decodes a Go duration string ("500ms"), not negative.
func (o *Object) Duration(key string, dst *time.Duration) bool {
	var s string
	if !o.Decode(key, &s, `a duration such as "500ms"`) {
		return false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		o.Add(key, "bad duration %q (want e.g. \"500ms\", \"5s\")", s)
		return false
	}
	*dst = d
	return true
}

// OneOf decodes a string that must be one of allowed.
func (o *Object) OneOf(key string, dst *string, allowed ...string) bool {
	var s string
	if !o.Str(key, &s) {
		return false
	}
	if !slices.Contains(allowed, s) {
		o.Add(key, "unknown value %q (want one of %s)", s, strings.Join(allowed, ", "))
		return false
	}
	*dst = s
	return true
}

// Done reports, sorted, the keys no getter asked for; known lists the
// keys the object takes, for the message.
func (o *Object) Done(known []string) {
	if !o.ok {
		return
	}
	var unknown []string
	for k := range o.m {
		if !o.seen[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		o.Add(k, "unknown key %q (want one of %s)", k, strings.Join(known, ", "))
	}
}

// FieldsError is errs as one CodeInvalid error about what (e.g. "bus
// rs485-1"): the error a plugin returns when a configuration it is handed
// to use does not validate.
func FieldsError(what string, errs []plugins.FieldError) error {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, e.Path+": "+e.Message)
	}
	return plugins.Errorf(plugins.CodeInvalid, "%s: %s", what, strings.Join(parts, "; "))
}
