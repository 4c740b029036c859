package serial

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// fields decodes one JSON object key by key and collects every problem
// with its key path, so one validation reports them all.
type fields struct {
	path string
	m    map[string]json.RawMessage
	seen map[string]bool
	errs *[]plugins.FieldError
	ok   bool // the value was an object
}

func newFields(raw json.RawMessage, path string, errs *[]plugins.FieldError) *fields {
	f := &fields{path: path, seen: map[string]bool{}, errs: errs}
	if isNull(raw) || json.Unmarshal(raw, &f.m) != nil || f.m == nil {
		f.add("", "want an object")
		return f
	}
	f.ok = true
	return f
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

func join(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	}
	return path + "." + key
}

// add reports a problem at key (relative to the object).
func (f *fields) add(key, format string, a ...any) {
	p := join(f.path, key)
	if p == "" {
		p = "(document)"
	}
	*f.errs = append(*f.errs, plugins.FieldError{Path: p, Message: fmt.Sprintf(format, a...)})
}

// raw returns key's value, or false when absent or null.
func (f *fields) raw(key string) (json.RawMessage, bool) {
	f.seen[key] = true
	v, ok := f.m[key]
	return v, ok && !isNull(v)
}

func (f *fields) has(key string) bool {
	v, ok := f.m[key]
	return ok && !isNull(v)
}

func (f *fields) skip(keys ...string) {
	for _, k := range keys {
		f.seen[k] = true
	}
}

func (f *fields) decode(key string, dst any, want string) bool {
	v, ok := f.raw(key)
	if !ok {
		return false
	}
	if err := json.Unmarshal(v, dst); err != nil {
		s := string(bytes.TrimSpace(v))
		if len(s) > 40 {
			s = s[:37] + "..."
		}
		f.add(key, "want %s, got %s", want, s)
		return false
	}
	return true
}

func (f *fields) str(key string, dst *string) bool { return f.decode(key, dst, "a string") }
func (f *fields) boolean(key string, dst *bool) bool {
	return f.decode(key, dst, "true or false")
}
func (f *fields) integer(key string, dst *int) bool { return f.decode(key, dst, "an integer") }

// duration decodes a Go duration string ("500ms").
func (f *fields) duration(key string, dst *time.Duration) bool {
	var s string
	if !f.decode(key, &s, `a duration such as "500ms"`) {
		return false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		f.add(key, "bad duration %q (want e.g. \"500ms\", \"5s\")", s)
		return false
	}
	*dst = d
	return true
}

// oneOf decodes a string that must be one of allowed.
func (f *fields) oneOf(key string, dst *string, allowed ...string) bool {
	var s string
	if !f.str(key, &s) {
		return false
	}
	if !slices.Contains(allowed, s) {
		f.add(key, "unknown value %q (want one of %s)", s, strings.Join(allowed, ", "))
		return false
	}
	*dst = s
	return true
}

// done reports the keys nobody asked for.
func (f *fields) done(known []string) {
	if !f.ok {
		return
	}
	var unknown []string
	for k := range f.m {
		if !f.seen[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		f.add(k, "unknown key %q (want one of %s)", k, strings.Join(known, ", "))
	}
}
