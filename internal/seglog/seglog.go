// Package seglog is an append-only log of checksummed records kept in
// numbered segment files in one directory.
//
// It exists so a store-and-forward spill writes to disk about the bytes it
// stores and no more: a batch of records is one write(2) at the end of one
// file, and nothing is written twice. The log knows nothing about what the
// records mean; callers decide when a whole segment is no longer needed and
// Remove it.
//
// Layout: dir/%016x.seg, each starting with a 16-byte header ("DRVSEG1\n"
// and the segment number, uint64 little-endian), followed by records framed
// as uint32 LE payload length, uint32 LE CRC-32C of the payload, payload.
package seglog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// MaxRecord is the largest payload Append accepts. Scan treats a larger
// length as corruption, which bounds what a damaged length field can make it
// allocate.
const MaxRecord = 16 << 20

// DefaultSegmentBytes is the SegmentBytes used when Options leaves it zero.
const DefaultSegmentBytes = 1 << 20

// ErrClosed is returned by the methods of a Log after Close.
var ErrClosed = errors.New("seglog: log closed")

const (
	magic     = "DRVSEG1\n"
	headerLen = 16
	frameLen  = 8
	suffix    = ".seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure Open. Zero values take the defaults.
type Options struct {
	SegmentBytes int64 // Append starts a new segment once the current one holds this many bytes; default 1 MiB
	// RetireDir, when set, is where Remove moves a segment instead of
	// deleting it (created when missing; on the same file system). For
	// tests that read back everything a log ever held.
	RetireDir string
}

// Report says what Open found wrong and repaired.
type Report struct {
	TruncatedBytes int64    // torn tail cut from the newest segment (a write a crash interrupted)
	SetAside       []string // segment files with a bad header, renamed to NAME.corrupt and not used
}

// Log is an open segment log. Its methods are safe for concurrent use; one
// mutex serializes them because every operation is short file I/O.
type Log struct {
	mu       sync.Mutex
	dir      string
	segBytes int64
	retire   string   // Options.RetireDir
	segs     []uint64 // oldest first; the last one is cur
	cur      uint64
	f        *os.File // cur, open for writing
	size     int64    // bytes in cur, header included
	buf      []byte   // reused encoding buffer so Append does not allocate per batch
	dirty    bool     // bytes written to cur since the last fdatasync
	dirDirty bool     // a segment was created or removed since the last directory fsync
	closed   bool

	// Counters let tests check that Sync does nothing when nothing changed.
	fileSyncs int
	dirSyncs  int
}

// segName is the file name of segment n.
func segName(n uint64) string { return fmt.Sprintf("%016x%s", n, suffix) }

// parseSegName returns the number in a segment file name. Only the exact
// form segName produces counts, so other files in dir are left alone.
func parseSegName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, suffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 64)
	if err != nil || segName(n) != name {
		return 0, false
	}
	return n, true
}

// header returns the 16-byte header of segment n.
func header(n uint64) []byte {
	h := make([]byte, headerLen)
	copy(h, magic)
	binary.LittleEndian.PutUint64(h[len(magic):], n)
	return h
}

// Open opens the log in dir, creating dir and a first segment if needed. It
// sets aside segments with a bad header and cuts a torn tail off the newest
// segment, saying so in the Report.
func Open(dir string, opts Options) (*Log, Report, error) {
	var rep Report
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rep, fmt.Errorf("seglog: create directory %s: %w", dir, err)
	}
	l := &Log{dir: dir, segBytes: opts.SegmentBytes, retire: opts.RetireDir}
	highest, err := l.loadSegments(&rep)
	if err != nil {
		return nil, rep, err
	}
	if len(l.segs) == 0 {
		if err := l.createSegment(highest + 1); err != nil {
			return nil, rep, err
		}
	} else if err := l.openCurrent(&rep); err != nil {
		return nil, rep, err
	}
	// Renames and a new segment only last once the directory is synced;
	// do it now so Open leaves nothing pending for Sync.
	if l.dirDirty || l.dirty {
		if err := l.syncLocked(); err != nil {
			l.f.Close()
			return nil, rep, err
		}
	}
	return l, rep, nil
}

