package smpsim

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ptyPair is an open pseudo-terminal: the device serves the master side,
// the host opens path. The slave stays open here so the master never sees
// EIO while no host has the port open. (The same few lines as
// internal/modbussim's; each simulator keeps its own to stay independent.)
type ptyPair struct {
	master *os.File // non-blocking, so deadlines and Close unblock Read
	slave  *os.File
	path   string
}

func openPTY() (*ptyPair, error) {
	m, sl, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pseudo-terminal: %w", err)
	}
	path := sl.Name()
	fail := func(what string, err error) (*ptyPair, error) {
		_ = m.Close()
		_ = sl.Close()
		return nil, fmt.Errorf("%s of pseudo-terminal %s: %w", what, path, err)
	}
	if err := makeRaw(int(sl.Fd())); err != nil {
		return fail("set raw mode", err)
	}
	fd, err := unix.Dup(int(m.Fd()))
	if err != nil {
		return fail("dup master", err)
	}
	_ = m.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		_ = sl.Close()
		return nil, fmt.Errorf("set non-blocking master of pseudo-terminal %s: %w", path, err)
	}
	return &ptyPair{master: os.NewFile(uintptr(fd), "/dev/ptmx"), slave: sl, path: path}, nil
}

// makeRaw puts the terminal in raw 8-bit mode, like cfmakeraw(3).
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

func (p *ptyPair) Close() error {
	return errors.Join(p.master.Close(), p.slave.Close())
}

// OpenPTY opens the pseudo-terminal the device will serve and returns the
// path a host opens (/dev/pts/N). Run serves it.
func (d *Device) OpenPTY() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pty != nil {
		return d.pty.path, nil
	}
	p, err := openPTY()
	if err != nil {
		return "", fmt.Errorf("smpsim: %w", err)
	}
	d.pty = p
	return p.path, nil
}

// Run serves the pseudo-terminal of OpenPTY until ctx ends, then closes it.
func (d *Device) Run(ctx context.Context) error {
	d.mu.Lock()
	p := d.pty
	d.mu.Unlock()
	if p == nil {
		return errors.New("smpsim: Run before OpenPTY")
	}
	defer d.Close()
	return d.Serve(ctx, p.master)
}

// Close releases the pseudo-terminal; Run does it when it returns.
func (d *Device) Close() error {
	d.mu.Lock()
	p := d.pty
	d.pty = nil
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Close()
}
