//go:build !unix

package portlock

import "os"

// Lock is a no-op where flock does not exist; Windows opens COM ports
// exclusively by itself.
func Lock(string) (*os.File, error) { return nil, nil }
