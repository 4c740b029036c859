//go:build unix

package portlock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Lock takes an exclusive advisory lock (flock) on a serial device for as
// long as the returned file stays open. A half-duplex RS-485 line must have
// one master, and an SMP UART one client: the transport serialises Drover's
// own transactions, and this keeps a second process out — another gateway,
// a stale plugin, or a technician's terminal program, most of which take
// the same lock — with an error that says so, instead of two masters
// garbling each other's frames. It is a separate descriptor from the port's
// own, so the serial driver's handle needs no change; locks belong to the
// open file. The error wraps ErrInUse when another process holds the lock.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open serial port %s to lock it: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("serial port %s is %w (it holds the port's lock)", path, ErrInUse)
		}
		return nil, fmt.Errorf("lock serial port %s: %w", path, err)
	}
	return f, nil
}
