package smp

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Bodies are CBOR maps with text keys. Decoding is bounded so a garbage body
// cannot make the reader allocate much or recurse deeply.
var (
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			MaxNestedLevels:  16,
			MaxArrayElements: 4096,
			MaxMapPairs:      4096,
			DupMapKey:        cbor.DupMapKeyQuiet,
			IndefLength:      cbor.IndefLengthAllowed,
		}.DecMode()
		if err != nil {
			panic(err) // static options
		}
		return m
	}()
	encMode = func() cbor.EncMode {
		m, err := cbor.EncOptions{Sort: cbor.SortCanonical}.EncMode()
		if err != nil {
			panic(err) // static options
		}
		return m
	}()
)

// Marshal encodes v as a CBOR body.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode smp body: %w", err)
	}
	return b, nil
}

// Unmarshal decodes a CBOR body into v.
func Unmarshal(body []byte, v any) error {
	if err := decMode.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode smp body: %w: %w", ErrMalformed, err)
	}
	return nil
}

// errorBody holds both error forms a response may carry.
type errorBody struct {
	RC  *int64 `cbor:"rc"`
	Rsn string `cbor:"rsn"`
	Err *struct {
		Group uint64 `cbor:"group"`
		RC    int64  `cbor:"rc"`
	} `cbor:"err"`
}

// ResponseError returns the device's error carried in a response body, in
// either form ({"rc": N[, "rsn": s]} or {"err": {"group": G, "rc": N}}), or
// nil when the body reports success ("rc": 0, or no error key). A body that
// is not a CBOR map is an error wrapping ErrMalformed.
func ResponseError(body []byte) error {
	var eb errorBody
	if err := Unmarshal(body, &eb); err != nil {
		return err
	}
	if eb.Err != nil && eb.Err.RC != 0 {
		if eb.Err.Group > 0xFFFE {
			return fmt.Errorf("decode smp error: group %d: %w", eb.Err.Group, ErrMalformed)
		}
		return &Error{Group: Group(eb.Err.Group), RC: RC(eb.Err.RC), Reason: eb.Rsn}
	}
	if eb.RC != nil && *eb.RC != 0 {
		return &Error{Group: GroupLayer, RC: RC(*eb.RC), Reason: eb.Rsn}
	}
	return nil
}

// DecodeResponse checks a response body for an error answer, then decodes it
// into v (which may be nil).
func DecodeResponse(body []byte, v any) error {
	if err := ResponseError(body); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return Unmarshal(body, v)
}

// ErrorBody builds an error response body as a server of the given protocol
// version would: v1 and SMP-layer errors as {"rc": N[, "rsn": s]}, v2 group
// errors as {"err": {"group": G, "rc": N}}.
func ErrorBody(version uint8, e *Error) []byte {
	m := map[string]any{}
	if version >= Version2 && e.Group != GroupLayer {
		m["err"] = map[string]any{"group": uint64(e.Group), "rc": int64(e.RC)}
	} else {
		m["rc"] = int64(e.RC)
	}
	if e.Reason != "" {
		m["rsn"] = e.Reason
	}
	b, err := Marshal(m)
	if err != nil {
		// Unreachable: the map holds only ints and strings.
		return []byte{0xa1, 0x62, 'r', 'c', 0x01}
	}
	return b
}

// LegacyRC maps a v2 group error to the v1 rc a server translating for an
// original-protocol client would send.
func LegacyRC(e *Error) RC {
	if e.Group == GroupLayer {
		return e.RC
	}
	if e.Group == GroupImage {
		switch e.RC {
		case ImgErrImageAlreadyPending, ImgErrTestToActiveDenied, ImgErrConfirmationDenied:
			return EBADSTATE
		case ImgErrHashNotFound, ImgErrNoImage:
			return ENOENT
		case ImgErrInvalidHash, ImgErrInvalidOffset, ImgErrInvalidLength, ImgErrInvalidImageHeader,
			ImgErrInvalidImageHeaderMagic, ImgErrInvalidSlot, ImgErrCurrentVersionIsNewer:
			return EINVAL
		case ImgErrInvalidImageTooLarge:
			return ENOMEM
		}
	}
	return EUNKNOWN
}

// IsVersionRefused reports whether err says the device refuses a request's
// newer protocol version (UNSUPPORTED_TOO_NEW), so a v2 client falls back to v1.
func IsVersionRefused(err error) bool {
	return IsRC(err, EUnsupportedNew)
}

// Messages of the commands Drover uses. Optional request fields are pointers
// or omitempty so they are left out of the map, as devices expect.

