package smp

import (
	"errors"
	"fmt"
)

// Codec errors. Framing errors are recoverable: the reader resyncs on the
// next start-of-packet line.
var (
	ErrShort     = errors.New("short input")
	ErrMalformed = errors.New("malformed")
	ErrTooLong   = errors.New("too long")
	ErrCRC       = errors.New("crc mismatch")
)

// RC is an mcumgr_err_t status code, the "rc" of an SMP error answer.
type RC int

// SMP layer return codes [SMP protocol specification: "Minimal response"].
const (
	EOK             RC = 0
	EUNKNOWN        RC = 1
	ENOMEM          RC = 2
	EINVAL          RC = 3
	ETIMEOUT        RC = 4
	ENOENT          RC = 5
	EBADSTATE       RC = 6
	EMSGSIZE        RC = 7
	ENOTSUP         RC = 8
	ECORRUPT        RC = 9
	EBUSY           RC = 10
	EACCESSDENIED   RC = 11
	EUnsupportedOld RC = 12 // the server does not speak the request's (older) version
	EUnsupportedNew RC = 13 // the server does not speak the request's (newer) version
	EPERUSER        RC = 256
)

var rcNames = map[RC]string{
	EOK: "EOK", EUNKNOWN: "EUNKNOWN", ENOMEM: "ENOMEM", EINVAL: "EINVAL", ETIMEOUT: "ETIMEOUT",
	ENOENT: "ENOENT", EBADSTATE: "EBADSTATE", EMSGSIZE: "EMSGSIZE", ENOTSUP: "ENOTSUP", ECORRUPT: "ECORRUPT",
	EBUSY: "EBUSY", EACCESSDENIED: "EACCESSDENIED", EUnsupportedOld: "UNSUPPORTED_TOO_OLD",
	EUnsupportedNew: "UNSUPPORTED_TOO_NEW",
}

func (rc RC) String() string {
	if s, ok := rcNames[rc]; ok {
		return s
	}
	if rc >= EPERUSER {
		return fmt.Sprintf("EPERUSER+%d", int(rc-EPERUSER))
	}
	return fmt.Sprintf("rc(%d)", int(rc))
}

// Image group (v2) error codes, img_mgmt_err_code_t.
const (
	ImgErrUnknown                 RC = 1
	ImgErrFlashConfigQueryFail    RC = 2
	ImgErrNoImage                 RC = 3
	ImgErrHashNotFound            RC = 8
	ImgErrNoFreeSlot              RC = 9
	ImgErrFlashWriteFailed        RC = 12
	ImgErrFlashEraseFailed        RC = 13
	ImgErrInvalidSlot             RC = 14
	ImgErrInvalidOffset           RC = 20
	ImgErrInvalidLength           RC = 21
	ImgErrInvalidImageHeader      RC = 22
	ImgErrInvalidImageHeaderMagic RC = 23
	ImgErrInvalidHash             RC = 24
	ImgErrCurrentVersionIsNewer   RC = 27
	ImgErrImageAlreadyPending     RC = 28
	ImgErrInvalidImageTooLarge    RC = 30
	ImgErrConfirmationDenied      RC = 32
	ImgErrTestToActiveDenied      RC = 33
	ImgErrActiveSlotNotKnown      RC = 34
)

var imgNames = map[RC]string{
	ImgErrUnknown: "UNKNOWN", ImgErrFlashConfigQueryFail: "FLASH_CONFIG_QUERY_FAIL", ImgErrNoImage: "NO_IMAGE",
	ImgErrHashNotFound: "HASH_NOT_FOUND", ImgErrNoFreeSlot: "NO_FREE_SLOT", ImgErrFlashWriteFailed: "FLASH_WRITE_FAILED",
	ImgErrFlashEraseFailed: "FLASH_ERASE_FAILED", ImgErrInvalidSlot: "INVALID_SLOT", ImgErrInvalidOffset: "INVALID_OFFSET",
	ImgErrInvalidLength: "INVALID_LENGTH", ImgErrInvalidImageHeader: "INVALID_IMAGE_HEADER",
	ImgErrInvalidImageHeaderMagic: "INVALID_IMAGE_HEADER_MAGIC", ImgErrInvalidHash: "INVALID_HASH",
	ImgErrCurrentVersionIsNewer: "CURRENT_VERSION_IS_NEWER", ImgErrImageAlreadyPending: "IMAGE_ALREADY_PENDING",
	ImgErrInvalidImageTooLarge: "INVALID_IMAGE_TOO_LARGE", ImgErrConfirmationDenied: "IMAGE_CONFIRMATION_DENIED",
	ImgErrTestToActiveDenied: "IMAGE_SETTING_TEST_TO_ACTIVE_DENIED", ImgErrActiveSlotNotKnown: "ACTIVE_SLOT_NOT_KNOWN",
}

// Error is an error answer from the device, in either form: the SMP layer's
// (and v1's) {"rc": N, "rsn": "..."} — Group is then GroupLayer — or SMP v2's
// group error {"err": {"group": G, "rc": N}}.
type Error struct {
	Group  Group // the group whose rc this is; GroupLayer for a plain rc
	RC     RC
	Reason string // "rsn", when the device sent one
}

// GroupLayer marks an Error whose rc is an SMP-layer (mcumgr_err_t) code.
const GroupLayer Group = 0xFFFF

func (e *Error) Error() string {
	var s string
	switch {
	case e.Group == GroupLayer:
		s = fmt.Sprintf("smp error rc=%d (%s)", int(e.RC), e.RC)
	case e.Group == GroupImage:
		name, ok := imgNames[e.RC]
		if !ok {
			name = fmt.Sprintf("code %d", int(e.RC))
		}
		s = fmt.Sprintf("smp image error rc=%d (%s)", int(e.RC), name)
	default:
		s = fmt.Sprintf("smp %s error rc=%d", e.Group, int(e.RC))
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// IsRC reports whether err is an SMP-layer error with the given rc.
func IsRC(err error, rc RC) bool {
	var e *Error
	return errors.As(err, &e) && e.Group == GroupLayer && e.RC == rc
}

// IsGroupRC reports whether err is a group error of g with the given rc.
func IsGroupRC(err error, g Group, rc RC) bool {
	var e *Error
	return errors.As(err, &e) && e.Group == g && e.RC == rc
}
