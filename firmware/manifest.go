package firmware

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on a manifest's fields (docs/firmware.md, "Manifest").
const (
	// MaxManifestSize bounds a signed manifest document in bytes.
	MaxManifestSize = 64 << 10
	// MaxImageSize bounds file.size: 1 GiB.
	MaxImageSize = 1 << 30
	// MaxCompatibility bounds the compatibility list.
	MaxCompatibility = 32
	maxIDLen         = 64
	maxFileNameLen   = 255
)

// TimeLayout is the only accepted form of createdAt: RFC 3339 in UTC, to the second.
const TimeLayout = "2006-01-02T15:04:05Z"

// UpdateID names an update, as Azure Device Update names one: who publishes
// it, what it is, and which version.
type UpdateID struct {
	Provider string `json:"provider"`
	Name     string `json:"name"`
	Version  string `json:"version"`
}

// String is "provider/name/version", the form used in hub paths.
func (u UpdateID) String() string { return u.Provider + "/" + u.Name + "/" + u.Version }

// Compatibility names one device kind the image may be flashed onto, as the
// device's identify data reports it (reported.device.manufacturer and .model).
type Compatibility struct {
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
}

// File describes the image bytes.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // 64 lower-case hex digits
}

// Manifest describes one firmware image. Its canonical bytes (Canonical) are
// what the signature covers.
type Manifest struct {
	UpdateID      UpdateID        `json:"updateId"`
	Compatibility []Compatibility `json:"compatibility"`
	File          File            `json:"file"`
	CreatedAt     time.Time       `json:"-"`
}

// Signature is an ed25519 signature over a manifest's signed message.
type Signature struct {
	Algorithm string `json:"algorithm"` // always "ed25519"
	KeyID     string `json:"keyId"`     // KeyID of the public key
	PublicKey string `json:"publicKey"` // base64 of the 32-byte public key: lets anyone check integrity; trust is by KeyID
	Value     string `json:"value"`     // base64 of the 64-byte signature
}

// Signed is a manifest with its signature: the document the hub stores and
// serves, and the gateway verifies. Its JSON form is the manifest's members
// plus "signature".
type Signed struct {
	Manifest
	Signature *Signature
}

// Compatible reports whether the image may go onto a device that identifies
// as manufacturer and model (exact, case-sensitive match with one entry).
func (m *Manifest) Compatible(manufacturer, model string) bool {
	for _, c := range m.Compatibility {
		if c.Manufacturer == manufacturer && c.Model == model {
			return true
		}
	}
	return false
}

// document is the JSON shape of a Signed manifest; unknown members are refused.
type document struct {
	UpdateID      *UpdateID       `json:"updateId"`
	Compatibility []Compatibility `json:"compatibility"`
	File          *File           `json:"file"`
	CreatedAt     *string         `json:"createdAt"`
	Signature     *Signature      `json:"signature,omitempty"`
}

// Parse reads a signed manifest document and checks every field rule. It does
// not check the signature (Verify does). A document without "signature"
// parses; Verify then refuses it with ErrUnsigned. Every error wraps
// ErrMalformed and names the field.
func Parse(b []byte) (*Signed, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d document
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	switch {
	case d.UpdateID == nil:
		return nil, fmt.Errorf("%w: updateId is missing", ErrMalformed)
	case d.File == nil:
		return nil, fmt.Errorf("%w: file is missing", ErrMalformed)
	case d.CreatedAt == nil:
		return nil, fmt.Errorf("%w: createdAt is missing", ErrMalformed)
	}
	s := &Signed{Manifest: Manifest{UpdateID: *d.UpdateID, Compatibility: d.Compatibility, File: *d.File}, Signature: d.Signature}
	t, err := time.Parse(TimeLayout, *d.CreatedAt)
	if err != nil || t.Format(TimeLayout) != *d.CreatedAt {
		return nil, fmt.Errorf("%w: createdAt %q: want UTC to the second, like 2026-01-02T03:04:05Z", ErrMalformed, *d.CreatedAt)
	}
	s.CreatedAt = t
	if err := s.Manifest.Validate(); err != nil {
		return nil, err
	}
	if sig := s.Signature; sig != nil && (sig.Algorithm != "ed25519" || sig.KeyID == "" || sig.Value == "") {
		return nil, fmt.Errorf("%w: signature needs algorithm \"ed25519\", keyId and value", ErrMalformed)
	}
	return s, nil
}

// MarshalJSON writes the signed manifest document: the canonical members,
// then "signature" when there is one.
func (s *Signed) MarshalJSON() ([]byte, error) {
	b := s.Manifest.Canonical()
	if s.Signature == nil {
		return b, nil
	}
	sig, err := json.Marshal(s.Signature)
	if err != nil {
		return nil, fmt.Errorf("encode signature: %w", err)
	}
	out := append(b[:len(b)-1:len(b)-1], `,"signature":`...)
	out = append(out, sig...)
	return append(out, '}'), nil
}

