package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Source is where an image is downloaded from.
type Source struct {
	// URL is an https:// URL of the image bytes; the server should support
	// Range requests (RFC 9110 §14) for resumption.
	URL string
	// Authorize, when set, adds credentials to each request (a fresh SAS
	// token per attempt, for instance).
	Authorize func(*http.Request) error
}

// Downloader fetches images with resumption and verification. The zero value
// is usable: http.DefaultClient, 5 attempts without progress, backoff from 1 s
// doubling up to 30 s.
type Downloader struct {
	Client *http.Client
	// Attempts bounds consecutive attempts that bring no new byte; an attempt
	// that makes progress resets the count. Default 5.
	Attempts int
	// Backoff is the wait before attempt n+1 after n failed ones (n ≥ 1).
	Backoff func(n int) time.Duration
	// Progress, when set, is called after each chunk written with the bytes
	// now in the file and the image size.
	Progress func(done, total int64)
	Logger   *slog.Logger
}

// DefaultBackoff waits 1 s, 2 s, 4 s … up to 30 s.
func DefaultBackoff(n int) time.Duration {
	d := time.Second << min(n-1, 5)
	return min(d, 30*time.Second)
}

// permanent marks errors that another attempt cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Download makes path hold the image want describes, fetched from src. A
// partial file already at path is resumed with a Range request (no
// If-Range: a changed entity is caught by the digest check, and servers
// without an ETag would never resume); a server answering 200 instead of 206
// restarts it. Connection cuts and 5xx answers
// are retried. When the file is complete, its SHA-256 (computed over exactly
// the bytes in the file, prefix included) is compared with want.SHA256; on a
// mismatch or a size mismatch the file is deleted and the error wraps
// ErrDigestMismatch or ErrSizeMismatch. Other failures leave the partial file
// for a later call to resume and wrap ErrTransfer. The file is synced before
// Download returns nil.
func (d *Downloader) Download(ctx context.Context, src Source, want File, path string) error {
	if !ValidDigest(want.SHA256) || want.Size <= 0 {
		return fmt.Errorf("download %s: %w: want size %d and sha256 %q", src.URL, ErrMalformed, want.Size, want.SHA256)
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("download %s: open partial file: %w", src.URL, err)
	}
	defer f.Close()
	w := &hashingFile{f: f, h: sha256.New()}
	if err := w.load(want.Size); err != nil {
		return fmt.Errorf("download %s: read partial file %s: %w", src.URL, path, err)
	}
	if w.off > 0 {
		log.Debug("resuming download", "url", src.URL, "offset", w.off, "size", want.Size)
	}
	attempts := d.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	backoff := d.Backoff
	if backoff == nil {
		backoff = DefaultBackoff
	}
	fails := 0
	for w.off < want.Size {
		before := w.off
		err := d.attempt(ctx, src, want, w)
		if err == nil {
			continue
		}
		var p permanent
		if errors.As(err, &p) || ctx.Err() != nil {
			if errors.Is(err, ErrSizeMismatch) {
				f.Close()
				_ = os.Remove(path)
			}
			return fmt.Errorf("download %s: %w", src.URL, err)
		}
		if w.off > before {
			fails = 0
		}
		fails++
		log.Debug("download attempt failed", "url", src.URL, "offset", w.off, "attempt", fails, "error", err)
		if fails >= attempts {
			return fmt.Errorf("download %s: %w after %d attempts without progress: %w", src.URL, ErrTransfer, fails, err)
		}
		t := time.NewTimer(backoff(fails))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("download %s: %w", src.URL, ctx.Err())
		case <-t.C:
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("download %s: sync %s: %w", src.URL, path, err)
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); got != want.SHA256 {
		f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("download %s: %w: got sha256 %s, manifest says %s", src.URL, ErrDigestMismatch, got, want.SHA256)
	}
	return nil
}

// attempt is one HTTP request, continuing the file from w.off.
func (d *Downloader) attempt(ctx context.Context, src Source, want File, w *hashingFile) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return permanent{fmt.Errorf("%w: build request: %w", ErrTransfer, err)}
	}
	req.Header.Set("Accept-Encoding", "identity") // byte ranges of the image itself
	if w.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(w.off, 10)+"-")
	}
	if src.Authorize != nil {
		if err := src.Authorize(req); err != nil {
			return permanent{fmt.Errorf("%w: authorize request: %w", ErrTransfer, err)}
		}
	}
	client := d.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTransfer, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := w.reset(); err != nil {
			return permanent{err}
		}
	case resp.StatusCode == http.StatusPartialContent && w.off > 0:
		start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrTransfer, err)
		}
		if total >= 0 && total != want.Size {
			return permanent{fmt.Errorf("%w: the server's image is %d bytes, the manifest says %d", ErrSizeMismatch, total, want.Size)}
		}
		if start != w.off {
			return fmt.Errorf("%w: asked for bytes from %d, got from %d", ErrTransfer, w.off, start)
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return permanent{fmt.Errorf("%w: the server has no byte %d (416), the manifest says %d bytes", ErrSizeMismatch, w.off, want.Size)}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: HTTP %s", ErrTransfer, resp.Status)
	default:
		return permanent{fmt.Errorf("%w: HTTP %s: %s", ErrTransfer, resp.Status, errorBody(resp.Body))}
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, want.Size-w.off+1))
	if w.off > want.Size {
		return permanent{fmt.Errorf("%w: the server sent more than %d bytes", ErrSizeMismatch, want.Size)}
	}
	if d.Progress != nil && n > 0 {
		d.Progress(w.off, want.Size)
	}
	if err != nil {
		return fmt.Errorf("%w: after byte %d: %w", ErrTransfer, w.off, err)
	}
	if w.off < want.Size {
		return fmt.Errorf("%w: response ended at byte %d of %d", ErrTransfer, w.off, want.Size)
	}
	return nil
}

// errorBody is the start of an error response, on one line.
func errorBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	return strings.Join(strings.Fields(string(b)), " ")
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", then -1).
func parseContentRange(s string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	rng, tot, ok2 := strings.Cut(rest, "/")
	first, _, ok3 := strings.Cut(rng, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil || start < 0 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, fmt.Errorf("bad Content-Range %q", s)
		}
	}
	return start, total, nil
}

// hashingFile appends to a file while hashing exactly the bytes written.
type hashingFile struct {
	f   *os.File
	h   hash.Hash
	off int64
}

// load hashes the partial file already there; one longer than size is discarded.
func (w *hashingFile) load(size int64) error {
	st, err := w.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > size {
		return w.reset()
	}
	n, err := io.Copy(w.h, io.NewSectionReader(w.f, 0, st.Size()))
	if err != nil {
		return err
	}
	w.off = n
	return w.truncate()
}

func (w *hashingFile) reset() error {
	w.h.Reset()
	w.off = 0
	return w.truncate()
}

func (w *hashingFile) truncate() error {
	if err := w.f.Truncate(w.off); err != nil {
		return fmt.Errorf("truncate partial file: %w", err)
	}
	_, err := w.f.Seek(w.off, io.SeekStart)
	return err
}

func (w *hashingFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.off += int64(n)
	return n, err
}
