package iothubtopic

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMalformedProperties is returned (wrapped) for a property bag that cannot be decoded.
var ErrMalformedProperties = errors.New("malformed property bag")

// System property names as they appear (decoded) in a property bag.
// Source: azure note 1.6; Node mqtt.ts, Azure SDK for C az_iot_common.h.
const (
	SysMessageID       = "$.mid"   // messageId
	SysCorrelationID   = "$.cid"   // correlationId
	SysUserID          = "$.uid"   // userId
	SysTo              = "$.to"    // to
	SysExpiry          = "$.exp"   // absolute expiry (ISO-8601)
	SysContentType     = "$.ct"    // content type
	SysContentEncoding = "$.ce"    // content encoding
	SysCreationTime    = "$.ctime" // creation time (Embedded C)
	SysComponent       = "$.sub"   // component name
	SysInterfaceID     = "$.ifid"  // interface id
	SysOutputName      = "$.on"    // module output name
	SysConnDeviceID    = "$.cdid"  // connection device id (Edge-routed input)
	SysConnModuleID    = "$.cmid"  // connection module id (Edge-routed input)
)

// systemPrefix marks a system property name.
const systemPrefix = "$."

// Property is one member of a property bag. Name and Value are decoded.
type Property struct {
	Name  string
	Value string
	// NoValue marks a bare name ("key" with no "="), the C2D spelling of a null
	// value. An empty string is Value "" with NoValue false ("key="). [azure note 1.6]
	NoValue bool
}

// IsSystem reports whether the property is a system property ("$." prefix).
func (p Property) IsSystem() bool { return strings.HasPrefix(p.Name, systemPrefix) }

// Properties is a property bag in wire order. Duplicated names are kept;
// Get returns the last one, as later members overwrite earlier ones in the SDKs.
type Properties []Property

// Get returns the value of the last property called name.
func (ps Properties) Get(name string) (string, bool) {
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].Name == name {
			return ps[i].Value, true
		}
	}
	return "", false
}

// System returns the system properties as a map keyed by full name ("$.mid").
// It returns nil when there are none.
func (ps Properties) System() map[string]string { return ps.split(true) }

// App returns the application properties as a map. It returns nil when there are none.
func (ps Properties) App() map[string]string { return ps.split(false) }

func (ps Properties) split(system bool) map[string]string {
	var m map[string]string
	for _, p := range ps {
		if p.IsSystem() != system {
			continue
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[p.Name] = p.Value
	}
	return m
}

// Encode writes the bag as key=value pairs joined by "&", in order. Names and
// values are percent-encoded like JavaScript's encodeURIComponent, so the result
// never contains a raw "/", "&", "=", "?" or "$" (Node's C2D parser splits the
// topic on "/"). [azure note 1.6]
func (ps Properties) Encode() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		escape(&b, p.Name)
		if !p.NoValue {
			b.WriteByte('=')
			escape(&b, p.Value)
		}
	}
	return b.String()
}

// DecodeProperties reads a property bag ("a=1&%24.ct=application%2Fjson&flag").
// A leading "?" is accepted. Empty members ("a=1&&b=2") are skipped. A "+" is
// kept as "+", as decodeURIComponent does. It returns nil for an empty bag.
func DecodeProperties(s string) (Properties, error) {
	s = strings.TrimPrefix(s, "?")
	var ps Properties
	for member := range strings.SplitSeq(s, "&") {
		if member == "" {
			continue
		}
		rawName, rawValue, hasValue := strings.Cut(member, "=")
		name, err := unescape(rawName)
		if err != nil {
			return nil, fmt.Errorf("%w: name %q: %w", ErrMalformedProperties, rawName, err)
		}
		if name == "" {
			return nil, fmt.Errorf("%w: member %q has an empty name", ErrMalformedProperties, member)
		}
		value, err := unescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("%w: value of %q: %w", ErrMalformedProperties, name, err)
		}
		ps = append(ps, Property{Name: name, Value: value, NoValue: !hasValue})
	}
	return ps, nil
}

// unreserved reports whether encodeURIComponent leaves c as it is.
func unreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.!~*'()", c) >= 0
}

const upperHex = "0123456789ABCDEF"

func escape(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
}

var errBadEscape = errors.New("bad percent escape")

func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("%w at offset %d", errBadEscape, i)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w at offset %d", errBadEscape, i)
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
