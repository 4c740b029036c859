package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Right is a permission a shared access policy grants.
type Right string

// Rights, named as Azure IoT Hub names them.
const (
	RegistryRead   Right = "RegistryRead"
	RegistryWrite  Right = "RegistryWrite"
	ServiceConnect Right = "ServiceConnect"
	DeviceConnect  Right = "DeviceConnect"
)

// Policy is a shared access policy.
type Policy struct {
	Name         string
	PrimaryKey   string
	SecondaryKey string
	Rights       []Right
}

// Has reports whether p grants r. RegistryWrite implies RegistryRead, as in Azure.
func (p Policy) Has(r Right) bool {
	for _, x := range p.Rights {
		if x == r || (r == RegistryRead && x == RegistryWrite) {
			return true
		}
	}
	return false
}

// DefaultPolicies are created on first start, as an Azure hub has them.
var DefaultPolicies = []Policy{
	{Name: "iothubowner", Rights: []Right{RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect}},
	{Name: "service", Rights: []Right{ServiceConnect}},
	{Name: "device", Rights: []Right{DeviceConnect}},
	{Name: "registryRead", Rights: []Right{RegistryRead}},
	{Name: "registryReadWrite", Rights: []Right{RegistryRead, RegistryWrite}},
}

// NewKey returns a random 32-byte key in base64, as Azure generates them.
func NewKey() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the OS has no entropy: nothing sensible to do
	}
	return base64.StdEncoding.EncodeToString(b)
}

// EnsurePolicies creates the default policies that do not exist yet.
func (s *Store) EnsurePolicies(ctx context.Context) error {
	return s.write(ctx, "create policies", func(tx *sql.Tx) error {
		for _, p := range DefaultPolicies {
			if _, err := tx.Exec(`INSERT OR IGNORE INTO policies(name, primary_key, secondary_key, rights) VALUES(?, ?, ?, ?)`,
				p.Name, NewKey(), NewKey(), joinRights(p.Rights)); err != nil {
				return fmt.Errorf("create policy %s: %w", p.Name, err)
			}
		}
		return nil
	})
}

// Policy returns the named policy. Names compare case-sensitively, as Azure does.
func (s *Store) Policy(ctx context.Context, name string) (Policy, error) {
	var p Policy
	var rights string
	err := s.rd.QueryRowContext(ctx, `SELECT name, primary_key, secondary_key, rights FROM policies WHERE name = ?`, name).
		Scan(&p.Name, &p.PrimaryKey, &p.SecondaryKey, &rights)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("policy %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("read policy %q: %w", name, err)
	}
	for _, r := range strings.Split(rights, ",") {
		if r != "" {
			p.Rights = append(p.Rights, Right(r))
		}
	}
	return p, nil
}

func joinRights(rs []Right) string {
	ss := make([]string, len(rs))
	for i, r := range rs {
		ss[i] = string(r)
	}
	return strings.Join(ss, ",")
}
