// Package sas creates and verifies Azure IoT Hub shared access signature
// tokens and parses IoT Hub connection strings.
//
// A token is "SharedAccessSignature sr=…&sig=…&se=…[&skn=…]". The signature is
// base64(HMAC-SHA256(base64-decoded key, sr + "\n" + se)), where sr is the
// resource URI exactly as it appears in the token: device SDKs URL-encode it,
// the Node service SDK sends it raw, so Verify signs what it was given and
// decodes sr separately for the scope check.
package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prefix starts every token.
const Prefix = "SharedAccessSignature "

// Errors returned by Parse and Verify. Compare with errors.Is.
var (
	ErrMalformed = errors.New("malformed SAS token")
	ErrExpired   = errors.New("SAS token expired")
	ErrSignature = errors.New("SAS signature does not match")
	ErrScope     = errors.New("SAS token resource does not cover the target")
	ErrBadKey    = errors.New("key is not valid base64")
)

// Token is a parsed shared access signature.
type Token struct {
	// RawResource is sr exactly as it appeared in the token; it is what was signed.
	RawResource string
	// Resource is sr URL-decoded, e.g. "myhub.local/devices/pump-1".
	Resource string
	// Signature is sig, URL-decoded (base64 text).
	Signature string
	// Expiry is se.
	Expiry time.Time
	// KeyName is skn; empty when signed with a device's own key.
	KeyName string
}

// Sign builds a token for resource, signed with the base64 key, valid until expiry.
// keyName is empty for device keys and the policy name for shared access policies.
func Sign(resource, key, keyName string, expiry time.Time) (string, error) {
	sr := url.QueryEscape(resource)
	se := strconv.FormatInt(expiry.Unix(), 10)
	sig, err := signature(key, sr, se)
	if err != nil {
		return "", err
	}
	tok := Prefix + "sr=" + sr + "&sig=" + url.QueryEscape(sig) + "&se=" + se
	if keyName != "" {
		tok += "&skn=" + url.QueryEscape(keyName)
	}
	return tok, nil
}

func signature(key, sr, se string) (string, error) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(sr + "\n" + se))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// Parse reads a token. Fields may come in any order; unknown fields are ignored.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, Prefix) {
		return Token{}, fmt.Errorf("%w: missing %q prefix", ErrMalformed, strings.TrimSpace(Prefix))
	}
	var t Token
	var se string
	for _, part := range strings.Split(s[len(Prefix):], "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return Token{}, fmt.Errorf("%w: field %q has no value", ErrMalformed, k)
		}
		switch k {
		case "sr":
			t.RawResource = v
		case "sig":
			d, err := url.QueryUnescape(v)
			if err != nil {
				return Token{}, fmt.Errorf("%w: sig: %v", ErrMalformed, err)
			}
			t.Signature = d
		case "se":
			se = v
		case "skn":
			d, err := url.QueryUnescape(v)
			if err != nil {
				return Token{}, fmt.Errorf("%w: skn: %v", ErrMalformed, err)
			}
			t.KeyName = d
		}
	}
	if t.RawResource == "" || t.Signature == "" || se == "" {
		return Token{}, fmt.Errorf("%w: sr, sig and se are required", ErrMalformed)
	}
	d, err := url.QueryUnescape(t.RawResource)
	if err != nil {
		return Token{}, fmt.Errorf("%w: sr: %v", ErrMalformed, err)
	}
	t.Resource = d
	n, err := strconv.ParseInt(se, 10, 64)
	if err != nil {
		return Token{}, fmt.Errorf("%w: se %q is not an integer", ErrMalformed, se)
	}
	t.Expiry = time.Unix(n, 0)
	return t, nil
}

// Verify checks the signature against the base64 key and that the token has not expired at now.
func (t Token) Verify(key string, now time.Time) error {
	want, err := signature(key, t.RawResource, strconv.FormatInt(t.Expiry.Unix(), 10))
	if err != nil {
		return err
	}
	got, err := base64.StdEncoding.DecodeString(t.Signature)
	if err != nil {
		return fmt.Errorf("%w: sig is not base64", ErrSignature)
	}
	w, _ := base64.StdEncoding.DecodeString(want)
	if !hmac.Equal(got, w) {
		return ErrSignature
	}
	if !now.Before(t.Expiry) {
		return fmt.Errorf("%w at %s", ErrExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	return nil
}

// Covers reports whether the token's resource is target or a path-segment prefix of it,
// comparing case-insensitively ("host/devices" covers "host/devices/d1", not "host/devicesX").
// A ":port" on the host part of either side is ignored, as some SDKs put it there.
func (t Token) Covers(target string) bool {
	have := splitResource(t.Resource)
	want := splitResource(target)
	if len(have) > len(want) {
		return false
	}
	for i := range have {
		if !strings.EqualFold(have[i], want[i]) {
			return false
		}
	}
	return true
}

func splitResource(r string) []string {
	r = strings.TrimPrefix(strings.TrimPrefix(r, "https://"), "http://")
	r = strings.Trim(r, "/")
	parts := strings.Split(r, "/")
	if h, _, ok := strings.Cut(parts[0], ":"); ok {
		parts[0] = h
	}
	return parts
}

// DeviceResource is the resource URI a device token is scoped to.
func DeviceResource(hostname, deviceID string) string {
	return hostname + "/devices/" + deviceID
}

// DeriveKey derives a device's symmetric key from an enrollment group key as Azure DPS
// symmetric-key groups do: base64(HMAC-SHA256(base64-decoded group key, deviceID)).
func DeriveKey(groupKey, deviceID string) (string, error) {
	k, err := base64.StdEncoding.DecodeString(groupKey)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(deviceID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}
