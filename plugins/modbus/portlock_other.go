//go:build !unix

package modbus

import "os"

// lockPort is a no-op where flock does not exist; Windows opens COM ports
// exclusively by itself.
func lockPort(string) (*os.File, error) { return nil, nil }
