package twin

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits from the IoT Hub device-twin guide ("Tags and properties format",
// "Twin size", "Depth"); see also the quotas page. Sizes are in the units of
// the size rule documented on Size.
const (
	MaxTagsSize     = 8 * 1024  // tags
	MaxDesiredSize  = 32 * 1024 // properties.desired
	MaxReportedSize = 32 * 1024 // properties.reported
	MaxValueSize    = 4 * 1024  // one top-level property's value
	MaxDepth        = 10        // levels below the section root
	MaxKeyBytes     = 1024      // UTF-8 bytes in a key
	MaxStringBytes  = 4 * 1024  // UTF-8 bytes in a string value
	MaxSafeInteger  = 1<<52 - 1 // 4503599627370495
	MinSafeInteger  = -(1 << 52)
)

// Limit names used in LimitError.Limit.
const (
	LimitSectionSize = "section size"  // the whole section is too big
	LimitValueSize   = "value size"    // one top-level property value is too big
	LimitDepth       = "depth"         // nesting deeper than MaxDepth
	LimitKey         = "key"           // a key is empty, too long, reserved or has a forbidden character
	LimitString      = "string length" // a string value is longer than MaxStringBytes
	LimitNumber      = "number"        // an integer outside ±2^52, or a number that is not finite
	LimitType        = "type"          // a Go value of a type JSON cannot carry
)

// LimitError reports a twin document or patch that breaks one of the IoT Hub
// limits or key rules. Compare with errors.As.
type LimitError struct {
	Limit  string // which rule: one of the Limit* constants
	Path   string // dotted path to the offending node, e.g. "properties.desired.a.b"; for key errors, the object holding the key
	Detail string // what was found, e.g. `key "a.b" contains '.'`
}

// Error renders the error, e.g. "twin: desired exceeds 32768 bytes (is 40012)"
// or "twin: nesting depth 11 exceeds 10 at properties.desired.a.b.c…".
func (e *LimitError) Error() string {
	if e.Limit == LimitSectionSize {
		name := e.Path[strings.LastIndexByte(e.Path, '.')+1:]
		return "twin: " + name + " " + e.Detail
	}
	return "twin: " + e.Detail + " at " + e.Path
}

// String returns the section's name: "tags", "desired" or "reported".
func (k Kind) String() string {
	switch k {
	case Tags:
		return "tags"
	case Desired:
		return "desired"
	case Reported:
		return "reported"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Root returns the section's path in the full twin: "tags",
// "properties.desired" or "properties.reported".
func (k Kind) Root() string {
	if k == Tags {
		return "tags"
	}
	return "properties." + k.String()
}

// MaxSize returns the section's size limit.
func (k Kind) MaxSize() int {
	if k == Tags {
		return MaxTagsSize
	}
	return MaxDesiredSize // == MaxReportedSize
}

func (k Kind) valid() bool { return k == Tags || k == Desired || k == Reported }

func (k Kind) check() error {
	if !k.valid() {
		return fmt.Errorf("twin: unknown section kind %d", int(k))
	}
	return nil
}

// Size returns the size of a property value as IoT Hub accounts it: numbers
// 8, booleans 4, null 4, strings their character count excluding C0/C1
// control characters, objects the sum over members of the key's UTF-8 length
// plus the member's size, arrays the sum of their elements. A section's size
// is Size of its property map. Values of unsupported types count 0.
func Size(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := 0
		for k, e := range x {
			n += len(k) + Size(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += Size(e)
		}
		return n
	case string:
		return stringSize(x)
	case bool, nil:
		return 4
	case json.Number, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return 8
	}
	return 0
}

func stringSize(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != 0x7f {
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsControl(r) {
			n++
		}
		i += size
	}
	return n
}

// Validate checks a document (isPatch false) or a merge patch (isPatch true)
// for section k against the limits: keys, nesting depth, string length,
// integer range, value types, the size of each top-level property value and
// the size of the section. Keys starting with '$' at the root ($version,
// $metadata) are rejected in both modes: they are read-only.
//
// In patch mode a null object member means "delete" and counts nothing, so the
// sizes checked are a lower bound of the merged result's: a patch that fails
// here fails on every target. Patch checks the merged result's sizes again.
// A document may contain nulls; they count 4 like a JSON null.
//
// The error is a *LimitError. When a document breaks several rules, the one
// reported is the first in sorted key order.
func Validate(k Kind, doc map[string]any, isPatch bool) error {
	if err := k.check(); err != nil {
		return err
	}
	v := validator{kind: k, isPatch: isPatch}
	if _, err := v.root(doc); err != nil {
		// Walk again in sorted key order so the reported error is stable.
		v = validator{kind: k, isPatch: isPatch, sorted: true}
		_, err = v.root(doc)
		return err
	}
	return nil
}

type validator struct {
	kind    Kind
	isPatch bool
	sorted  bool
	path    []string // segments below the root; built as we descend, joined only on error
}

func (v *validator) fail(limit, detail string) *LimitError {
	var b strings.Builder
	b.WriteString(v.kind.Root())
	for _, s := range v.path {
		if !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return &LimitError{Limit: limit, Path: b.String(), Detail: detail}
}

func (v *validator) keys(m map[string]any) func(func(string, any) bool) {
	return func(yield func(string, any) bool) {
		if !v.sorted {
			for k, e := range m {
				if !yield(k, e) {
					return
				}
			}
			return
		}
		ks := make([]string, 0, len(m))
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		for _, k := range ks {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}

// root validates the section's property map and returns its size.
func (v *validator) root(doc map[string]any) (int, error) {
	total := 0
	for key, val := range v.keys(doc) {
		if strings.HasPrefix(key, "$") {
			return 0, v.fail(LimitKey, fmt.Sprintf("key %q is read-only and may not be set", key))
		}
		if err := v.key(key); err != nil {
			return 0, err
		}
		if val == nil && v.isPatch {
			continue // a deletion adds nothing
		}
		v.path = append(v.path, key)
		n, err := v.value(val, 1)
		if err == nil && n > MaxValueSize {
			err = v.fail(LimitValueSize, fmt.Sprintf("property value size %d exceeds %d", n, MaxValueSize))
		}
		v.path = v.path[:len(v.path)-1]
		if err != nil {
			return 0, err
		}
		total += len(key) + n
	}
	if max := v.kind.MaxSize(); total > max {
		return 0, v.fail(LimitSectionSize, fmt.Sprintf("exceeds %d bytes (is %d)", max, total))
	}
	return total, nil
}

// key checks one object key; v.path is the object holding it.
func (v *validator) key(key string) error {
	switch {
	case key == "":
		return v.fail(LimitKey, "key is empty")
	case len(key) > MaxKeyBytes:
		return v.fail(LimitKey, fmt.Sprintf("key %.32q… is %d bytes, over %d", key, len(key), MaxKeyBytes))
	case !utf8.ValidString(key):
		return v.fail(LimitKey, fmt.Sprintf("key %q is not valid UTF-8", key))
	}
	for _, r := range key {
		switch {
		case r == '.':
			return v.fail(LimitKey, fmt.Sprintf("key %q contains '.'", key))
		case r == '$':
			return v.fail(LimitKey, fmt.Sprintf("key %q contains '$'", key))
		case r == ' ':
			return v.fail(LimitKey, fmt.Sprintf("key %q contains a space", key))
		case unicode.IsControl(r):
			return v.fail(LimitKey, fmt.Sprintf("key %q contains control character %U", key, r))
		}
	}
	return nil
}

// value checks x, found at the given depth (1 for a top-level property; array
// elements sit one level below their array), and returns its size.
func (v *validator) value(x any, depth int) (int, error) {
	if depth > MaxDepth {
		return 0, v.fail(LimitDepth, fmt.Sprintf("nesting depth %d exceeds %d", depth, MaxDepth))
	}
	switch x := x.(type) {
	case nil:
		return 4, nil
	case bool:
		return 4, nil
	case string:
		if len(x) > MaxStringBytes {
			return 0, v.fail(LimitString, fmt.Sprintf("string of %d bytes exceeds %d", len(x), MaxStringBytes))
		}
		if !utf8.ValidString(x) {
			return 0, v.fail(LimitType, "string is not valid UTF-8")
		}
		return stringSize(x), nil
	case json.Number:
		return 8, v.number(x)
	case float64:
		return 8, v.float(x)
	case float32:
		return 8, v.float(float64(x))
	case int:
		return 8, v.integer(int64(x))
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		rv := reflect.ValueOf(x)
		if rv.CanInt() {
			return 8, v.integer(rv.Int())
		}
		if u := rv.Uint(); u > MaxSafeInteger {
			return 0, v.fail(LimitNumber, fmt.Sprintf("integer %d outside [%d, %d]", u, int64(MinSafeInteger), int64(MaxSafeInteger)))
		}
		return 8, nil
	case map[string]any:
		n := 0
		for key, e := range v.keys(x) {
			if err := v.key(key); err != nil {
				return 0, err
			}
			if e == nil && v.isPatch {
				continue
			}
			v.path = append(v.path, key)
			s, err := v.value(e, depth+1)
			v.path = v.path[:len(v.path)-1]
			if err != nil {
				return 0, err
			}
			n += len(key) + s
		}
		return n, nil
	case []any:
		n := 0
		for i, e := range x {
			v.path = append(v.path, "["+strconv.Itoa(i)+"]")
			s, err := v.value(e, depth+1)
			v.path = v.path[:len(v.path)-1]
			if err != nil {
				return 0, err
			}
			n += s
		}
		return n, nil
	}
	return 0, v.fail(LimitType, fmt.Sprintf("unsupported value type %T", x))
}

func (v *validator) number(n json.Number) error {
	s := string(n)
	if !isJSONNumber(s) {
		return v.fail(LimitType, fmt.Sprintf("%q is not a JSON number", s))
	}
	if strings.ContainsAny(s, ".eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil { // out of float64 range
			return v.fail(LimitNumber, fmt.Sprintf("number %s is out of range", s))
		}
		return v.float(f)
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || i < MinSafeInteger || i > MaxSafeInteger {
		return v.fail(LimitNumber, fmt.Sprintf("integer %s outside [%d, %d]", s, int64(MinSafeInteger), int64(MaxSafeInteger)))
	}
	return nil
}

func (v *validator) float(f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return v.fail(LimitNumber, fmt.Sprintf("number %v is not finite", f))
	}
	return nil
}

func (v *validator) integer(i int64) error {
	if i < MinSafeInteger || i > MaxSafeInteger {
		return v.fail(LimitNumber, fmt.Sprintf("integer %d outside [%d, %d]", i, int64(MinSafeInteger), int64(MaxSafeInteger)))
	}
	return nil
}

// isJSONNumber reports whether s matches the RFC 8259 number grammar.
func isJSONNumber(s string) bool {
	i := 0
	digits := func() bool {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		digits()
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}
