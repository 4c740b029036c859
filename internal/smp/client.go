package smp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Client errors.
var (
	// ErrTimeout is wrapped by the error of a request the device did not
	// answer in time (after every retry).
	ErrTimeout = errors.New("smp: no response before the deadline")
	// ErrClosed is returned by requests on a closed client, and by those
	// cut short by Close.
	ErrClosed = errors.New("smp: client closed")
)

// TransportKind is how packets travel on the line.
type TransportKind string

// Serial transports [SMP transport: UART/serial].
const (
	TransportBase64 TransportKind = "base64" // console framing: 0x06 0x09 / 0x04 0x14 lines
	TransportRaw    TransportKind = "raw"    // bare packets framed by the header length
)

// VersionMode chooses the SMP version a client speaks.
type VersionMode string

// Version modes.
const (
	// VersionAuto starts with SMP v2 and falls back to v1 for good when
	// the device answers in v1 or refuses v2 (UNSUPPORTED_TOO_NEW).
	VersionAuto VersionMode = "auto"
	VersionOne  VersionMode = "1"
	VersionTwo  VersionMode = "2"
)

// Client defaults.
const (
	DefaultTimeout = 2500 * time.Millisecond // per request, as smpclient
	// DefaultEraseTimeout bounds the first upload chunk, which the device
	// answers only after erasing the slot (smpclient: 40 s).
	DefaultEraseTimeout = 40 * time.Second
	// DefaultBufSize is the reassembly buffer assumed when the device does
	// not answer the params command: Zephyr's MCUMGR_TRANSPORT_NETBUF_SIZE.
	DefaultBufSize = 384
	// rawFlushAfter is how long a partial raw packet may stall before it
	// is dropped (the device side does the same with its input timeout).
	rawFlushAfter = 100 * time.Millisecond
	// quietBackoff spaces reads of a port whose reads return at once with
	// nothing, so a dead line cannot make the reader spin.
	quietBackoff = 10 * time.Millisecond
	// corruptGrace is how long a request waits for a good answer after a
	// discarded frame before it is sent again (plus the answer's wire time).
	corruptGrace = 50 * time.Millisecond
)

// Pacing values (ClientOptions.Pacing).
const (
	PacingAuto time.Duration = 0  // continuation lines no faster than the wire, plus two character times
	PacingNone time.Duration = -1 // each frame written at once
)

// ClientOptions configure a Client. The zero value speaks auto-versioned
// base64 SMP with default timeouts and 127-byte lines, paced for a wire
// whose character time is CharTime.
type ClientOptions struct {
	Transport    TransportKind // default base64
	Version      VersionMode   // default auto
	Timeout      time.Duration // per request attempt; default DefaultTimeout
	EraseTimeout time.Duration // first upload chunk; default DefaultEraseTimeout
	Retries      int           // extra attempts after a lost or corrupt answer (idempotent requests)
	LineLength   int           // base64 line length, marker and '\n' included; default MaxLine
	// CharTime is the wire time of one character (start, data, parity and
	// stop bits at the baud rate); it paces lines and stretches timeouts
	// by the wire time of what is sent and received.
	CharTime time.Duration
	// Pacing is the idle time before each continuation line on top of the
	// previous line's wire time, so a device with a 2-line receive pool
	// never has a third line arrive while two wait to be decoded.
	// PacingAuto (0) is two character times at the bus baud rate; PacingNone
	// writes a frame at once (for devices with a large line pool).
	Pacing time.Duration
	// MaxPacket bounds a received packet; default DefaultMaxPacket.
	MaxPacket int
	Log       *slog.Logger // console text at debug, discarded frames; default discard
}

// Client is an SMP client on one serial port. It owns the port and one
// reader goroutine, which decodes every frame on the line (console text is
// logged and skipped) and hands responses to the waiting request by
// sequence number. Requests are stop-and-wait, one at a time, as SMP
// servers on a UART handle them. A Client is safe for concurrent use.
type Client struct {
	port io.ReadWriteCloser
	opts ClientOptions
	log  *slog.Logger

	sem  chan struct{} // one request on the line at a time
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu       sync.Mutex
	seq      uint8
	pending  map[uint8]chan Packet
	corrupt  chan struct{} // a frame was discarded while a request waited
	version  uint8
	bufSize  int // 0 until learned
	readErr  error
	closed   bool
	stats    Stats
	closeErr error
}

// Stats count what the client saw on the line.
type Stats struct {
	Requests  int // requests sent, retries included
	Retries   int // requests sent again after a lost or corrupt answer
	Discarded int // frames discarded (CRC, base64, length)
	Stale     int // answers nobody waited for (late, or to a retried request)
	TextLines int // console text lines skipped
}

