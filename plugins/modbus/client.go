package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	gb "github.com/goburrow/modbus"
)

// link is one open bus as the client sees it: for each transaction it hands
// out a packager for the unit and a transporter bound to the caller's
// context. release must be called when the transaction is over.
type link interface {
	session(ctx context.Context, unit byte, timeout time.Duration) (gb.Packager, gb.Transporter, func(), error)
	close(ctx context.Context) error
}

// serialLink runs RTU or ASCII over Drover's serial transport, keeping
// goburrow's packager (framing, CRC/LRC) per unit id.
type serialLink struct {
	tr   *serialTransport
	mode Mode

	mu        sync.Mutex
	packagers map[byte]gb.Packager
}

func newSerialLink(b *Bus, open serialOpener, log *slog.Logger) *serialLink {
	return &serialLink{tr: newSerialTransport(b, open, log), mode: b.Mode, packagers: map[byte]gb.Packager{}}
}

func (l *serialLink) session(ctx context.Context, unit byte, timeout time.Duration) (gb.Packager, gb.Transporter, func(), error) {
	l.mu.Lock()
	p, ok := l.packagers[unit]
	if !ok {
		// The handlers are used only as packagers: their own transporter
		// (and its port) is never touched.
		if l.mode == ModeASCII {
			h := gb.NewASCIIClientHandler("")
			h.SlaveId = unit
			p = h
		} else {
			h := gb.NewRTUClientHandler("")
			h.SlaveId = unit
			p = h
		}
		l.packagers[unit] = p
	}
	l.mu.Unlock()
	return p, l.tr.bind(ctx, timeout), func() {}, nil
}

func (l *serialLink) close(ctx context.Context) error { return l.tr.close(ctx) }

// tcpLink runs Modbus TCP through goburrow's TCP handler: one connection per
// bus, one transaction at a time. Each unit id has its own packager (and so
// its own transaction-id sequence); the shared handler moves the bytes.
type tcpLink struct {
	h   *gb.TCPClientHandler
	sem chan struct{}

	mu        sync.Mutex
	packagers map[byte]*gb.TCPClientHandler
}

func newTCPLink(b *Bus) *tcpLink {
	h := gb.NewTCPClientHandler(b.Address)
	h.Timeout = b.Timeout
	return &tcpLink{h: h, sem: make(chan struct{}, 1), packagers: map[byte]*gb.TCPClientHandler{}}
}

func (l *tcpLink) session(ctx context.Context, unit byte, timeout time.Duration) (gb.Packager, gb.Transporter, func(), error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, nil, ctx.Err()
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		<-l.sem
		return nil, nil, nil, context.DeadlineExceeded
	}
	// goburrow applies Timeout to dial and to each Send; the sem makes the
	// write safe (nobody else is inside Send).
	l.h.Timeout = timeout
	l.mu.Lock()
	p, ok := l.packagers[unit]
	if !ok {
		p = gb.NewTCPClientHandler("")
		p.SlaveId = unit
		l.packagers[unit] = p
	}
	l.mu.Unlock()
	return p, tcpSend{l.h}, func() { <-l.sem }, nil
}

// tcpSend maps goburrow's net errors and drops the connection after any
// failure: goburrow keeps it, and a late reply would then be read as the
// answer to every following request (shared/notes/modbus.md, B5.6).
type tcpSend struct{ h *gb.TCPClientHandler }

func (s tcpSend) Send(adu []byte) ([]byte, error) {
	resp, err := s.h.Send(adu)
	if err == nil {
		return resp, nil
	}
	_ = s.h.Close()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return nil, fmt.Errorf("%w: %w", errIO, err)
}

func (l *tcpLink) close(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.sem }()
	if err := l.h.Close(); err != nil {
		return fmt.Errorf("close modbus tcp connection: %w", err)
	}
	return nil
}

// client runs transactions for one unit on a link, with bounded retries and
// the device's pause between requests.
type client struct {
	link    link
	unit    byte
	timeout time.Duration
	retries int
	delay   time.Duration // quirk delay_between_requests
	log     *slog.Logger

	sem  chan struct{} // one transaction (with its retries) at a time
	last time.Time     // end of the previous transaction with this unit
}

