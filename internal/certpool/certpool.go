// Package certpool loads a PEM trust file into an x509.CertPool. The gateway
// (trust for a self-signed hub) and localhub's certs package share it, so the
// gateway needs nothing from localhub to trust the hub's CA.
package certpool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Load returns a pool holding the PEM certificates in file (and nothing
// else: not the system roots).
func Load(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", file, err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read CA %s: no PEM certificate in file", file)
	}
	return p, nil
}