// NewClient starts a client on port. Close stops its reader and closes
// the port.
func NewClient(port io.ReadWriteCloser, opts ClientOptions) *Client {
	if opts.Transport == "" {
		opts.Transport = TransportBase64
	}
	if opts.Version == "" {
		opts.Version = VersionAuto
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.EraseTimeout <= 0 {
		opts.EraseTimeout = DefaultEraseTimeout
	}
	if opts.LineLength == 0 {
		opts.LineLength = MaxLine
	}
	if opts.MaxPacket <= 0 {
		opts.MaxPacket = DefaultMaxPacket
	}
	if opts.Retries < 0 {
		opts.Retries = 0
	}
	c := &Client{port: port, opts: opts, log: opts.Log, sem: make(chan struct{}, 1), done: make(chan struct{}),
		pending: map[uint8]chan Packet{}, corrupt: make(chan struct{}, 1)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.version = Version2
	if opts.Version == VersionOne {
		c.version = Version1
	}
	c.wg.Add(1)
	go c.readLoop()
	return c
}

// Close stops the reader, fails waiting requests with ErrClosed and closes
// the port. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return c.closeErr
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	err := c.port.Close()
	c.wg.Wait()
	c.mu.Lock()
	c.closeErr = err
	c.mu.Unlock()
	return err
}

// Version returns the SMP version the client now speaks (Version1 after a
// fallback).
func (c *Client) Version() uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Stats returns what the client has counted so far.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Err returns why the reader stopped (nil while it runs).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// --- reader ---

// quietReader turns the serial driver's "nothing arrived within the read
// timeout" — (0, io.EOF) from tarm/serial on Linux, or (0, nil) — into
// another read, until the client closes.
type quietReader struct {
	r    io.Reader
	done <-chan struct{}
}

func (q quietReader) Read(p []byte) (int, error) {
	for {
		start := time.Now()
		n, err := q.r.Read(p)
		if n > 0 {
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		select {
		case <-q.done:
			return 0, ErrClosed
		default:
		}
		if time.Since(start) < quietBackoff/2 {
			// A read that returns at once with nothing: wait a little.
			t := time.NewTimer(quietBackoff)
			select {
			case <-q.done:
				t.Stop()
				return 0, ErrClosed
			case <-t.C:
			}
		}
	}
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	var err error
	if c.opts.Transport == TransportRaw {
		err = c.readRaw()
	} else {
		err = c.readBase64()
	}
	c.mu.Lock()
	if c.closed {
		err = ErrClosed
	}
	c.readErr = err
	pending := c.pending
	c.pending = map[uint8]chan Packet{}
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	if !errors.Is(err, ErrClosed) {
		c.log.Warn("smp reader stopped", "error", err)
	}
}

func (c *Client) readBase64() error {
	dec := NewDecoder(quietReader{r: c.port, done: c.done}, c.opts.MaxPacket)
	dec.Text = func(line []byte) {
		c.mu.Lock()
		c.stats.TextLines++
		c.mu.Unlock()
		if len(bytes.TrimSpace(line)) > 0 {
			c.log.Debug("console", "text", string(line))
		}
	}
	for {
		pkt, err := dec.ReadPacket()
		var fe *FrameError
		switch {
		case errors.As(err, &fe):
			c.discarded(fe)
			if pkt == nil {
				continue
			}
		case err != nil:
			return err
		}
		c.deliver(pkt)
	}
}

// readRaw frames raw packets by their header. A packet that stalls for
// rawFlushAfter, or a header no device sends, empties the buffer: nothing
// else can resync a raw stream.
func (c *Client) readRaw() error {
	buf := make([]byte, 0, 512)
	chunk := make([]byte, 512)
	last := time.Now()
	for {
		n, err := c.port.Read(chunk)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case <-c.done:
			return ErrClosed
		default:
		}
		now := time.Now()
		if n == 0 {
			if len(buf) > 0 && now.Sub(last) >= rawFlushAfter {
				c.discarded(frameErr(ErrShort, "raw packet stalled after %d bytes", len(buf)))
				buf = buf[:0]
			}
			if now.Sub(last) < quietBackoff/2 {
				t := time.NewTimer(quietBackoff)
				select {
				case <-c.done:
					t.Stop()
					return ErrClosed
				case <-t.C:
				}
			}
			continue
		}
		last = now
		buf = append(buf, chunk[:n]...)
		for len(buf) >= HeaderSize {
			h, herr := ParseHeader(buf)
			size := HeaderSize + int(h.Length)
			if herr != nil || !h.Op.IsResponse() || size > c.opts.MaxPacket {
				c.discarded(frameErr(ErrMalformed, "raw stream out of step (header % x)", buf[:HeaderSize]))
				buf = buf[:0]
				break
			}
			if len(buf) < size {
				break
			}
			c.deliver(bytes.Clone(buf[:size]))
			buf = append(buf[:0], buf[size:]...)
		}
	}
}

func (c *Client) discarded(fe *FrameError) {
	c.mu.Lock()
	c.stats.Discarded++
	waiting := len(c.pending) > 0
	c.mu.Unlock()
	c.log.Debug("smp frame discarded", "error", fe)
	if waiting {
		select {
		case c.corrupt <- struct{}{}:
		default:
		}
	}
}

func (c *Client) deliver(raw []byte) {
	pkt, err := ParsePacket(raw)
	if err != nil {
		c.discarded(&FrameError{Reason: err.Error(), Err: ErrMalformed})
		return
	}
	if !pkt.Op.IsResponse() {
		c.log.Debug("smp request from the device ignored", "group", pkt.Group.String(), "id", pkt.ID)
		return
	}
	c.mu.Lock()
	ch, ok := c.pending[pkt.Seq]
	if ok {
		delete(c.pending, pkt.Seq)
	} else {
		c.stats.Stale++
	}
	c.mu.Unlock()
	if !ok {
		c.log.Debug("smp answer nobody waits for", "seq", pkt.Seq, "group", pkt.Group.String(), "id", pkt.ID)
		return
	}
	ch <- pkt // buffered
}

// --- requests ---

// Request is one SMP command.
type Request struct {
	Op    Op // OpRead or OpWrite
	Group Group
	ID    uint8
	Body  any // encoded as CBOR; nil sends an empty map
	// Timeout overrides the client's per-attempt timeout (the first
	// upload chunk waits for an erase).
	Timeout time.Duration
	// NoRetry marks a request that must not be sent twice (reset).
	NoRetry bool
}

func (r Request) name() string { return fmt.Sprintf("smp %s/%d %s", r.Group, r.ID, r.Op) }

var emptyMap = []byte{0xa0}

// Do sends req and decodes the answer into rsp (which may be nil). An error
// answer comes back as *Error (either form); a request the device never
// answered wraps ErrTimeout. A lost or corrupt answer is retried up to
// Retries times (unless req.NoRetry) with a new sequence number; in version
// auto, a device that refuses v2 or answers in v1 is spoken to in v1 from
// then on, and the refused request is sent again at once.
func (c *Client) Do(ctx context.Context, req Request, rsp any) error {
	body := emptyMap
	if req.Body != nil {
		var err error
		if body, err = Marshal(req.Body); err != nil {
			return fmt.Errorf("%s: %w", req.name(), err)
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", req.name(), ctx.Err())
	case <-c.done:
		return fmt.Errorf("%s: %w", req.name(), ErrClosed)
	}
	defer func() { <-c.sem }()
	pkt, err := c.exchange(ctx, req, body)
	if err != nil {
		return fmt.Errorf("%s: %w", req.name(), err)
	}
	if err := DecodeResponse(pkt.Body, rsp); err != nil {
		return fmt.Errorf("%s: %w", req.name(), err)
	}
	return nil
}

// exchange sends body and returns the answer packet; it owns the line.
func (c *Client) exchange(ctx context.Context, req Request, body []byte) (Packet, error) {
	retries := c.opts.Retries
	if req.NoRetry {
		retries = 0
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.opts.Timeout
	}
	fellBack := false
	for attempt := 0; ; attempt++ {
		pkt, err := c.attempt(ctx, req, body, timeout, attempt > 0, attempt < retries)
		if err == nil {
			if c.opts.Version == VersionAuto && c.Version() == Version2 {
				if !fellBack && IsVersionRefused(ResponseError(pkt.Body)) {
					c.fallBack("device refused v2")
					fellBack = true
					attempt-- // not a retry: the same request in v1
					continue
				}
				if pkt.Version == Version1 {
					c.fallBack("device answered in v1")
				}
			}
			return pkt, nil
		}
		if !errors.Is(err, errLost) {
			return Packet{}, err
		}
		if attempt >= retries {
			return Packet{}, fmt.Errorf("%w: %d attempts (last: %v)", ErrTimeout, attempt+1, err)
		}
		c.log.Debug("smp answer lost, retrying", "group", req.Group.String(), "id", req.ID, "attempt", attempt+1, "why", err)
	}
}

func (c *Client) fallBack(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != Version1 {
		c.version = Version1
		c.log.Info("speaking smp v1", "why", why)
	}
}

// errLost means an attempt got no usable answer: none in time, or a
// corrupt one.
var errLost = errors.New("answer lost")

// attempt sends the request once and waits for its answer. When another
// attempt may follow (canRetry), a discarded frame cuts the wait short: the
// answer was most likely that frame, so the wait only allows for a good one
// still on its way before the request is sent again.
func (c *Client) attempt(ctx context.Context, req Request, body []byte, timeout time.Duration, retry, canRetry bool) (Packet, error) {
	c.mu.Lock()
	if c.closed || c.readErr != nil {
		err := c.readErr
		c.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return Packet{}, err
	}
	c.seq++
	seq := c.seq
	h := Header{Op: req.Op, Version: c.version, Group: req.Group, Seq: seq, ID: req.ID}
	ch := make(chan Packet, 1)
	c.pending[seq] = ch
	c.stats.Requests++
	if retry {
		c.stats.Retries++
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, seq)
		c.mu.Unlock()
	}()
	select { // forget a corruption seen before this attempt
	case <-c.corrupt:
	default:
	}
	raw, err := Packet{Header: h, Body: body}.Marshal()
	if err != nil {
		return Packet{}, err
	}
	sent, err := c.write(ctx, raw)
	if err != nil {
		return Packet{}, err
	}
	// The answer may be as long as the device's buffer: allow its wire time.
	answerWire := c.wireTime(c.encodedLen(c.maxAnswer()))
	wait := timeout + answerWire + c.wireTime(sent)/8
	t := time.NewTimer(wait)
	defer t.Stop()
	end := time.Now().Add(wait)
	why := "none within " + wait.Round(time.Millisecond).String()
	for {
		select {
		case pkt, ok := <-ch:
			if !ok {
				return Packet{}, c.stopped()
			}
			if pkt.Group != req.Group || pkt.ID != req.ID || pkt.Op != req.Op.Response() {
				// Same sequence number, other command: a stale answer from
				// 256 requests ago. Keep waiting for ours.
				c.log.Debug("smp answer for another command", "seq", seq, "group", pkt.Group.String(), "id", pkt.ID)
				c.mu.Lock()
				c.pending[seq] = ch
				c.stats.Stale++
				c.mu.Unlock()
				continue
			}
			return pkt, nil
		case <-c.corrupt:
			if grace := corruptGrace + answerWire; canRetry && time.Until(end) > grace {
				t.Reset(grace)
				end = time.Now().Add(grace)
				why = "corrupt answer"
			}
		case <-t.C:
			return Packet{}, fmt.Errorf("%w: %s", errLost, why)
		case <-ctx.Done():
			return Packet{}, ctx.Err()
		case <-c.done:
			return Packet{}, ErrClosed
		}
	}
}

func (c *Client) stopped() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.readErr == nil {
		return ErrClosed
	}
	return fmt.Errorf("serial reader stopped: %w", c.readErr)
}

