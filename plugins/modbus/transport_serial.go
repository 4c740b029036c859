package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	gb "github.com/goburrow/modbus"
	"github.com/tarm/serial"

	"github.com/drover-iot/drover/internal/portlock"
)

// serialIO is what the transport needs from a serial line; tarm/serial's
// *Port provides it. Read must return (0, io.EOF) or (0, nil) when no byte
// arrived within a short slice of time, so the transport can keep its own
// deadline.
type serialIO interface {
	io.ReadWriteCloser
	Flush() error // discard unread input and unsent output
}

// serialOpener opens the line described by b.
type serialOpener func(b *Bus) (serialIO, error)

// readSlice is the read timeout handed to the serial driver. tarm/serial
// programs it as termios VTIME, whose unit is 100 ms; a read still returns
// as soon as any byte arrives, so this only bounds how late a deadline or a
// cancellation is noticed.
const readSlice = 100 * time.Millisecond

// drainFor bounds how long garbage is drained after a failed transaction.
const drainFor = 300 * time.Millisecond

// openTarm opens a serial port with tarm/serial.
func openTarm(b *Bus) (serialIO, error) {
	cfg := &serial.Config{Name: b.Port, Baud: b.Baud, ReadTimeout: readSlice, Size: byte(b.DataBits),
		Parity: serial.ParityNone, StopBits: serial.Stop1}
	switch b.Parity {
	case ParityEven:
		cfg.Parity = serial.ParityEven
	case ParityOdd:
		cfg.Parity = serial.ParityOdd
	}
	if b.StopBits == 2 {
		cfg.StopBits = serial.Stop2
	}
	lock, err := portlock.Lock(b.Port)
	if err != nil {
		return nil, err
	}
	p, err := serial.OpenPort(cfg)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, fmt.Errorf("open serial port %s: %w", b.Port, err)
	}
	return &lockedPort{Port: p, lock: lock}, nil
}

// lockedPort is an open port and the lock that keeps other processes off it.
type lockedPort struct {
	*serial.Port
	lock *os.File // nil where ports are not locked
}

// Close closes the port, then gives up the lock.
func (p *lockedPort) Close() error {
	err := p.Port.Close()
	if p.lock != nil {
		p.lock.Close()
	}
	return err
}

// serialTransport is Drover's RTU/ASCII transporter for goburrow/modbus: it
// owns one serial port and runs one transaction on it at a time.
//
// Per transaction (Modbus over Serial Line V1.02, 2.5.1.1 and 2.5.2.1): wait
// until the line has been idle for t3.5 (RTU), flush stale input, write the
// request, then read exactly the response length, decided from the unit,
// function and byte-count bytes as they arrive (an exception is 5 bytes),
// verify the CRC (RTU) or LRC (ASCII), all before a per-request deadline.
// After a timeout or a garbled reply, late bytes are drained so they cannot
// be taken for the next reply. An i/o error closes the port; the next
// transaction reopens it.
//
// goburrow's own RTU transport sleeps a computed delay per expected byte
// before reading (about 8× the wire time at 115200 baud), never flushes and
// does not lock the port; see shared/notes/modbus.md.
type serialTransport struct {
	bus  Bus
	open serialOpener
	gap  time.Duration // t3.5 (RTU), 0 (ASCII)
	log  *slog.Logger

	sem      chan struct{} // held for a whole transaction: one owner per port
	port     serialIO      // nil when closed
	idleFrom time.Time     // when the line last went quiet
}

func newSerialTransport(b *Bus, open serialOpener, log *slog.Logger) *serialTransport {
	return &serialTransport{bus: *b, open: open, gap: b.interFrameGap(), log: log, sem: make(chan struct{}, 1)}
}

// bind returns a goburrow Transporter whose Send is bounded by ctx and by
// timeout per attempt.
func (t *serialTransport) bind(ctx context.Context, timeout time.Duration) gb.Transporter {
	return boundSerial{t: t, ctx: ctx, timeout: timeout}
}

type boundSerial struct {
	t       *serialTransport
	ctx     context.Context
	timeout time.Duration
}

// Send implements gb.Transporter.
func (b boundSerial) Send(adu []byte) ([]byte, error) { return b.t.roundTrip(b.ctx, b.timeout, adu) }

