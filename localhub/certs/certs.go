// Package certs creates and loads localhub's TLS material: a private CA and a
// server certificate for the hub's hostname, kept under DIR/tls so restarts
// (and the devices that trust the CA) keep working.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/drover-iot/drover/internal/certpool"
)

// Files names the PEM files in a tls directory.
type Files struct {
	CACert, CAKey, ServerCert, ServerKey string
}

// In returns the file names inside dir.
func In(dir string) Files {
	return Files{
		CACert:     filepath.Join(dir, "ca.crt"),
		CAKey:      filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
	}
}

// Ensure creates the CA and the server certificate in dir when they are
// missing, and returns a server TLS config. A server certificate whose names
// do not cover hostname is re-issued from the same CA, so devices keep
// trusting the hub.
func Ensure(dir, hostname string, now time.Time) (*tls.Config, Files, error) {
	f := In(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, f, fmt.Errorf("create tls dir: %w", err)
	}
	if !exists(f.CACert) || !exists(f.CAKey) {
		if err := newCA(f, now); err != nil {
			return nil, f, err
		}
		_ = os.Remove(f.ServerCert)
	}
	caCert, caKey, err := loadCA(f)
	if err != nil {
		return nil, f, err
	}
	if !exists(f.ServerCert) || !exists(f.ServerKey) || !covers(f.ServerCert, hostname) {
		if err := newServer(f, caCert, caKey, hostname, now); err != nil {
			return nil, f, err
		}
	}
	pair, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		return nil, f, fmt.Errorf("load server certificate %s: %w", f.ServerCert, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, f, nil
}

// Pool returns a cert pool holding the CA in file.
func Pool(caFile string) (*x509.CertPool, error) { return certpool.Load(caFile) }

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(f Files, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return fmt.Errorf("generate CA serial: %w", err)
	}
	tpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "Drover localhub CA", Organization: []string{"Drover"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	return writePair(f.CACert, f.CAKey, der, key)
}

func loadCA(f Files) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(f.CACert)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA certificate: %w", err)
	}
	kb, err := os.ReadFile(f.CAKey)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA key: %w", err)
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, errors.New("read CA: not PEM")
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kp.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA key: %w", err)
	}
	return cert, key, nil
}

func newServer(f Files, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hostname string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate server key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return fmt.Errorf("generate server serial: %w", err)
	}
	tpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"Drover"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{hostname, "localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	if ip := net.ParseIP(hostname); ip != nil {
		tpl.IPAddresses = append(tpl.IPAddresses, ip)
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create server certificate: %w", err)
	}
	return writePair(f.ServerCert, f.ServerKey, der, key)
}

func covers(certFile, hostname string) bool {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return false
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return false
	}
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		return false
	}
	return c.VerifyHostname(hostname) == nil && time.Now().Before(c.NotAfter)
}

func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", keyFile, err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", certFile, err)
	}
	return nil
}