func (c *Client) maxAnswer() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bufSize > 0 {
		return c.bufSize
	}
	return DefaultBufSize
}

// encodedLen is the wire size of a packet of n bytes.
func (c *Client) encodedLen(n int) int {
	if c.opts.Transport == TransportRaw {
		return n
	}
	b64 := (n + 4 + 2) / 3 * 4
	per := (c.opts.LineLength - 3) / 4 * 4
	lines := (b64 + per - 1) / per
	return b64 + 3*lines
}

func (c *Client) wireTime(n int) time.Duration { return time.Duration(n) * c.opts.CharTime }

// write puts one packet on the line: at once for the raw transport, line by
// line for base64, each continuation line no earlier than the previous
// ones take on the wire plus the pacing gap. Deadlines are counted from the
// first line, so a timer that fires late does not slow the rest. It returns
// the bytes written.
func (c *Client) write(ctx context.Context, pkt []byte) (int, error) {
	if c.opts.Transport == TransportRaw {
		if _, err := c.port.Write(pkt); err != nil {
			return 0, fmt.Errorf("write: %w", err)
		}
		return len(pkt), nil
	}
	lines, err := EncodeLines(pkt, c.opts.LineLength)
	if err != nil {
		return 0, err
	}
	if c.opts.Pacing == PacingNone || len(lines) == 1 {
		buf := make([]byte, 0, len(lines)*c.opts.LineLength)
		for _, l := range lines {
			buf = append(buf, l...)
		}
		if _, err := c.port.Write(buf); err != nil {
			return 0, fmt.Errorf("write: %w", err)
		}
		return len(buf), nil
	}
	start := time.Now()
	var at time.Duration // offset of the next line from start
	n := 0
	for i, l := range lines {
		if i > 0 {
			if err := waitUntil(ctx, c.done, start.Add(at)); err != nil {
				return n, err
			}
		}
		if _, err := c.port.Write(l); err != nil {
			return n, fmt.Errorf("write: %w", err)
		}
		n += len(l)
		lt := c.wireTime(len(l))
		gap := c.opts.Pacing
		if gap == PacingAuto {
			gap = 2 * c.opts.CharTime
		}
		at += lt + gap
	}
	return n, nil
}

// waitUntil waits for t, ctx or done, on a timer.
func waitUntil(ctx context.Context, done <-chan struct{}, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return ErrClosed
	}
}