// EchoReq is OS echo's request.
type EchoReq struct {
	D string `cbor:"d"`
}

// EchoRsp is OS echo's response.
type EchoRsp struct {
	R string `cbor:"r"`
}

// ResetReq is OS reset's request.
type ResetReq struct {
	Force    *uint8 `cbor:"force,omitempty"`
	BootMode *uint8 `cbor:"boot_mode,omitempty"`
}

// ParamsRsp is the MCUmgr parameters response.
type ParamsRsp struct {
	BufSize  uint32 `cbor:"buf_size"`
	BufCount uint32 `cbor:"buf_count"`
}

// OSInfoReq is the OS/application info request.
type OSInfoReq struct {
	Format string `cbor:"format,omitempty"`
}

// OSInfoRsp is the OS/application info response.
type OSInfoRsp struct {
	Output string `cbor:"output"`
}

// DateTime is OS date-time's get response and set request.
type DateTime struct {
	DateTime string `cbor:"datetime"`
}

// BootloaderInfoReq is the bootloader info request.
type BootloaderInfoReq struct {
	Query string `cbor:"query,omitempty"`
}

// BootloaderInfoRsp is the bootloader info response (MCUboot answers its
// name, and its mode for the "mode" query).
type BootloaderInfoRsp struct {
	Bootloader  string `cbor:"bootloader,omitempty"`
	Mode        *int   `cbor:"mode,omitempty"`
	NoDowngrade *bool  `cbor:"no-downgrade,omitempty"`
}

// ImageSlot is one entry of the image state list. A flag left out (frugal
// list) is false.
type ImageSlot struct {
	Image     *uint32 `cbor:"image,omitempty"`
	Slot      uint32  `cbor:"slot"`
	Version   string  `cbor:"version"`
	Hash      []byte  `cbor:"hash,omitempty"`
	Bootable  bool    `cbor:"bootable,omitempty"`
	Pending   bool    `cbor:"pending,omitempty"`
	Confirmed bool    `cbor:"confirmed,omitempty"`
	Active    bool    `cbor:"active,omitempty"`
	Permanent bool    `cbor:"permanent,omitempty"`
}

// ImageStateRsp is the image state response (read and write).
type ImageStateRsp struct {
	Images      []ImageSlot `cbor:"images"`
	SplitStatus *int        `cbor:"splitStatus,omitempty"`
}

// ImageStateReq is the image state write request: test (Confirm false, Hash
// set) or confirm (Confirm true, Hash optional).
type ImageStateReq struct {
	Hash    []byte `cbor:"hash,omitempty"`
	Confirm bool   `cbor:"confirm"`
}

// UploadReq is one image upload chunk. Image, Len, Sha and Upgrade go only
// with Off == 0 (Len is required there).
type UploadReq struct {
	Image   *uint32 `cbor:"image,omitempty"`
	Len     *uint32 `cbor:"len,omitempty"`
	Off     uint32  `cbor:"off"`
	Sha     []byte  `cbor:"sha,omitempty"`
	Data    []byte  `cbor:"data"`
	Upgrade *bool   `cbor:"upgrade,omitempty"`
}

// UploadRsp is the upload response: the next offset the device expects.
type UploadRsp struct {
	Off   uint32 `cbor:"off"`
	Match *bool  `cbor:"match,omitempty"`
}

// EraseReq is the image erase request.
type EraseReq struct {
	Slot *uint32 `cbor:"slot,omitempty"`
}

// StatReadReq reads one statistics group.
type StatReadReq struct {
	Name string `cbor:"name"`
}

// StatReadRsp is a statistics group's fields.
type StatReadRsp struct {
	Name   string            `cbor:"name"`
	Fields map[string]uint64 `cbor:"fields"`
}

// StatListRsp lists the statistics groups.
type StatListRsp struct {
	StatList []string `cbor:"stat_list"`
}

// SettingsReadReq reads one setting.
type SettingsReadReq struct {
	Name    string  `cbor:"name"`
	MaxSize *uint32 `cbor:"max_size,omitempty"`
}

// SettingsReadRsp is a setting's value (raw bytes, as stored).
type SettingsReadRsp struct {
	Val     []byte  `cbor:"val"`
	MaxSize *uint32 `cbor:"max_size,omitempty"`
}

// SettingsWriteReq writes one setting.
type SettingsWriteReq struct {
	Name string `cbor:"name"`
	Val  []byte `cbor:"val"`
}

// SettingsNameReq names a setting (delete).
type SettingsNameReq struct {
	Name string `cbor:"name"`
}
