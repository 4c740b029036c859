// Package firmware is Drover's firmware image pipeline, as a library shared by
// the hub and the gateway (it imports neither): the signed manifest that
// describes an image (Manifest, Signed, Sign, Verify), the trusted keys that
// may sign one (KeySet), a resumable HTTPS download that verifies the image's
// size and SHA-256 before anything may use it (Download), a content-addressed
// cache with a size bound and least-recently-used eviction that never evicts
// an image in use (Cache), and the device-side update state machine with its
// result codes (Status, Result).
//
// The manifest format, its canonical bytes and the signature are specified in
// docs/firmware.md; Canonical implements that text and its tests pin it.
package firmware
