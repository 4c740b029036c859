// Package images is localhub's firmware image store: the image bytes are
// files named by their SHA-256 in one directory under the hub's data
// directory, the metadata and signed manifests are rows of the hub's
// database (store.FirmwareImage).
//
// An upload is streamed to a temporary file while it is hashed; only an image
// whose size and SHA-256 match its manifest, and whose manifest is well formed
// and carries a signature that verifies with the key it names, is moved into
// place and recorded. Anything else is refused with nothing kept.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/localhub/store"
)

// Store keeps firmware images.
type Store struct {
	dir string
	st  *store.Store
	log *slog.Logger
	now func() time.Time

	// mu orders the steps that tie files to rows (move into place + insert,
	// delete + remove), so a file is never removed while an upload of the
	// same bytes is about to reference it.
	mu sync.Mutex
}

// Options configure New.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
}

// New opens the image directory dir (creating it) over the hub's database.
// Temporary files of uploads a stopped hub left behind are removed.
func New(dir string, st *store.Store, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("firmware images: clear %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("firmware images: %w", err)
	}
	return &Store{dir: dir, st: st, log: o.Logger, now: o.Now}, nil
}

// UploadError is an upload refused for its content (a client error); it
// wraps the firmware package's sentinel that says why.
type UploadError struct{ Err error }

func (e *UploadError) Error() string { return e.Err.Error() }
func (e *UploadError) Unwrap() error { return e.Err }

// ParseManifest reads and checks a signed manifest as an upload needs it:
// well formed, signed, and self-consistent (the signature verifies with the
// public key it carries). Whether that key is trusted is the gateway's
// decision (its firmware.trusted_keys).
func ParseManifest(doc []byte) (*firmware.Signed, error) {
	m, err := firmware.Parse(doc)
	if err != nil {
		return nil, &UploadError{err}
	}
	if err := m.CheckIntegrity(); err != nil {
		return nil, &UploadError{err}
	}
	return m, nil
}

// Put stores an image: m (from ParseManifest, whose text is doc) and the
// image bytes read from r. It fails with store.ErrExists when the update id
// is taken and with an *UploadError when the bytes do not match the manifest.
func (s *Store) Put(ctx context.Context, m *firmware.Signed, doc []byte, r io.Reader) (store.FirmwareImage, error) {
	id := m.UpdateID
	im := store.FirmwareImage{
		Provider: id.Provider, Name: id.Name, Version: id.Version,
		SHA256: m.File.SHA256, Size: m.File.Size, KeyID: m.Signature.KeyID,
		Manifest: string(doc), Created: m.CreatedAt, Uploaded: s.now().UTC(),
	}
	if _, err := s.st.GetImage(ctx, id.Provider, id.Name, id.Version); err == nil {
		return im, fmt.Errorf("firmware image %s: %w", id, store.ErrExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return im, err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return im, fmt.Errorf("firmware image %s: %w", id, err)
	}
	defer func() {
		tmp.Close()
		_ = os.Remove(tmp.Name()) // gone already when moved into place
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, m.File.Size+1))
	if err != nil {
		return im, fmt.Errorf("firmware image %s: receive image: %w", id, err)
	}
	if n != m.File.Size {
		what := "more than"
		if n < m.File.Size {
			what = fmt.Sprintf("%d bytes, not", n)
		}
		return im, &UploadError{fmt.Errorf("%w: the image is %s the manifest's %d bytes", firmware.ErrSizeMismatch, what, m.File.Size)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.File.SHA256 {
		return im, &UploadError{fmt.Errorf("%w: the image's sha256 is %s, the manifest says %s", firmware.ErrDigestMismatch, got, m.File.SHA256)}
	}
	if err := tmp.Sync(); err != nil {
		return im, fmt.Errorf("firmware image %s: sync: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path := s.Path(im.SHA256)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp.Name(), path); err != nil {
			return im, fmt.Errorf("firmware image %s: move into place: %w", id, err)
		}
		syncDir(s.dir)
	}
	if err := s.st.CreateImage(ctx, im); err != nil {
		s.removeUnreferenced(context.WithoutCancel(ctx), im.SHA256)
		return im, err
	}
	s.log.Info("firmware image stored", "image", im.ID(), "sha256", im.SHA256, "size", im.Size, "key", im.KeyID)
	return im, nil
}

// Path is the file of the image with this SHA-256.
func (s *Store) Path(sha string) string { return filepath.Join(s.dir, sha) }

// Open opens the bytes of an image recorded with this SHA-256 (store.ErrNotFound otherwise).
func (s *Store) Open(ctx context.Context, sha string) (*os.File, store.FirmwareImage, error) {
	if !firmware.ValidDigest(sha) {
		return nil, store.FirmwareImage{}, fmt.Errorf("firmware image %q: %w", sha, store.ErrNotFound)
	}
	ims, err := s.st.ImagesByDigest(ctx, sha)
	if err != nil {
		return nil, store.FirmwareImage{}, err
	}
	if len(ims) == 0 {
		return nil, store.FirmwareImage{}, fmt.Errorf("firmware image %s: %w", sha, store.ErrNotFound)
	}
	f, err := os.Open(s.Path(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ims[0], fmt.Errorf("firmware image %s (deleted meanwhile): %w", sha, store.ErrNotFound)
	}
	if err != nil {
		return nil, ims[0], fmt.Errorf("firmware image %s: %w", sha, err)
	}
	return f, ims[0], nil
}

// Delete removes an image's record, and its file when no other image shares it.
func (s *Store) Delete(ctx context.Context, provider, name, version string) (store.FirmwareImage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, others, err := s.st.DeleteImage(ctx, provider, name, version)
	if err != nil {
		return im, err
	}
	if others == 0 {
		if err := os.Remove(s.Path(im.SHA256)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove firmware image file", "image", im.ID(), "error", err)
		}
	}
	s.log.Info("firmware image deleted", "image", im.ID())
	return im, nil
}

// removeUnreferenced removes the file of sha when no row references it (s.mu held).
func (s *Store) removeUnreferenced(ctx context.Context, sha string) {
	ims, err := s.st.ImagesByDigest(ctx, sha)
	if err != nil || len(ims) > 0 {
		return
	}
	_ = os.Remove(s.Path(sha))
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
