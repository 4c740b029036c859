package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Cache keeps verified images on disk by SHA-256, within a size bound.
//
// Layout under its directory: images/<sha256> holds complete, verified
// images (a file gets there only by a rename after Download verified it);
// partial/<sha256> holds downloads in progress or interrupted, which the next
// Fetch of the same image resumes. Last use is the file's modification time,
// so it survives restarts.
//
// Size rule: complete and partial files together, plus the full size of every
// download in flight, stay within max bytes. To make room, Fetch evicts the
// least recently used files not in use (partial files of downloads not in
// flight included); an image held through an Image is never evicted. When
// that is not enough, Fetch fails with ErrCacheFull and evicts nothing.
type Cache struct {
	dir string
	max int64
	now func() time.Time

	mu      sync.Mutex
	inUse   map[string]int     // digest -> Images held
	flights map[string]*flight // digest -> download in flight
}

type flight struct {
	size int64
	done chan struct{}
	err  error
}

// CacheOptions tune OpenCache.
type CacheOptions struct {
	// Now stamps last use (default time.Now).
	Now func() time.Time
}

// OpenCache opens (creating) the cache in dir with a bound of max bytes.
func OpenCache(dir string, max int64, o CacheOptions) (*Cache, error) {
	if max <= 0 {
		return nil, fmt.Errorf("firmware cache %s: size bound must be positive, got %d", dir, max)
	}
	for _, sub := range []string{"images", "partial"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("firmware cache: %w", err)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{dir: dir, max: max, now: o.Now, inUse: map[string]int{}, flights: map[string]*flight{}}, nil
}

// Image is a cached image held in use: it is not evicted until Release.
type Image struct {
	c      *Cache
	digest string
	once   sync.Once
}

// Path is the image file; read it, never write it.
func (im *Image) Path() string { return im.c.imagePath(im.digest) }

// Digest is the image's SHA-256 in hex.
func (im *Image) Digest() string { return im.digest }

// Release ends this use and stamps the last use; further calls do nothing.
func (im *Image) Release() {
	im.once.Do(func() {
		im.c.mu.Lock()
		defer im.c.mu.Unlock()
		if im.c.inUse[im.digest]--; im.c.inUse[im.digest] <= 0 {
			delete(im.c.inUse, im.digest)
		}
		im.c.touch(im.c.imagePath(im.digest))
	})
}

func (c *Cache) imagePath(d string) string   { return filepath.Join(c.dir, "images", d) }
func (c *Cache) partialPath(d string) string { return filepath.Join(c.dir, "partial", d) }

func (c *Cache) touch(path string) {
	t := c.now()
	_ = os.Chtimes(path, t, t) // last use is advisory; a failure only skews eviction order
}

// Get holds a cached image; ErrNotCached when it is not complete in the cache.
func (c *Cache) Get(digest string) (*Image, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("%w: sha256 %q", ErrMalformed, digest)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holdLocked(digest)
}

func (c *Cache) holdLocked(digest string) (*Image, error) {
	p := c.imagePath(digest)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotCached, digest)
		}
		return nil, fmt.Errorf("firmware cache: %w", err)
	}
	c.inUse[digest]++
	c.touch(p)
	return &Image{c: c, digest: digest}, nil
}

