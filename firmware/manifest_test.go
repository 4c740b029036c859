package firmware

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = os.Getenv("DROVER_UPDATE_GOLDEN") != ""

func testManifest() Manifest {
	sum := sha256.Sum256([]byte("image"))
	return Manifest{
		UpdateID:      UpdateID{Provider: "acme", Name: "pump-fw", Version: "2.1.0"},
		Compatibility: []Compatibility{{Manufacturer: "Acme", Model: "pump-3"}, {Manufacturer: `Acme "Labs"`, Model: `x\y é`}},
		File:          File{Name: "pump-2.1.0.bin", Size: 5, SHA256: hex.EncodeToString(sum[:])},
		CreatedAt:     time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC),
	}
}

// seedKey is a fixed key so that the golden signed document is stable.
func seedKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

// TestCanonical pins the canonical bytes and the signed document byte for
// byte: a change here breaks every signature in the field.
func TestCanonical(t *testing.T) {
	m := testManifest()
	s, err := Sign(m, seedKey())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	got := append(append(m.Canonical(), '\n'), doc...)
	golden := filepath.Join("testdata", "canonical.golden")
	if update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("canonical bytes changed:\ngot  %s\nwant %s", got, want)
	}
	// The canonical bytes are JSON whose members come back in the same order
	// when re-encoded with sorted keys (encoding/json sorts map keys).
	var generic map[string]any
	if err := json.Unmarshal(m.Canonical(), &generic); err != nil {
		t.Fatalf("canonical bytes are not JSON: %v", err)
	}
	var re bytes.Buffer
	enc := json.NewEncoder(&re)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(re.String()) != string(m.Canonical()) {
		t.Errorf("canonical bytes are not sorted-key compact JSON:\n%s\n%s", m.Canonical(), re.String())
	}
}

func signedDoc(t *testing.T, edit func(map[string]any)) []byte {
	t.Helper()
	s, err := Sign(testManifest(), seedKey())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	out, _ := json.Marshal(m)
	return out
}

func TestParseRejects(t *testing.T) {
	set := func(path string, v any) func(map[string]any) {
		return func(m map[string]any) {
			parts := strings.Split(path, ".")
			cur := m
			for _, p := range parts[:len(parts)-1] {
				cur = cur[p].(map[string]any)
			}
			if v == nil {
				delete(cur, parts[len(parts)-1])
			} else {
				cur[parts[len(parts)-1]] = v
			}
		}
	}
	cases := []struct {
		name string
		doc  []byte
		want string
	}{
		{"empty", []byte(``), "EOF"},
		{"not json", []byte(`firmware`), "invalid character"},
		{"array", []byte(`[]`), "cannot unmarshal array"},
		{"trailing data", append(signedDoc(t, nil), []byte(` {}`)...), "data after"},
		{"unknown member", signedDoc(t, set("extra", 1)), `unknown field "extra"`},
		{"no updateId", signedDoc(t, set("updateId", nil)), "updateId is missing"},
		{"no file", signedDoc(t, set("file", nil)), "file is missing"},
		{"no createdAt", signedDoc(t, set("createdAt", nil)), "createdAt is missing"},
		{"createdAt with offset", signedDoc(t, set("createdAt", "2026-12-06T02:02:03+01:00")), "want UTC to the second"},
		{"createdAt fraction", signedDoc(t, set("createdAt", "2026-12-06T01:02:03.5Z")), "want UTC to the second"},
		{"provider slash", signedDoc(t, set("updateId.provider", "a/b")), "updateId.provider"},
		{"empty version", signedDoc(t, set("updateId.version", "")), "updateId.version"},
		{"long name", signedDoc(t, set("updateId.name", strings.Repeat("n", 65))), "1 to 64"},
		{"no compatibility", signedDoc(t, set("compatibility", []any{})), "compatibility needs 1 to 32"},
		{"control in model", signedDoc(t, set("compatibility", []any{map[string]any{"manufacturer": "a", "model": "b\x01"}})), "control character"},
		{"empty manufacturer", signedDoc(t, set("compatibility", []any{map[string]any{"manufacturer": "", "model": "b"}})), "compatibility[0].manufacturer"},
		{"file name with slash", signedDoc(t, set("file.name", "../x")), "file.name"},
		{"zero size", signedDoc(t, set("file.size", 0)), "file.size 0"},
		{"huge size", signedDoc(t, set("file.size", float64(MaxImageSize+1))), "file.size"},
		{"fractional size", signedDoc(t, set("file.size", 1.5)), "cannot unmarshal number"},
		{"upper-case digest", signedDoc(t, set("file.sha256", strings.Repeat("A", 64))), "file.sha256"},
		{"short digest", signedDoc(t, set("file.sha256", "abc")), "file.sha256"},
		{"wrong algorithm", signedDoc(t, set("signature.algorithm", "rsa")), `algorithm "ed25519"`},
		{"too big", append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), MaxManifestSize)...), "more than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.doc)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%.120s) = %v, want ErrMalformed", tc.doc, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%.120s) = %q, want it to mention %q", tc.doc, err, tc.want)
			}
			if ResultOf(err) != ResultMalformedManifest {
				t.Errorf("ResultOf = %s", ResultOf(err))
			}
		})
	}
}

