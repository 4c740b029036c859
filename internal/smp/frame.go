package smp

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Serial framing constants [SMP transport: UART/serial].
const (
	// MaxLine is the longest line a stock Zephyr or MCUboot receiver takes:
	// 2-byte marker, base64 text and '\n' in 127 bytes (its line buffer is 128).
	MaxLine = 127
	// MinLine is the shortest usable line: marker, one base64 quantum, '\n'.
	MinLine = 7
	// DefaultMaxPacket bounds reassembly when the caller gives no bound:
	// generous for any real device, small enough that garbage cannot make a
	// reader allocate much.
	DefaultMaxPacket = 8192
	// maxTextLine bounds how much of one console text line is buffered; a
	// longer line is discarded in pieces.
	maxTextLine = 4096
)

var (
	markerStart = []byte{0x06, 0x09}
	markerCont  = []byte{0x04, 0x14}
)

// LineKind says what a received line is.
type LineKind int

// Kinds of serial lines.
const (
	LineText  LineKind = iota // console or log text sharing the UART
	LineStart                 // 0x06 0x09: first line of a frame
	LineCont                  // 0x04 0x14: continuation line
)

// KindOf classifies a line (without its '\n').
func KindOf(line []byte) LineKind {
	switch {
	case bytes.HasPrefix(line, markerStart):
		return LineStart
	case bytes.HasPrefix(line, markerCont):
		return LineCont
	}
	return LineText
}

// EncodeLines frames packet for the base64 serial transport: len16 ‖ packet ‖
// crc16, base64-encoded and cut into lines of at most lineMax bytes (marker
// and '\n' included). The cut falls on 4-character boundaries because the
// device decodes each line on its own; '=' padding can only end the last line.
func EncodeLines(packet []byte, lineMax int) ([][]byte, error) {
	if lineMax < MinLine {
		return nil, fmt.Errorf("encode smp frame: line length %d, want at least %d: %w", lineMax, MinLine, ErrMalformed)
	}
	if len(packet)+2 > 0xFFFF {
		return nil, fmt.Errorf("encode smp frame: packet of %d bytes: %w", len(packet), ErrTooLong)
	}
	frame := make([]byte, 0, len(packet)+4)
	frame = binary.BigEndian.AppendUint16(frame, uint16(len(packet)+2))
	frame = append(frame, packet...)
	frame = binary.BigEndian.AppendUint16(frame, CRC16(packet))
	text := base64.StdEncoding.EncodeToString(frame)
	per := (lineMax - 3) / 4 * 4
	lines := make([][]byte, 0, (len(text)+per-1)/per)
	for i := 0; i < len(text); i += per {
		end := min(i+per, len(text))
		marker := markerCont
		if i == 0 {
			marker = markerStart
		}
		line := make([]byte, 0, len(marker)+end-i+1)
		line = append(line, marker...)
		line = append(line, text[i:end]...)
		lines = append(lines, append(line, '\n'))
	}
	return lines, nil
}

// AppendFrame appends the whole encoded frame (all lines) to b.
func AppendFrame(b, packet []byte, lineMax int) ([]byte, error) {
	lines, err := EncodeLines(packet, lineMax)
	if err != nil {
		return b, err
	}
	for _, l := range lines {
		b = append(b, l...)
	}
	return b, nil
}

// FrameError is a frame the reader had to discard; reading may go on, and
// resyncs on the next start line.
type FrameError struct {
	Reason string
	Err    error // ErrCRC, ErrMalformed, ErrTooLong or ErrShort
}

func (e *FrameError) Error() string { return "smp frame discarded: " + e.Reason }

// Unwrap returns the class of the framing error.
func (e *FrameError) Unwrap() error { return e.Err }

func frameErr(kind error, format string, args ...any) *FrameError {
	return &FrameError{Reason: fmt.Sprintf(format, args...), Err: kind}
}

// Reassembler rebuilds packets from serial lines, one line at a time. It is
// what a receiver that sees lines (a device with a line pool, a simulator)
// uses; Decoder wraps it for byte streams. The zero value is ready, bounded by
// DefaultMaxPacket.
type Reassembler struct {
	// MaxPacket bounds the length a start line may announce (packet bytes,
	// not counting length and CRC); 0 means DefaultMaxPacket.
	MaxPacket int

	active bool
	want   int // frame bytes after the length field: packet + 2 (CRC)
	buf    []byte
}

// Reset drops a partly received frame.
func (r *Reassembler) Reset() { r.active, r.want, r.buf = false, 0, r.buf[:0] }

// InFrame reports whether a frame is partly received.
func (r *Reassembler) InFrame() bool { return r.active }

