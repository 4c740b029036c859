package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// FirmwareImage is the metadata of an uploaded firmware image; its bytes are
// a file named by SHA256 (localhub/images).
type FirmwareImage struct {
	Provider, Name, Version string
	SHA256                  string
	Size                    int64
	KeyID                   string
	Manifest                string // the signed manifest document (JSON), as uploaded
	Created                 time.Time
	Uploaded                time.Time
}

// ID is the image's update id, "provider/name/version".
func (im FirmwareImage) ID() string { return im.Provider + "/" + im.Name + "/" + im.Version }

const imageCols = `provider, name, version, sha256, size, key_id, manifest, created, uploaded`

func scanImage(sc scanner) (FirmwareImage, error) {
	var im FirmwareImage
	var created, uploaded string
	if err := sc.Scan(&im.Provider, &im.Name, &im.Version, &im.SHA256, &im.Size, &im.KeyID, &im.Manifest, &created, &uploaded); err != nil {
		return im, err
	}
	im.Created, im.Uploaded = parseTime(created), parseTime(uploaded)
	return im, nil
}

// CreateImage records an image; ErrExists when its update id is taken.
func (s *Store) CreateImage(ctx context.Context, im FirmwareImage) error {
	return s.write(ctx, "create firmware image", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM firmware_images WHERE provider = ? AND name = ? AND version = ?`, im.Provider, im.Name, im.Version).Scan(&n); err != nil {
			return fmt.Errorf("create firmware image %s: %w", im.ID(), err)
		}
		if n > 0 {
			return fmt.Errorf("firmware image %s: %w", im.ID(), ErrExists)
		}
		_, err := tx.Exec(`INSERT INTO firmware_images(`+imageCols+`) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			im.Provider, im.Name, im.Version, im.SHA256, im.Size, im.KeyID, im.Manifest, fmtTime(im.Created), fmtTime(im.Uploaded))
		if err != nil {
			return fmt.Errorf("create firmware image %s: %w", im.ID(), err)
		}
		return nil
	})
}

// GetImage returns the image with this update id, or ErrNotFound.
func (s *Store) GetImage(ctx context.Context, provider, name, version string) (FirmwareImage, error) {
	im, err := scanImage(s.rd.QueryRowContext(ctx, `SELECT `+imageCols+` FROM firmware_images WHERE provider = ? AND name = ? AND version = ?`, provider, name, version))
	if errors.Is(err, sql.ErrNoRows) {
		return im, fmt.Errorf("firmware image %s/%s/%s: %w", provider, name, version, ErrNotFound)
	}
	if err != nil {
		return im, fmt.Errorf("read firmware image %s/%s/%s: %w", provider, name, version, err)
	}
	return im, nil
}

// ImagesByDigest returns the images whose bytes have this SHA-256 (none: an empty list).
func (s *Store) ImagesByDigest(ctx context.Context, sha256 string) ([]FirmwareImage, error) {
	return s.listImages(ctx, `WHERE sha256 = ?`, sha256)
}

// ListImages returns every image, by provider, name and version.
func (s *Store) ListImages(ctx context.Context) ([]FirmwareImage, error) {
	return s.listImages(ctx, ``)
}

func (s *Store) listImages(ctx context.Context, where string, args ...any) ([]FirmwareImage, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT `+imageCols+` FROM firmware_images `+where+` ORDER BY provider, name, version`, args...)
	if err != nil {
		return nil, fmt.Errorf("list firmware images: %w", err)
	}
	defer rows.Close()
	out := []FirmwareImage{}
	for rows.Next() {
		im, err := scanImage(rows)
		if err != nil {
			return nil, fmt.Errorf("list firmware images: %w", err)
		}
		out = append(out, im)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list firmware images: %w", err)
	}
	return out, nil
}

// DeleteImage removes an image's row and returns it with the number of
// other images that share its bytes (so the caller knows whether the file
// may go); ErrNotFound when there is none.
func (s *Store) DeleteImage(ctx context.Context, provider, name, version string) (FirmwareImage, int, error) {
	var im FirmwareImage
	var others int
	err := s.write(ctx, "delete firmware image", func(tx *sql.Tx) error {
		var err error
		im, err = scanImage(tx.QueryRow(`SELECT `+imageCols+` FROM firmware_images WHERE provider = ? AND name = ? AND version = ?`, provider, name, version))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("firmware image %s/%s/%s: %w", provider, name, version, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM firmware_images WHERE provider = ? AND name = ? AND version = ?`, provider, name, version); err != nil {
			return fmt.Errorf("delete firmware image %s: %w", im.ID(), err)
		}
		return tx.QueryRow(`SELECT COUNT(*) FROM firmware_images WHERE sha256 = ?`, im.SHA256).Scan(&others)
	})
	return im, others, err
}
