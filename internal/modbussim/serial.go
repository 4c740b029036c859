package modbussim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/drover-iot/drover/internal/clock"
)

// Framing selects the serial-line transmission mode.
type Framing int

// Serial framings.
const (
	RTU   Framing = iota // binary, CRC-16, frames delimited by silence
	ASCII                // ':' hex … LRC CR LF
)

// String returns "rtu" or "ascii".
func (f Framing) String() string {
	if f == ASCII {
		return "ascii"
	}
	return "rtu"
}

// t35 is the inter-frame silence at baud: 3.5 character times of 11 bits,
// fixed at 1.75ms above 19200 baud. [Modbus over serial line V1.02 §2.5.1.1]
func t35(baud int) time.Duration {
	if baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(float64(time.Second) * 3.5 * 11 / float64(baud))
}

// wireTime is how long n characters of bits each take at baud.
func wireTime(n, bits, baud int) time.Duration {
	return time.Duration(float64(time.Second) * float64(n*bits) / float64(baud))
}

// ServeRTU is ServeSerial with RTU framing.
func (s *Sim) ServeRTU(ctx context.Context, rw io.ReadWriter) error {
	return s.ServeSerial(ctx, rw, RTU)
}

// ServeASCII is ServeSerial with ASCII framing.
func (s *Sim) ServeASCII(ctx context.Context, rw io.ReadWriter) error {
	return s.ServeSerial(ctx, rw, ASCII)
}

// ServeSerial is a Modbus serial-line slave on rw for every served unit
// until ctx ends (returns nil) or rw fails. Frames are found by the
// request's expected length and CRC (RTU) or by ':' and LF (ASCII); a
// partial frame is discarded after Options.FrameGap of silence (ASCII: at
// least 1s, its inter-character limit), a bad CRC drops one byte and
// resynchronises. Requests for units not served get no reply.
//
// To stop, ServeSerial unblocks the pending Read with SetReadDeadline if rw
// has it, else closes rw if it is an io.Closer; any other rw must end its
// Read by itself.
func (s *Sim) ServeSerial(ctx context.Context, rw io.ReadWriter, f Framing) error {
	var fr framer = &rtuFramer{}
	bits, gap := 11, s.opts.FrameGap
	if f == ASCII {
		fr, bits, gap = &asciiFramer{}, 10, max(gap, time.Second)
	}
	log := s.log.With("framing", f.String())

	chunks := make(chan []byte, 16)
	readErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		buf := make([]byte, 512)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				select {
				case chunks <- append([]byte(nil), buf[:n]...):
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	defer func() {
		type deadliner interface{ SetReadDeadline(time.Time) error }
		if d, ok := rw.(deadliner); ok && d.SetReadDeadline(time.Now()) == nil {
			// unblocked
		} else if c, ok := rw.(io.Closer); ok {
			_ = c.Close()
		}
		for range chunks { // wait for the reader to finish
		}
	}()

	silence := time.NewTimer(time.Hour)
	silence.Stop()
	defer silence.Stop()
	log.Info("modbus serial serving", "units", len(s.ids))
	for {
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-chunks:
			if !ok {
				err := <-readErr
				if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
					return nil
				}
				return fmt.Errorf("read modbus %s line: %w", f, err)
			}
			fr.push(b)
			for {
				adu := fr.next()
				if adu == nil {
					break
				}
				if !s.answerSerial(ctx, rw, fr, adu, bits) {
					return nil
				}
			}
			if fr.pending() {
				silence.Reset(gap)
			} else {
				silence.Stop()
			}
		case <-silence.C:
			if adu := fr.flush(); adu != nil {
				if !s.answerSerial(ctx, rw, fr, adu, bits) {
					return nil
				}
			} else {
				log.Debug("modbus serial partial frame discarded")
			}
		}
	}
}

// answerSerial dispatches one frame (address + PDU) and writes the reply,
// paced if configured. false means ctx ended while waiting.
func (s *Sim) answerSerial(ctx context.Context, rw io.Writer, fr framer, adu []byte, bits int) bool {
	if len(adu) < 2 {
		return true
	}
	r, ok := s.dispatch(adu[0], adu[1:], false)
	if !ok {
		return true
	}
	out := fr.encode(adu[0], r.pdu, r.badCRC)
	d := r.delay
	if s.opts.Pace {
		// A pty hands over the request at once; a real line takes its
		// wire time first, then the reply's, with t3.5 between.
		req := len(fr.encode(adu[0], adu[1:], false))
		d += wireTime(req+len(out), bits, s.opts.Baud) + t35(s.opts.Baud)
	}
	if !clock.Sleep(ctx, d) {
		return false
	}
	type deadliner interface{ SetWriteDeadline(time.Time) error }
	if w, ok := rw.(deadliner); ok {
		_ = w.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	if _, err := rw.Write(out); err != nil {
		s.log.Debug("modbus serial write", "error", err)
	}
	return true
}
