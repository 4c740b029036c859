package modbussim

import (
	"bytes"
	"encoding/hex"
)

// framer cuts a serial byte stream into request frames. Pure: no I/O.
type framer interface {
	// push appends received bytes.
	push(b []byte)
	// next returns the next complete, checked frame as address + PDU, or
	// nil if more bytes (or a silence) are needed.
	next() []byte
	// flush is called after a silence: it returns a frame whose length
	// could only be known by that silence, or nil, and empties the buffer.
	flush() []byte
	// pending reports whether bytes of an unfinished frame are buffered.
	pending() bool
	// encode builds the reply frame, with a corrupted check if bad.
	encode(unit byte, pdu []byte, bad bool) []byte
}

// maxRTUFrame is the largest RTU ADU. [serial line V1.02 §2.5.1]
const maxRTUFrame = 256

// rtuRequestLen returns the full ADU length of the request starting at b:
// >0 the length, 0 more bytes needed to tell, -1 not knowable from the
// bytes (unknown function code: the frame ends at the next silence).
func rtuRequestLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	need := func(i, base int) int {
		if len(b) <= i {
			return 0
		}
		return base + int(b[i])
	}
	switch b[1] {
	case 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08:
		return 8
	case 0x07, 0x0B, 0x0C, 0x11:
		return 4
	case 0x0F, 0x10:
		return need(6, 9)
	case 0x14, 0x15:
		return need(2, 5)
	case 0x16:
		return 10
	case 0x17:
		return need(10, 13)
	case 0x18:
		return 6
	case 0x2B:
		if len(b) < 3 {
			return 0
		}
		if b[2] == meiReadDeviceID {
			return 7
		}
	}
	return -1
}

// rtuFramer frames Modbus RTU by expected request length plus CRC, as
// libmodbus and most slaves on Linux do; user space cannot time t1.5/t3.5.
type rtuFramer struct {
	buf      []byte
	badFrame int  // bytes dropped for a bad CRC or impossible length
	resync   bool // dropping bytes after garbage until a frame checks out
}

func (r *rtuFramer) push(b []byte) { r.buf = append(r.buf, b...) }

func (r *rtuFramer) pending() bool { return len(r.buf) > 0 }

func (r *rtuFramer) next() []byte {
	for len(r.buf) >= 4 {
		n := rtuRequestLen(r.buf)
		switch {
		case n == -1 && r.resync:
			// Inside garbage an unknown function code is more garbage;
			// waiting for a silence would swallow the frame behind it.
			r.drop()
			continue
		case n == 0 || n == -1:
			return nil
		case n > maxRTUFrame:
			r.drop()
			continue
		case len(r.buf) < n:
			return nil
		}
		if crcOK(r.buf[:n]) {
			f := append([]byte(nil), r.buf[:n-2]...)
			r.buf = append(r.buf[:0], r.buf[n:]...)
			r.resync = false
			return f
		}
		r.drop()
	}
	return nil
}

// drop discards one byte to resynchronise after garbage.
func (r *rtuFramer) drop() {
	r.badFrame++
	r.resync = true
	r.buf = append(r.buf[:0], r.buf[1:]...)
}

func (r *rtuFramer) flush() []byte {
	defer func() { r.buf, r.resync = r.buf[:0], false }()
	if n := len(r.buf); n >= 4 && n <= maxRTUFrame && rtuRequestLen(r.buf) == -1 && crcOK(r.buf) {
		return append([]byte(nil), r.buf[:n-2]...)
	}
	return nil
}

func (r *rtuFramer) encode(unit byte, pdu []byte, bad bool) []byte {
	f := appendCRC(append([]byte{unit}, pdu...))
	if bad {
		f[len(f)-1] ^= 0xFF
	}
	return f
}

// asciiFramer frames Modbus ASCII: ':' starts a frame (even inside one),
// CR LF ends it, the body is hex with an LRC. [serial line V1.02 §2.5.2]
type asciiFramer struct {
	buf []byte
}

// maxASCIIFrame bounds a frame: ':' + 2×(1+253+1) hex + CR LF.
const maxASCIIFrame = 1 + 2*255 + 2

func (a *asciiFramer) push(b []byte) { a.buf = append(a.buf, b...) }

func (a *asciiFramer) pending() bool { return len(a.buf) > 0 }

func (a *asciiFramer) next() []byte {
	for {
		start := bytes.IndexByte(a.buf, ':')
		if start < 0 {
			a.buf = a.buf[:0]
			return nil
		}
		a.buf = append(a.buf[:0], a.buf[start:]...)
		end := bytes.IndexByte(a.buf, '\n')
		if restart := bytes.IndexByte(a.buf[1:], ':'); restart >= 0 && (end < 0 || restart+1 < end) {
			a.buf = append(a.buf[:0], a.buf[restart+1:]...) // a new ':' abandons the frame
			continue
		}
		if end < 0 {
			if len(a.buf) > maxASCIIFrame {
				a.buf = a.buf[:0]
			}
			return nil
		}
		line := bytes.TrimRight(a.buf[1:end], "\r")
		a.buf = append(a.buf[:0], a.buf[end+1:]...)
		data := make([]byte, hex.DecodedLen(len(line)))
		if _, err := hex.Decode(data, line); err != nil || len(data) < 3 || LRC(data[:len(data)-1]) != data[len(data)-1] {
			continue
		}
		return data[:len(data)-1]
	}
}

func (a *asciiFramer) flush() []byte {
	a.buf = a.buf[:0]
	return nil
}

func (a *asciiFramer) encode(unit byte, pdu []byte, bad bool) []byte {
	body := append([]byte{unit}, pdu...)
	lrc := LRC(body)
	if bad {
		lrc++
	}
	body = append(body, lrc)
	out := make([]byte, 0, 3+2*len(body))
	out = append(out, ':')
	out = append(out, bytes.ToUpper([]byte(hex.EncodeToString(body)))...)
	return append(out, '\r', '\n')
}