// Fetch holds the image want describes, downloading it with d from src when
// it is not cached. Concurrent Fetches of one image share one download (a
// gateway downloads an image once for all its devices); when the caller
// whose download it is gives up (its ctx ends), a waiting caller takes over
// and resumes the partial file. Errors are Download's, or ErrCacheFull.
func (c *Cache) Fetch(ctx context.Context, d *Downloader, src Source, want File) (*Image, error) {
	if !ValidDigest(want.SHA256) || want.Size <= 0 {
		return nil, fmt.Errorf("%w: size %d, sha256 %q", ErrMalformed, want.Size, want.SHA256)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.mu.Lock()
		im, err := c.holdLocked(want.SHA256)
		if !errors.Is(err, ErrNotCached) {
			c.mu.Unlock()
			return im, err
		}
		if fl, ok := c.flights[want.SHA256]; ok {
			c.mu.Unlock()
			select {
			case <-fl.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if fl.err != nil && !errors.Is(fl.err, context.Canceled) && !errors.Is(fl.err, context.DeadlineExceeded) {
				return nil, fl.err
			}
			continue // cached now, or the fetch that downloaded gave up: try again
		}
		if err := c.reserveLocked(want); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		fl := &flight{size: want.Size, done: make(chan struct{})}
		c.flights[want.SHA256] = fl
		c.mu.Unlock()

		fl.err = c.download(ctx, d, src, want)
		c.mu.Lock()
		delete(c.flights, want.SHA256)
		if fl.err == nil {
			im, fl.err = c.holdLocked(want.SHA256)
		}
		c.mu.Unlock()
		close(fl.done)
		return im, fl.err
	}
}

func (c *Cache) download(ctx context.Context, d *Downloader, src Source, want File) error {
	part := c.partialPath(want.SHA256)
	if err := d.Download(ctx, src, want, part); err != nil {
		return err
	}
	if err := os.Rename(part, c.imagePath(want.SHA256)); err != nil {
		return fmt.Errorf("firmware cache: move verified image into place: %w", err)
	}
	if dir, err := os.Open(filepath.Join(c.dir, "images")); err == nil {
		_ = dir.Sync() // the rename survives a power cut
		dir.Close()
	}
	return nil
}

// entry is one file the cache holds.
type entry struct {
	path   string
	digest string
	size   int64
	used   time.Time
	pinned bool
	flying bool // partial file of a download in flight
}

// reserveLocked makes room for want (minus its partial bytes) by evicting
// least recently used files not in use, or fails with ErrCacheFull having
// evicted nothing.
func (c *Cache) reserveLocked(want File) error {
	entries, err := c.entriesLocked()
	if err != nil {
		return err
	}
	var used int64
	for _, fl := range c.flights {
		used += fl.size
	}
	var victims []entry
	for _, e := range entries {
		if e.digest == want.SHA256 || e.flying {
			continue // counted in want.Size, or in its flight's size
		}
		used += e.size
		if !e.pinned {
			victims = append(victims, e)
		}
	}
	slices.SortFunc(victims, func(a, b entry) int { return a.used.Compare(b.used) })
	need := used + want.Size - c.max
	var evict []entry
	for _, v := range victims {
		if need <= 0 {
			break
		}
		evict = append(evict, v)
		need -= v.size
	}
	if need > 0 {
		return fmt.Errorf("%w: image %s needs %d bytes; %d of the %d-byte bound are in use or downloading", ErrCacheFull, want.SHA256, want.Size, used-sumSize(victims), c.max)
	}
	for _, v := range evict {
		if err := os.Remove(v.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("firmware cache: evict %s: %w", v.path, err)
		}
	}
	return nil
}

func sumSize(es []entry) int64 {
	var n int64
	for _, e := range es {
		n += e.size
	}
	return n
}

// entriesLocked lists complete and partial files; in-use images and partial
// files of downloads in flight are pinned.
func (c *Cache) entriesLocked() ([]entry, error) {
	var out []entry
	for _, sub := range []string{"images", "partial"} {
		des, err := os.ReadDir(filepath.Join(c.dir, sub))
		if err != nil {
			return nil, fmt.Errorf("firmware cache: %w", err)
		}
		for _, de := range des {
			info, err := de.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			d := de.Name()
			_, flying := c.flights[d]
			out = append(out, entry{
				path: filepath.Join(c.dir, sub, d), digest: d, size: info.Size(), used: info.ModTime(),
				pinned: (sub == "images" && c.inUse[d] > 0) || (sub == "partial" && flying),
				flying: sub == "partial" && flying,
			})
		}
	}
	return out, nil
}

// Usage is the bytes the cache's files take and its bound.
func (c *Cache) Usage() (used, max int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	es, err := c.entriesLocked()
	if err != nil {
		return 0, c.max, err
	}
	return sumSize(es), c.max, nil
}

// Verify hashes the cached file again and checks it against want: a file
// that rotted on the gateway's flash since it was downloaded is never
// handed to a device. On a mismatch the file is removed (the next Fetch
// downloads it again) and the error wraps ErrDigestMismatch or
// ErrSizeMismatch.
func (im *Image) Verify(want File) error {
	f, err := os.Open(im.Path())
	if err != nil {
		return fmt.Errorf("firmware cache: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("firmware cache: read %s: %w", im.digest, err)
	}
	var bad error
	switch sum := hex.EncodeToString(h.Sum(nil)); {
	case n != want.Size:
		bad = fmt.Errorf("%w: cached image %s has %d bytes, the manifest says %d", ErrSizeMismatch, im.digest, n, want.Size)
	case sum != want.SHA256:
		bad = fmt.Errorf("%w: cached image %s hashes to %s", ErrDigestMismatch, want.SHA256, sum)
	}
	if bad != nil {
		im.c.mu.Lock()
		_ = os.Remove(im.Path())
		im.c.mu.Unlock()
	}
	return bad
}