// UnmarshalJSON parses with Parse's rules.
func (s *Signed) UnmarshalJSON(b []byte) error {
	p, err := Parse(b)
	if err != nil {
		return err
	}
	*s = *p
	return nil
}

// Validate checks the field rules of docs/firmware.md; errors wrap ErrMalformed.
func (m *Manifest) Validate() error {
	u := m.UpdateID
	for _, f := range []struct{ name, v, extra string }{
		{"updateId.provider", u.Provider, "._-"},
		{"updateId.name", u.Name, "._-"},
		{"updateId.version", u.Version, "._+-"},
	} {
		if err := checkToken(f.v, f.extra); err != nil {
			return fmt.Errorf("%w: %s %q: %w", ErrMalformed, f.name, f.v, err)
		}
	}
	if len(m.Compatibility) == 0 || len(m.Compatibility) > MaxCompatibility {
		return fmt.Errorf("%w: compatibility needs 1 to %d entries, has %d", ErrMalformed, MaxCompatibility, len(m.Compatibility))
	}
	for i, c := range m.Compatibility {
		if err := checkText(c.Manufacturer, maxIDLen); err != nil {
			return fmt.Errorf("%w: compatibility[%d].manufacturer %q: %w", ErrMalformed, i, c.Manufacturer, err)
		}
		if err := checkText(c.Model, maxIDLen); err != nil {
			return fmt.Errorf("%w: compatibility[%d].model %q: %w", ErrMalformed, i, c.Model, err)
		}
	}
	f := m.File
	if err := checkText(f.Name, maxFileNameLen); err != nil || f.Name == "." || f.Name == ".." || bytes.ContainsAny([]byte(f.Name), `/\`) {
		return fmt.Errorf("%w: file.name %q: want a plain file name of 1 to %d characters", ErrMalformed, f.Name, maxFileNameLen)
	}
	if f.Size <= 0 || f.Size > MaxImageSize {
		return fmt.Errorf("%w: file.size %d: want 1 to %d bytes", ErrMalformed, f.Size, MaxImageSize)
	}
	if !ValidDigest(f.SHA256) {
		return fmt.Errorf("%w: file.sha256 %q: want 64 lower-case hex digits", ErrMalformed, f.SHA256)
	}
	if m.CreatedAt.IsZero() {
		return fmt.Errorf("%w: createdAt is not set", ErrMalformed)
	}
	return nil
}

// ValidDigest reports whether s is 64 lower-case hex digits.
func ValidDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkToken allows 1 to 64 ASCII letters, digits and the extra characters.
func checkToken(s, extra string) error {
	if s == "" || len(s) > maxIDLen {
		return fmt.Errorf("want 1 to %d characters", maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || bytes.IndexByte([]byte(extra), c) >= 0
		if !ok {
			return fmt.Errorf("character %q is not allowed (letters, digits and %s only)", c, extra)
		}
	}
	return nil
}

// checkText allows 1 to max bytes of valid UTF-8 without control characters,
// so that canonical strings never need an escape beyond \" and \\.
func checkText(s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("want 1 to %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("control character %U is not allowed", r)
		}
	}
	return nil
}

// Canonical returns the manifest's canonical bytes, the input of the
// signature (docs/firmware.md, "Canonical bytes"): one JSON object, members
// sorted by key (byte order) at every level, no whitespace, strings with only
// `"` and `\` escaped (field rules exclude control characters), integers in
// decimal, createdAt in TimeLayout, the compatibility array in its given order.
// Callers validate first; Canonical of an invalid manifest is unspecified.
func (m *Manifest) Canonical() []byte {
	var b []byte
	b = append(b, `{"compatibility":[`...)
	for i, c := range m.Compatibility {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"manufacturer":`...)
		b = appendString(b, c.Manufacturer)
		b = append(b, `,"model":`...)
		b = appendString(b, c.Model)
		b = append(b, '}')
	}
	b = append(b, `],"createdAt":`...)
	b = appendString(b, m.CreatedAt.UTC().Format(TimeLayout))
	b = append(b, `,"file":{"name":`...)
	b = appendString(b, m.File.Name)
	b = append(b, `,"sha256":`...)
	b = appendString(b, m.File.SHA256)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, m.File.Size, 10)
	b = append(b, `},"updateId":{"name":`...)
	b = appendString(b, m.UpdateID.Name)
	b = append(b, `,"provider":`...)
	b = appendString(b, m.UpdateID.Provider)
	b = append(b, `,"version":`...)
	b = appendString(b, m.UpdateID.Version)
	return append(b, `}}`...)
}

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
