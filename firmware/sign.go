package firmware

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// signingContext prefixes the canonical bytes in the signed message, so that
// a firmware key's signature can never be replayed as anything else.
const signingContext = "drover-firmware-manifest-v1\n"

// SignedMessage is what the ed25519 signature covers: signingContext followed
// by the manifest's canonical bytes.
func (m *Manifest) SignedMessage() []byte {
	return append([]byte(signingContext), m.Canonical()...)
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex (16 digits).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey returns a new signing key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return priv, nil
}

// MarshalPrivateKey encodes a private key as a PKCS #8 PEM block ("PRIVATE
// KEY"), the form `openssl genpkey -algorithm ed25519` writes.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a PKCS #8 PEM ed25519 private key.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: want a PEM \"PRIVATE KEY\" block (PKCS #8)", ErrBadKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: the key is a %T, not ed25519", ErrBadKey, k)
	}
	return priv, nil
}

// EncodePublicKey is the text form of a public key in configuration
// (firmware.trusted_keys): base64 of its 32 bytes.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads EncodePublicKey's form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: public key is not base64: %w", ErrBadKey, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrBadKey, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// Sign validates m and signs it with priv.
func Sign(m Manifest, priv ed25519.PrivateKey) (*Signed, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key is %d bytes", ErrBadKey, len(priv))
	}
	pub, _ := priv.Public().(ed25519.PublicKey)
	m.CreatedAt = m.CreatedAt.UTC().Truncate(1e9)
	sig := ed25519.Sign(priv, m.SignedMessage())
	return &Signed{Manifest: m, Signature: &Signature{
		Algorithm: "ed25519", KeyID: KeyID(pub),
		PublicKey: EncodePublicKey(pub), Value: base64.StdEncoding.EncodeToString(sig),
	}}, nil
}

// CheckIntegrity verifies the signature with the public key the document
// carries: it proves the manifest was not altered after signing, not that the
// signer is trusted (the hub checks this on upload; Verify checks trust).
func (s *Signed) CheckIntegrity() error {
	if s.Signature == nil {
		return ErrUnsigned
	}
	pub, err := ParsePublicKey(s.Signature.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: signature.publicKey: %w", ErrBadSignature, err)
	}
	if KeyID(pub) != s.Signature.KeyID {
		return fmt.Errorf("%w: signature.keyId %q is not the id of signature.publicKey (%s)", ErrBadSignature, s.Signature.KeyID, KeyID(pub))
	}
	return s.verifyWith(pub)
}

func (s *Signed) verifyWith(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(s.Signature.Value)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature.value is not base64 of %d bytes", ErrBadSignature, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, s.SignedMessage(), sig) {
		return fmt.Errorf("%w: signed by key %s, but the signature does not match the manifest", ErrBadSignature, s.Signature.KeyID)
	}
	return nil
}

// KeySet is a set of trusted public keys, by KeyID.
type KeySet map[string]ed25519.PublicKey

// NewKeySet parses public keys in EncodePublicKey's form.
func NewKeySet(keys ...string) (KeySet, error) {
	ks := KeySet{}
	for i, k := range keys {
		pub, err := ParsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("trusted key %d: %w", i, err)
		}
		ks[KeyID(pub)] = pub
	}
	return ks, nil
}

// Verify checks that s is signed, by a key in ks, and that the signature
// matches. The key the document carries is never used: only the trusted copy.
func (ks KeySet) Verify(s *Signed) error {
	if s.Signature == nil {
		return ErrUnsigned
	}
	pub, ok := ks[s.Signature.KeyID]
	if !ok {
		return fmt.Errorf("%w: key %s", ErrUntrustedKey, s.Signature.KeyID)
	}
	return s.verifyWith(pub)
}