func (t *serialTransport) lock(ctx context.Context) error {
	select {
	case t.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *serialTransport) unlock() { <-t.sem }

// connect opens the port if needed. Caller holds the lock.
func (t *serialTransport) connect() error {
	if t.port != nil {
		return nil
	}
	p, err := t.open(&t.bus)
	if err != nil {
		return fmt.Errorf("%w: %w", errIO, err)
	}
	t.port = p
	t.idleFrom = time.Now()
	return nil
}

// roundTrip sends one request ADU and returns the complete response ADU.
func (t *serialTransport) roundTrip(ctx context.Context, timeout time.Duration, adu []byte) ([]byte, error) {
	if len(adu) < 2 {
		return nil, fmt.Errorf("modbus: request of %d bytes", len(adu))
	}
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.unlock()
	if err := t.connect(); err != nil {
		return nil, err
	}
	if err := sleepUntil(ctx, t.idleFrom.Add(t.gap)); err != nil {
		return nil, err
	}
	if err := t.port.Flush(); err != nil {
		t.fail(err)
		return nil, fmt.Errorf("%w: flush %s: %w", errIO, t.bus.Port, err)
	}
	if _, err := t.port.Write(adu); err != nil {
		t.fail(err)
		return nil, fmt.Errorf("%w: write %s: %w", errIO, t.bus.Port, err)
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var resp []byte
	var err error
	if t.bus.Mode == ModeASCII {
		resp, err = t.readASCII(ctx, adu, deadline)
	} else {
		resp, err = t.readRTU(ctx, adu, deadline)
	}
	t.idleFrom = time.Now()
	switch {
	case err == nil:
		return resp, nil
	case errors.Is(err, errIO):
		t.fail(err)
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrBadFrame):
		t.drain(ctx)
	}
	return nil, err
}

// readRTU reads one RTU response to req, exactly as long as its header says.
func (t *serialTransport) readRTU(ctx context.Context, req []byte, deadline time.Time) ([]byte, error) {
	var arr [rtuMaxADU]byte
	buf := arr[:0]
	need := 2
	for len(buf) < need {
		n, err := t.readSome(ctx, arr[len(buf):need], deadline, len(buf))
		if err != nil {
			return nil, err
		}
		buf = arr[:len(buf)+n]
		if n == 0 {
			continue
		}
		if need, err = responseLength(req, buf, 2); err != nil {
			return nil, err
		}
		if need > rtuMaxADU {
			return nil, fmt.Errorf("%w: reply claims %d bytes (max %d)", ErrBadFrame, need, rtuMaxADU)
		}
	}
	if err := checkCRC(buf); err != nil {
		return nil, err
	}
	return append([]byte(nil), buf...), nil
}

// readASCII reads one ASCII response: from ':' to CRLF.
func (t *serialTransport) readASCII(ctx context.Context, req []byte, deadline time.Time) ([]byte, error) {
	var arr [asciiMaxADU]byte
	buf := arr[:0]
	for {
		if len(buf) == len(arr) {
			return nil, fmt.Errorf("%w: ASCII reply longer than %d bytes", ErrBadFrame, asciiMaxADU)
		}
		n, err := t.readSome(ctx, arr[len(buf):len(buf)+1], deadline, len(buf))
		if err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		c := arr[len(buf)]
		switch {
		case len(buf) == 0 && c != ':':
			continue // noise before the start of frame
		case c == ':':
			buf = arr[:1] // a new start resets the frame (V1.02, 2.5.2.1)
			arr[0] = ':'
			continue
		}
		buf = arr[:len(buf)+1]
		if c == '\n' {
			if _, err := checkASCII(buf); err != nil {
				return nil, err
			}
			return append([]byte(nil), buf...), nil
		}
	}
}

// readSome does one read of at most len(p) bytes, mapping the serial
// driver's quiet-slice EOF to n == 0 and the deadline to ErrTimeout.
func (t *serialTransport) readSome(ctx context.Context, p []byte, deadline time.Time, got int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !time.Now().Before(deadline) {
		if got == 0 {
			return 0, fmt.Errorf("%w (no reply)", ErrTimeout)
		}
		return 0, fmt.Errorf("%w (reply cut after %d bytes)", ErrTimeout, got)
	}
	n, err := t.port.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("%w: read %s: %w", errIO, t.bus.Port, err)
	}
	return n, nil
}

// drain discards bytes that keep arriving after a failed transaction, until
// the line is quiet for one read slice or drainFor has passed.
func (t *serialTransport) drain(ctx context.Context) {
	var buf [rtuMaxADU]byte
	end := time.Now().Add(drainFor)
	for time.Now().Before(end) && ctx.Err() == nil {
		n, err := t.port.Read(buf[:])
		if err != nil && !errors.Is(err, io.EOF) {
			t.fail(err)
			return
		}
		if n == 0 {
			break
		}
	}
	_ = t.port.Flush() // best effort; a real failure shows on the next write
	t.idleFrom = time.Now()
}

// fail closes the port after an i/o error. Caller holds the lock.
func (t *serialTransport) fail(err error) {
	if t.port == nil {
		return
	}
	t.log.Warn("serial port failed; will reopen", "port", t.bus.Port, "error", err)
	_ = t.port.Close()
	t.port = nil
}

// close closes the port, waiting for a running transaction.
func (t *serialTransport) close(ctx context.Context) error {
	if err := t.lock(ctx); err != nil {
		return err
	}
	defer t.unlock()
	if t.port == nil {
		return nil
	}
	err := t.port.Close()
	t.port = nil
	if err != nil {
		return fmt.Errorf("close serial port %s: %w", t.bus.Port, err)
	}
	return nil
}
