package firmware

import "errors"

// Errors returned by this package. Compare with errors.Is; Reason maps each to
// the result code a device reports.
var (
	// ErrMalformed is a manifest that does not parse or breaks a field rule.
	ErrMalformed = errors.New("malformed manifest")
	// ErrUnsigned is a manifest without a signature.
	ErrUnsigned = errors.New("manifest is not signed")
	// ErrBadSignature is a signature that does not verify over the manifest.
	ErrBadSignature = errors.New("bad manifest signature")
	// ErrUntrustedKey is a manifest signed by a key that is not trusted.
	ErrUntrustedKey = errors.New("manifest signed by an untrusted key")
	// ErrIncompatible is an image whose compatibility list does not name the device.
	ErrIncompatible = errors.New("image is not compatible with the device")
	// ErrDigestMismatch is an image whose bytes do not hash to the manifest's SHA-256.
	ErrDigestMismatch = errors.New("image digest does not match the manifest")
	// ErrSizeMismatch is an image longer or shorter than the manifest's size.
	ErrSizeMismatch = errors.New("image size does not match the manifest")
	// ErrCacheFull is an image that does not fit in the cache even after
	// evicting every image not in use.
	ErrCacheFull = errors.New("firmware cache is full")
	// ErrTransfer is a download that failed (connection cut, HTTP error) after its retries.
	ErrTransfer = errors.New("image transfer failed")
	// ErrNotCached is an image the cache does not hold.
	ErrNotCached = errors.New("image is not in the cache")
	// ErrBadKey is a key file or key string that cannot be read.
	ErrBadKey = errors.New("bad ed25519 key")
)