// Line feeds one line (its trailing '\n' and any '\r' may be present). It
// returns the packet when the line completes a frame whose CRC checks. A
// *FrameError means a frame was discarded (bad base64, CRC, length, a
// continuation with no start, a start while a frame was pending); the line was
// still consumed, so a start line that interrupted a frame begins a new one.
// Console text returns nothing.
func (r *Reassembler) Line(line []byte) ([]byte, error) {
	line = bytes.TrimRight(line, "\r\n")
	line = bytes.TrimLeft(line, "\r")
	var ferr error
	switch KindOf(line) {
	case LineText:
		return nil, nil
	case LineStart:
		if r.active {
			ferr = frameErr(ErrShort, "frame interrupted by a new start line after %d of %d bytes", len(r.buf), r.want)
		}
		r.Reset()
		data, err := decodeQuanta(line[2:])
		if err != nil {
			return nil, errors.Join(ferr, err)
		}
		if len(data) < 2 {
			return nil, errors.Join(ferr, frameErr(ErrShort, "start line carries %d bytes, no length", len(data)))
		}
		n := int(binary.BigEndian.Uint16(data))
		maxPkt := r.MaxPacket
		if maxPkt <= 0 {
			maxPkt = DefaultMaxPacket
		}
		if n < HeaderSize+2 || n-2 > maxPkt {
			return nil, errors.Join(ferr, frameErr(ErrTooLong, "frame length %d outside %d..%d", n, HeaderSize+2, maxPkt+2))
		}
		r.active, r.want = true, n
		r.buf = append(r.buf[:0], data[2:]...)
	case LineCont:
		if !r.active {
			return nil, frameErr(ErrMalformed, "continuation line with no frame started")
		}
		data, err := decodeQuanta(line[2:])
		if err != nil {
			r.Reset()
			return nil, err
		}
		r.buf = append(r.buf, data...)
	}
	if len(r.buf) < r.want {
		return nil, ferr
	}
	defer r.Reset()
	if len(r.buf) > r.want {
		return nil, errors.Join(ferr, frameErr(ErrMalformed, "frame carries %d bytes, length says %d", len(r.buf), r.want))
	}
	if CRC16(r.buf) != 0 {
		return nil, errors.Join(ferr, frameErr(ErrCRC, "crc mismatch over %d bytes", len(r.buf)-2))
	}
	pkt := bytes.Clone(r.buf[:r.want-2])
	return pkt, ferr
}

// decodeQuanta base64-decodes one line's text, which must be whole 4-char
// quanta (each line is decoded on its own, as the device does).
func decodeQuanta(text []byte) ([]byte, error) {
	if len(text) == 0 || len(text)%4 != 0 {
		return nil, frameErr(ErrMalformed, "line of %d base64 characters is not whole quanta", len(text))
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(out, text)
	if err != nil {
		return nil, frameErr(ErrMalformed, "bad base64: %v", err)
	}
	return out[:n], nil
}

// Decoder reads packets from a byte stream carrying the base64 transport,
// skipping console text between frames and resyncing after a bad frame.
type Decoder struct {
	r  *bufio.Reader
	re Reassembler
	// Text, when set, receives each console text line (without '\n'); the
	// slice is only valid during the call.
	Text func(line []byte)
}

// NewDecoder reads frames from r; maxPacket bounds a packet (0: DefaultMaxPacket).
func NewDecoder(r io.Reader, maxPacket int) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, maxTextLine), re: Reassembler{MaxPacket: maxPacket}}
}

// ReadPacket returns the next whole packet. A *FrameError (errors.As) means a
// frame was discarded and the caller may read on; any other error comes from
// the underlying reader.
func (d *Decoder) ReadPacket() ([]byte, error) {
	for {
		line, err := d.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than any frame line: console text, or garbage.
			// Drop it up to its end; a frame in progress is lost.
			if d.re.InFrame() {
				d.re.Reset()
				if err := d.skipLine(); err != nil {
					return nil, err
				}
				return nil, frameErr(ErrTooLong, "line longer than %d bytes inside a frame", maxTextLine)
			}
			if d.Text != nil {
				d.Text(line)
			}
			if err := d.skipLine(); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if KindOf(bytes.TrimLeft(line, "\r")) == LineText {
			if d.Text != nil {
				d.Text(bytes.TrimRight(line, "\r\n"))
			}
			continue
		}
		pkt, err := d.re.Line(line)
		if pkt != nil || err != nil {
			return pkt, err
		}
	}
}

func (d *Decoder) skipLine() error {
	for {
		_, err := d.r.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// ReadRaw reads one packet of the raw transport: the bare SMP packet,
// framed by its header's length. Nothing can resync a lost byte, so the
// caller must flush on an input timeout, as the device does.
func ReadRaw(r io.Reader, maxPacket int) ([]byte, error) {
	if maxPacket <= 0 {
		maxPacket = DefaultMaxPacket
	}
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	h, err := ParseHeader(hdr[:])
	if err != nil {
		return nil, &FrameError{Reason: err.Error(), Err: ErrMalformed}
	}
	if HeaderSize+int(h.Length) > maxPacket {
		return nil, frameErr(ErrTooLong, "raw packet of %d bytes over the bound %d", HeaderSize+int(h.Length), maxPacket)
	}
	pkt := make([]byte, HeaderSize+int(h.Length))
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(r, pkt[HeaderSize:]); err != nil {
		return nil, err
	}
	return pkt, nil
}

// MaxPacketFor returns the largest SMP packet a device with the given
// reassembly buffer (the params command's buf_size) takes: the length and
// CRC share the buffer.
func MaxPacketFor(bufSize int) int { return bufSize - 4 }