// loadSegments lists the segment files of l.dir into l.segs, setting aside
// those with a bad header. It returns the highest segment number seen, valid
// or not, so a new segment never reuses a set-aside number.
func (l *Log) loadSegments(rep *Report) (uint64, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return 0, fmt.Errorf("seglog: list directory %s: %w", l.dir, err)
	}
	var highest uint64
	for _, e := range entries {
		n, ok := parseSegName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		highest = max(highest, n)
		good, err := l.checkHeader(n)
		if err != nil {
			return 0, err
		}
		if good {
			l.segs = append(l.segs, n)
			continue
		}
		if err := l.setAside(n); err != nil {
			return 0, err
		}
		rep.SetAside = append(rep.SetAside, segName(n))
	}
	slices.Sort(l.segs)
	return highest, nil
}

// checkHeader says whether segment n starts with its own header. An error
// means the file could not be read at all, which is not corruption.
func (l *Log) checkHeader(n uint64) (bool, error) {
	name := filepath.Join(l.dir, segName(n))
	f, err := os.Open(name)
	if err != nil {
		return false, fmt.Errorf("seglog: open segment %s: %w", name, err)
	}
	defer f.Close()
	h := make([]byte, headerLen)
	k, err := f.ReadAt(h, 0)
	if k == headerLen {
		return string(h) == string(header(n)), nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("seglog: read header of segment %s: %w", name, err)
	}
	return false, nil
}

// setAside renames segment n to NAME.corrupt so it is kept for inspection
// but never read or appended to again.
func (l *Log) setAside(n uint64) error {
	name := filepath.Join(l.dir, segName(n))
	if err := os.Rename(name, name+".corrupt"); err != nil {
		return fmt.Errorf("seglog: set aside segment %s: %w", name, err)
	}
	l.dirDirty = true
	return nil
}

// openCurrent opens the newest segment for appending and cuts off what
// follows its last good record: a crash can leave a partly written batch.
func (l *Log) openCurrent(rep *Report) error {
	n := l.segs[len(l.segs)-1]
	name := filepath.Join(l.dir, segName(n))
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("seglog: open segment %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("seglog: stat segment %s: %w", name, err)
	}
	end, err := scanFile(f, fi.Size(), nil)
	if err != nil {
		f.Close()
		return fmt.Errorf("seglog: scan segment %s: %w", name, err)
	}
	if cut := fi.Size() - end; cut > 0 {
		if err := truncateAndSync(f, end); err != nil {
			f.Close()
			return fmt.Errorf("seglog: cut torn tail of segment %s: %w", name, err)
		}
		rep.TruncatedBytes = cut
	}
	l.cur, l.f, l.size = n, f, end
	return nil
}

// truncateAndSync cuts f to size and makes the cut durable, so a second
// crash cannot bring the torn bytes back.
func truncateAndSync(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// createSegment creates segment n with its header and makes it current.
// The header is not synced here: Sync (or Open) does that along with the
// directory, and rotation syncs the old segment before calling this.
func (l *Log) createSegment(n uint64) error {
	name := filepath.Join(l.dir, segName(n))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("seglog: create segment %s: %w", name, err)
	}
	if _, err := f.Write(header(n)); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("seglog: write header of segment %s: %w", name, err)
	}
	if l.f != nil {
		// The old segment was fdatasync'ed by rotate; a close error cannot
		// lose data any more, and failing the Append for it would strand
		// the new segment.
		l.f.Close()
	}
	l.segs = append(l.segs, n)
	l.cur, l.f, l.size = n, f, headerLen
	l.dirty, l.dirDirty = true, true
	return nil
}

// Segments returns the numbers of the segment files, oldest first,
// including the current one.
func (l *Log) Segments() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.segs)
}