func TestVerify(t *testing.T) {
	key := seedKey()
	other, _ := GenerateKey()
	trusted, err := NewKeySet(EncodePublicKey(key.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	good := signedDoc(t, nil)
	otherSigned, _ := Sign(testManifest(), other)
	otherDoc, _ := json.Marshal(otherSigned)
	edit := func(f func(m map[string]any)) []byte { return signedDoc(t, f) }
	sigOf := func(m map[string]any) map[string]any { return m["signature"].(map[string]any) }
	cases := []struct {
		name      string
		doc       []byte
		trust     error // KeySet.Verify
		integrity error // CheckIntegrity
		result    Result
	}{
		{"good", good, nil, nil, ResultSuccess},
		{"unsigned", edit(func(m map[string]any) { delete(m, "signature") }), ErrUnsigned, ErrUnsigned, ResultUnsigned},
		{"untrusted key", otherDoc, ErrUntrustedKey, nil, ResultUntrustedKey},
		{"tampered version", edit(func(m map[string]any) { m["updateId"].(map[string]any)["version"] = "2.1.1" }), ErrBadSignature, ErrBadSignature, ResultBadSignature},
		{"tampered digest", edit(func(m map[string]any) { m["file"].(map[string]any)["sha256"] = strings.Repeat("0", 64) }), ErrBadSignature, ErrBadSignature, ResultBadSignature},
		{"tampered compatibility order", edit(func(m map[string]any) {
			c := m["compatibility"].([]any)
			c[0], c[1] = c[1], c[0]
		}), ErrBadSignature, ErrBadSignature, ResultBadSignature},
		{"signature not base64", edit(func(m map[string]any) { sigOf(m)["value"] = "%%%" }), ErrBadSignature, ErrBadSignature, ResultBadSignature},
		{"signature truncated", edit(func(m map[string]any) {
			v := sigOf(m)["value"].(string)
			b, _ := base64.StdEncoding.DecodeString(v)
			sigOf(m)["value"] = base64.StdEncoding.EncodeToString(b[:63])
		}), ErrBadSignature, ErrBadSignature, ResultBadSignature},
		{"trusted key id, other public key", edit(func(m map[string]any) {
			sigOf(m)["publicKey"] = EncodePublicKey(other.Public().(ed25519.PublicKey))
		}), nil, ErrBadSignature, ResultSuccess},
		{"other key's signature under trusted key id", edit(func(m map[string]any) {
			sigOf(m)["value"] = otherSigned.Signature.Value
		}), ErrBadSignature, ErrBadSignature, ResultBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.doc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = trusted.Verify(s)
			if !errors.Is(err, tc.trust) || (tc.trust == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tc.trust)
			}
			if ResultOf(err) != tc.result {
				t.Errorf("ResultOf(%v) = %s, want %s", err, ResultOf(err), tc.result)
			}
			ierr := s.CheckIntegrity()
			if !errors.Is(ierr, tc.integrity) || (tc.integrity == nil) != (ierr == nil) {
				t.Errorf("CheckIntegrity = %v, want %v", ierr, tc.integrity)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivateKey(pemBytes)
	if err != nil || !back.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if p, err := ParsePublicKey(EncodePublicKey(pub)); err != nil || !p.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	if len(KeyID(pub)) != 16 {
		t.Errorf("KeyID %q", KeyID(pub))
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 31))} {
		if _, err := ParsePublicKey(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePublicKey(%q) = %v, want ErrBadKey", bad, err)
		}
	}
	for _, bad := range [][]byte{nil, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")} {
		if _, err := ParsePrivateKey(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePrivateKey(%q) = %v, want ErrBadKey", bad, err)
		}
	}
	if _, err := NewKeySet("bad"); !errors.Is(err, ErrBadKey) {
		t.Errorf("NewKeySet(bad) = %v", err)
	}
}

func TestCompatible(t *testing.T) {
	m := testManifest()
	for _, tc := range []struct {
		man, model string
		want       bool
	}{
		{"Acme", "pump-3", true}, {`Acme "Labs"`, `x\y é`, true},
		{"acme", "pump-3", false}, {"Acme", "pump-4", false}, {"", "", false},
	} {
		if got := m.Compatible(tc.man, tc.model); got != tc.want {
			t.Errorf("Compatible(%q, %q) = %v, want %v", tc.man, tc.model, got, tc.want)
		}
	}
	s, _ := Sign(m, seedKey())
	if s.CreatedAt.Location() != time.UTC {
		t.Error("Sign does not normalise createdAt to UTC")
	}
}

func TestTransition(t *testing.T) {
	path := []Status{StatusIdle, StatusDownloading, StatusDownloaded, StatusVerifying, StatusApplying, StatusRebooting, StatusConfirming, StatusCurrent}
	for i := 1; i < len(path); i++ {
		if err := Transition(path[i-1], path[i]); err != nil {
			t.Errorf("%s → %s: %v", path[i-1], path[i], err)
		}
	}
	for _, from := range path { // a request refused before it starts fails from idle or current
		if err := Transition(from, StatusFailed); err != nil {
			t.Errorf("%s → failed: %v", from, err)
		}
	}
	for _, bad := range [][2]Status{
		{StatusIdle, StatusApplying}, {StatusDownloading, StatusApplying}, {StatusApplying, StatusCurrent},
		{StatusFailed, StatusCurrent}, {StatusFailed, StatusApplying}, {"bogus", StatusIdle},
	} {
		if err := Transition(bad[0], bad[1]); !errors.Is(err, ErrTransition) {
			t.Errorf("%s → %s = %v, want ErrTransition", bad[0], bad[1], err)
		}
	}
}

// FuzzParse: Parse never panics; whatever it accepts re-encodes to a document
// it accepts again with the same canonical bytes, and those bytes are JSON.
func FuzzParse(f *testing.F) {
	s, _ := Sign(testManifest(), seedKey())
	good, _ := json.Marshal(s)
	f.Add(good)
	m := testManifest()
	f.Add(m.Canonical())
	f.Add([]byte(`{"updateId":{},"file":{},"createdAt":""}`))
	f.Add([]byte(`{"signature":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !json.Valid(s.Canonical()) {
			t.Fatalf("canonical bytes are not JSON: %s", s.Canonical())
		}
		re, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := Parse(re)
		if err != nil {
			t.Fatalf("re-encoded document does not parse: %v\n%s", err, re)
		}
		if !bytes.Equal(s.Canonical(), s2.Canonical()) {
			t.Fatalf("canonical bytes differ after a round trip:\n%s\n%s", s.Canonical(), s2.Canonical())
		}
		_ = s.CheckIntegrity()
	})
}
