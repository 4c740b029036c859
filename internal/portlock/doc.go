// Package portlock keeps a serial port to one owner across processes: an
// exclusive advisory lock (flock) on the device, taken by every Drover
// plugin that opens a port (Modbus RTU/ASCII, SMP serial) and by most
// terminal programs a technician might leave running.
package portlock

import "errors"

// ErrInUse is wrapped by Lock's error when another process holds the port.
var ErrInUse = errors.New("in use by another process")