func newClient(l link, unit byte, b *Bus, delay time.Duration, log *slog.Logger) *client {
	return &client{link: l, unit: unit, timeout: b.Timeout, retries: b.Retries, delay: delay, log: log,
		sem: make(chan struct{}, 1)}
}

// do runs fn with a goburrow client, retrying timeouts, garbled replies and
// busy devices up to c.retries times.
func (c *client) do(ctx context.Context, what string, fn func(gb.Client) error) error {
	return c.attempts(ctx, what, func(p gb.Packager, t gb.Transporter) error {
		return fn(gb.NewClient2(p, t))
	})
}

// raw sends one PDU (for function codes goburrow lacks, such as FC 43) and
// returns the response PDU; exceptions come back as *Exception.
func (c *client) raw(ctx context.Context, what string, req *gb.ProtocolDataUnit) (*gb.ProtocolDataUnit, error) {
	var resp *gb.ProtocolDataUnit
	err := c.attempts(ctx, what, func(p gb.Packager, t gb.Transporter) error {
		adu, err := p.Encode(req)
		if err != nil {
			return err
		}
		radu, err := t.Send(adu)
		if err != nil {
			return err
		}
		if err := p.Verify(adu, radu); err != nil {
			return fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
		r, err := p.Decode(radu)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
		if r.FunctionCode == req.FunctionCode|0x80 && len(r.Data) > 0 {
			return &Exception{Function: req.FunctionCode, Code: ExceptionCode(r.Data[0])}
		}
		if r.FunctionCode != req.FunctionCode {
			return fmt.Errorf("%w: function %d in reply to %d", ErrBadFrame, r.FunctionCode, req.FunctionCode)
		}
		resp = r
		return nil
	})
	return resp, err
}

func (c *client) attempts(ctx context.Context, what string, fn func(gb.Packager, gb.Transporter) error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()
	var err error
	for attempt := 0; attempt <= c.retries; attempt++ {
		if c.delay > 0 && !c.last.IsZero() {
			if werr := sleepUntil(ctx, c.last.Add(c.delay)); werr != nil {
				return werr
			}
		}
		err = c.once(ctx, fn)
		c.last = time.Now()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
		c.log.Debug("modbus transaction failed; retrying", "unit", c.unit, "op", what, "attempt", attempt+1, "error", err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (c *client) once(ctx context.Context, fn func(gb.Packager, gb.Transporter) error) error {
	p, t, release, err := c.link.session(ctx, c.unit, c.timeout)
	if err != nil {
		return err
	}
	defer release()
	if err := fn(p, t); err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("%w: %w", cerr, fromLibrary(err))
		}
		return fromLibrary(err)
	}
	return nil
}

// readBlock runs one planned block read and returns the data bytes:
// registers in wire order, or packed bits.
func (c *client) readBlock(ctx context.Context, r Request) ([]byte, error) {
	what := fmt.Sprintf("read %s %d..%d", r.Table, r.Address, r.End()-1)
	var data []byte
	err := c.do(ctx, what, func(cl gb.Client) error {
		var err error
		a, n := uint16(r.Address), uint16(r.Count)
		switch r.Table {
		case TableCoil:
			data, err = cl.ReadCoils(a, n)
		case TableDiscrete:
			data, err = cl.ReadDiscreteInputs(a, n)
		case TableInput:
			data, err = cl.ReadInputRegisters(a, n)
		default:
			data, err = cl.ReadHoldingRegisters(a, n)
		}
		if err == nil && len(data) != wantBytes(r) {
			err = fmt.Errorf("%w: %d data bytes, want %d", ErrBadFrame, len(data), wantBytes(r))
		}
		return err
	})
	return data, err
}

func wantBytes(r Request) int {
	if r.Table.IsBit() {
		return (r.Count + 7) / 8
	}
	return 2 * r.Count
}
