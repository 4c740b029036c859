package modbussim

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ptyPair is an open pseudo-terminal: the simulator serves the master side,
// clients open path. The slave stays open here so the master never sees
// EIO while no client has the device open.
type ptyPair struct {
	master *os.File // non-blocking, so deadlines and Close unblock Read
	slave  *os.File
	path   string
}

// openPTY opens a raw (no echo, no line editing) pseudo-terminal pair.
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
	// pty.Open hands back a blocking master (it calls Fd). Duplicate it
	// into a non-blocking descriptor the runtime poller can interrupt.
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

// Close closes both sides.
func (p *ptyPair) Close() error {
	err := p.master.Close()
	if e := p.slave.Close(); err == nil {
		err = e
	}
	return err
}
