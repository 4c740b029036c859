package seglog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// scanBuffer is the read buffer of Scan: large enough that reading a
// segment costs few syscalls, small enough to not matter on a gateway.
const scanBuffer = 64 << 10

// Scan calls fn with each record of segment seg, in order. The slice passed
// to fn is only valid during the call. At the first record that is cut
// short, too long or fails its checksum Scan stops and returns in bad the
// bytes from there to the end of the file: nothing after a bad record can be
// trusted, since its length may be what is wrong. The error is an I/O error
// or fn's error, wrapped with the segment's file name.
func (l *Log) Scan(seg uint64, fn func(rec []byte) error) (bad int64, err error) {
	f, limit, err := l.openForScan(seg)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	end, err := scanFile(f, limit, fn)
	if err != nil {
		return 0, fmt.Errorf("scan segment %s: %w", segName(seg), err)
	}
	return limit - end, nil
}

// openForScan opens segment seg for reading and returns how many bytes of
// it to read. It holds the lock only this long, so fn may call into the
// Log; the open file stays readable even if the segment is removed
// meanwhile. For the current segment the limit is what Append has written,
// so a scan never sees half of a concurrent write.
func (l *Log) openForScan(seg uint64) (*os.File, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, 0, ErrClosed
	}
	name := segName(seg)
	if !slices.Contains(l.segs, seg) {
		return nil, 0, fmt.Errorf("scan segment %s: no such segment in the log: %w", name, os.ErrNotExist)
	}
	f, err := os.Open(filepath.Join(l.dir, name))
	if err != nil {
		return nil, 0, fmt.Errorf("scan segment %s: %w", name, err)
	}
	if seg == l.cur {
		return f, l.size, nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("scan segment %s: %w", name, err)
	}
	return f, fi.Size(), nil
}

// scanFile reads the records of the first limit bytes of f, calling fn (if
// not nil) with each, and returns the offset just after the last good one.
// An error is an I/O error or fn's; a bad record is not an error.
func scanFile(f *os.File, limit int64, fn func([]byte) error) (int64, error) {
	if limit < headerLen {
		return 0, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, headerLen, limit-headerLen), scanBuffer)
	var frame [frameLen]byte
	var payload []byte
	off := int64(headerLen)
	for {
		if _, err := io.ReadFull(r, frame[:]); err != nil {
			return off, ignoreEOF(err)
		}
		n := binary.LittleEndian.Uint32(frame[:4])
		// Checking the length against what is left before allocating keeps
		// a damaged length from costing a 16 MiB buffer.
		if n > MaxRecord || int64(n) > limit-off-frameLen {
			return off, nil
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return off, ignoreEOF(err)
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(frame[4:]) {
			return off, nil
		}
		if fn != nil {
			if err := fn(payload); err != nil {
				return off, err
			}
		}
		off += frameLen + int64(n)
	}
}

// ignoreEOF turns the end of the data into "no error": a record cut short
// is reported through the byte count, not as a failure.
func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// ScanFile reads the segment file at path without opening a Log (nothing is
// repaired or written): for tools and tests that inspect a log, or retired
// segments. It checks the header and then works as Scan.
func ScanFile(path string, fn func(rec []byte) error) (bad int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("scan segment file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("scan segment file: %w", err)
	}
	var h [headerLen]byte
	if _, err := f.ReadAt(h[:], 0); err != nil || string(h[:len(magic)]) != magic {
		return 0, fmt.Errorf("scan segment file %s: not a segment (bad header)", path)
	}
	end, err := scanFile(f, fi.Size(), fn)
	if err != nil {
		return 0, fmt.Errorf("scan segment file %s: %w", path, err)
	}
	return fi.Size() - end, nil
}
