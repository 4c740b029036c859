// Package rawpty opens raw pseudo-terminal pairs for the serial device
// simulators (internal/modbussim, internal/smpsim): the simulator serves
// the master side, the host under test opens the slave's path as if it
// were a UART.
package rawpty

import (
	"errors"
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Pair is an open pseudo-terminal. The slave stays open here so the master
// never sees EIO while no host has the port open.
type Pair struct {
	// Master is the simulator's side. It is non-blocking, so read
	// deadlines and Close unblock a pending Read.
	Master *os.File
	slave  *os.File
	// Path is the slave device a host opens (/dev/pts/N).
	Path string
}

// Open opens a raw (8-bit, no echo, no line editing) pseudo-terminal pair.
func Open() (*Pair, error) {
	m, sl, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pseudo-terminal: %w", err)
	}
	path := sl.Name()
	fail := func(what string, err error) (*Pair, error) {
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
	return &Pair{Master: os.NewFile(uintptr(fd), "/dev/ptmx"), slave: sl, Path: path}, nil
}

// makeRaw puts the terminal in raw 8-bit mode, like cfmakeraw(3).
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	return nil
}

// Close closes both sides.
func (p *Pair) Close() error {
	return errors.Join(p.Master.Close(), p.slave.Close())
}
