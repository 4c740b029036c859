package certpool

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.crt")
	junk := filepath.Join(dir, "junk.crt")
	if err := os.WriteFile(good, selfSigned(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		file     string
		wantErr  bool
		notExist bool
	}{
		{name: "pem certificate", file: good},
		{name: "no pem in file", file: junk, wantErr: true},
		{name: "missing file", file: filepath.Join(dir, "missing.crt"), wantErr: true, notExist: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Load(c.file)
			if (err != nil) != c.wantErr {
				t.Fatalf("Load(%s) error = %v, want error %v", c.file, err, c.wantErr)
			}
			if c.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load(%s) error %v does not wrap fs.ErrNotExist", c.file, err)
			}
			if err == nil && p == nil {
				t.Errorf("Load(%s) returned no pool", c.file)
			}
		})
	}
}