// Current returns the segment Append writes to.
func (l *Log) Current() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// Append writes recs at the end of the current segment with one write call,
// first starting a new segment if the current one is full. It returns the
// segment the records went into. It does not sync; call Sync for that.
func (l *Log) Append(recs ...[]byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if len(recs) == 0 {
		return l.cur, nil
	}
	for i, r := range recs {
		if len(r) > MaxRecord {
			return 0, fmt.Errorf("seglog: append: record %d is %d bytes, over MaxRecord (%d)", i, len(r), MaxRecord)
		}
	}
	if l.size >= l.segBytes && l.size > headerLen {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	l.buf = encode(l.buf[:0], recs)
	return l.cur, l.write(l.buf)
}

// encode appends the framed records to buf.
func encode(buf []byte, recs [][]byte) []byte {
	for _, r := range recs {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(r)))
		buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(r, castagnoli))
		buf = append(buf, r...)
	}
	return buf
}

// write puts b at the end of the current segment. On failure it cuts the
// file back so a partial record does not stay in front of later appends.
func (l *Log) write(b []byte) error {
	n, err := l.f.WriteAt(b, l.size)
	if err == nil && n == len(b) {
		l.size += int64(n)
		l.dirty = true
		return nil
	}
	name := l.f.Name()
	if err == nil {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	if n > 0 {
		if terr := l.f.Truncate(l.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("truncate back to %d bytes: %w", l.size, terr))
		}
		l.dirty = true
	}
	return fmt.Errorf("seglog: append to segment %s: %w", name, err)
}

// rotate syncs the full current segment and starts the next one. Syncing
// here means a sealed segment never holds unsynced data, so Sync only ever
// needs to look at the current file.
func (l *Log) rotate() error {
	if err := l.fdatasync(); err != nil {
		return err
	}
	return l.createSegment(l.cur + 1)
}

// fdatasync flushes the current segment's data (and its size) if anything
// was written since the last flush.
func (l *Log) fdatasync() error {
	if !l.dirty {
		return nil
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("seglog: sync segment %s: %w", l.f.Name(), err)
	}
	l.fileSyncs++
	l.dirty = false
	return nil
}

// syncDir makes creations, renames and removals in the directory durable.
func (l *Log) syncDir() error {
	if !l.dirDirty {
		return nil
	}
	d, err := os.Open(l.dir)
	if err != nil {
		return fmt.Errorf("seglog: open directory %s for sync: %w", l.dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("seglog: sync directory %s: %w", l.dir, err)
	}
	l.dirSyncs++
	l.dirDirty = false
	return nil
}

// syncLocked is Sync with l.mu held.
func (l *Log) syncLocked() error {
	if err := l.fdatasync(); err != nil {
		return err
	}
	return l.syncDir()
}

// Sync makes everything appended so far durable: it fdatasyncs the current
// segment if it was written to and fsyncs the directory if a segment was
// created or removed since the last Sync. With nothing changed it does no
// I/O at all, so callers may call it freely.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.syncLocked()
}

// Remove deletes segment seg, which must not be the current one. The
// directory fsync is left to the next Sync so removing many segments costs
// one.
func (l *Log) Remove(seg uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	name := filepath.Join(l.dir, segName(seg))
	if seg == l.cur {
		return fmt.Errorf("seglog: remove segment %s: it is the current segment", name)
	}
	i := slices.Index(l.segs, seg)
	if i < 0 {
		return fmt.Errorf("seglog: remove segment %s: %w", name, os.ErrNotExist)
	}
	if err := l.removeFile(name); err != nil {
		return fmt.Errorf("seglog: remove segment %s: %w", name, err)
	}
	l.segs = slices.Delete(l.segs, i, i+1)
	l.dirDirty = true
	return nil
}

// removeFile deletes a segment file, or moves it into RetireDir.
func (l *Log) removeFile(name string) error {
	if l.retire == "" {
		return os.Remove(name)
	}
	if err := os.MkdirAll(l.retire, 0o700); err != nil {
		return err
	}
	return os.Rename(name, filepath.Join(l.retire, filepath.Base(name)))
}

// Close closes the current segment file. It does not sync: call Sync first
// if what was appended must survive a crash.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.closed = true
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("seglog: close segment %s: %w", l.f.Name(), err)
	}
	return nil
}
