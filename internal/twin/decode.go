package twin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrMalformed is wrapped by every DecodeObject error: the input is not a
// single well-formed JSON object. Hubs answer it with 400.
var ErrMalformed = errors.New("twin: malformed JSON object")

// maxDecodeDepth bounds recursion while decoding. It is far above MaxDepth so
// that Validate, not the decoder, reports ordinary depth violations.
const maxDecodeDepth = 512

// DecodeObject parses b, which must hold exactly one JSON object (whitespace
// around it is allowed). Numbers become json.Number, objects map[string]any
// and arrays []any, as encoding/json with UseNumber would produce.
//
// It is stricter than encoding/json: a duplicate key in any object, invalid
// UTF-8, a top-level value that is not an object (including null), trailing
// data, and nesting deeper than 512 levels are errors. Every error wraps
// ErrMalformed and names the problem and its byte offset.
func DecodeObject(b []byte) (map[string]any, error) {
	d := decoder{data: b}
	d.skipSpace()
	if d.pos >= len(b) {
		return nil, d.errorf("empty input, want a JSON object")
	}
	if c := b[d.pos]; c != '{' {
		return nil, d.errorf("top-level value is %s, want a JSON object", describe(c))
	}
	m, err := d.object()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(b) {
		return nil, d.errorf("trailing data after the object")
	}
	return m, nil
}

// describe names the JSON value that starts with c, for error messages.
func describe(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	default:
		return fmt.Sprintf("not JSON (starts with %q)", c)
	}
}

type decoder struct {
	data  []byte
	pos   int
	depth int
	strs  map[string]string // short strings already allocated in this input
}

// maxIntern is the longest string or number the decoder deduplicates. Twin
// metadata repeats the same keys, timestamps and versions in every node, and
// sections repeat keys across sibling objects, so sharing them saves most
// allocations of a decode.
const maxIntern = 40

// intern returns b as a string, reusing an earlier copy of equal bytes.
func (d *decoder) intern(b []byte) string {
	if len(b) > maxIntern {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok { // no allocation for the lookup
		return s
	}
	if d.strs == nil {
		d.strs = make(map[string]string, 32)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), d.pos)
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value() (any, error) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end of input, want a value")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errorf("invalid character %q, want a value", c)
	}
}

func (d *decoder) literal(word string) error {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return d.errorf("invalid literal, want %s", word)
	}
	d.pos += len(word)
	return nil
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > maxDecodeDepth {
		return d.errorf("nesting deeper than %d levels", maxDecodeDepth)
	}
	return nil
}

// object parses an object; d.pos is at '{'.
func (d *decoder) object() (map[string]any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++
	m := make(map[string]any)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return m, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in object")
		}
		if d.data[d.pos] != '"' {
			return nil, d.errorf("invalid character %q, want a string key", d.data[d.pos])
		}
		keyAt := d.pos
		key, err := d.str()
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			d.pos = keyAt
			return nil, d.errorf("duplicate key %q", key)
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("missing ':' after key %q", key)
		}
		d.pos++
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		m[key] = v
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.depth--
			return m, nil
		default:
			return nil, d.errorf("invalid character %q, want ',' or '}'", d.data[d.pos])
		}
	}
}

// array parses an array; d.pos is at '['.
func (d *decoder) array() ([]any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++
	a := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return a, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			d.depth--
			return a, nil
		default:
			return nil, d.errorf("invalid character %q, want ',' or ']'", d.data[d.pos])
		}
	}
}

// number parses a number per RFC 8259 section 6; d.pos is at '-' or a digit.
func (d *decoder) number() (json.Number, error) {
	start := d.pos
	b := d.data
	if b[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(b) && b[d.pos] == '0':
		d.pos++
	case d.pos < len(b) && b[d.pos] >= '1' && b[d.pos] <= '9':
		d.digits()
	default:
		return "", d.errorf("invalid number, want a digit")
	}
	if d.pos < len(b) && b[d.pos] == '.' {
		d.pos++
		if !d.digits() {
			return "", d.errorf("invalid number, want a digit after '.'")
		}
	}
	if d.pos < len(b) && (b[d.pos] == 'e' || b[d.pos] == 'E') {
		d.pos++
		if d.pos < len(b) && (b[d.pos] == '+' || b[d.pos] == '-') {
			d.pos++
		}
		if !d.digits() {
			return "", d.errorf("invalid number, want a digit in the exponent")
		}
	}
	return json.Number(d.intern(b[start:d.pos])), nil
}

// digits consumes [0-9]* and reports whether there was at least one.
func (d *decoder) digits() bool {
	start := d.pos
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
	}
	return d.pos > start
}

// str parses a string; d.pos is at the opening quote.
func (d *decoder) str() (string, error) {
	d.pos++
	start := d.pos
	b := d.data
	// Fast path: plain ASCII without escapes.
	for d.pos < len(b) {
		c := b[d.pos]
		if c == '"' {
			s := d.intern(b[start:d.pos])
			d.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.pos++
	}
	buf := make([]byte, 0, d.pos-start+16)
	buf = append(buf, b[start:d.pos]...)
	for {
		if d.pos >= len(b) {
			return "", d.errorf("unexpected end of input in string")
		}
		c := b[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(buf), nil
		case c < 0x20:
			return "", d.errorf("control character %q in string", c)
		case c == '\\':
			r, err := d.escape()
			if err != nil {
				return "", err
			}
			buf = utf8.AppendRune(buf, r)
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(b[d.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", d.errorf("invalid UTF-8 in string")
			}
			buf = append(buf, b[d.pos:d.pos+size]...)
			d.pos += size
		}
	}
}

// escape decodes one escape sequence; d.pos is at the backslash. Lone UTF-16
// surrogates become U+FFFD, as encoding/json does.
func (d *decoder) escape() (rune, error) {
	b := d.data
	if d.pos+1 >= len(b) {
		return 0, d.errorf("unexpected end of input in string escape")
	}
	c := b[d.pos+1]
	d.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, ok := d.hex4()
		if !ok {
			return 0, d.errorf("invalid \\u escape")
		}
		if utf16.IsSurrogate(r) {
			save := d.pos
			if d.pos+1 < len(b) && b[d.pos] == '\\' && b[d.pos+1] == 'u' {
				d.pos += 2
				if r2, ok := d.hex4(); ok {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						return dec, nil
					}
				}
			}
			d.pos = save
			return utf8.RuneError, nil
		}
		return r, nil
	default:
		d.pos -= 2
		return 0, d.errorf("invalid escape %q in string", "\\"+string(rune(c)))
	}
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.data[d.pos:d.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.pos += 4
	return rune(v), true
}
