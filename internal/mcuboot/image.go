// Package mcuboot reads and builds MCUboot image files: the 32-byte image
// header (magic, header size, image size, version), the body, and the TLV
// trailer that carries the image's SHA-256. It is what both sides of a flash
// need: the serial plugin learns the version and hash of the image it is about
// to upload (the hash is what the device's image list shows and what "test"
// names), and the device simulator checks what it received the way MCUboot
// does before it boots it.
package mcuboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Format constants (MCUboot's bootutil image.h; all fields little-endian).
const (
	Magic         = 0x96f3b83d
	HeaderSize    = 32
	tlvInfoMagic  = 0x6907 // unprotected TLV area
	tlvProtMagic  = 0x6908 // protected TLV area
	tlvInfoSize   = 4
	tlvHdrSize    = 4
	TLVTypeSHA256 = 0x10
)

// ErrInvalid is the class of every parse error.
var ErrInvalid = errors.New("invalid mcuboot image")

// Version is an image version: major.minor.revision+build.
type Version struct {
	Major, Minor uint8
	Revision     uint16
	Build        uint32
}

// String formats v as the device's image list does: "1.2.3", with ".build"
// only when the build number is not zero.
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Revision)
	if v.Build != 0 {
		s += "." + strconv.FormatUint(uint64(v.Build), 10)
	}
	return s
}

// Compare orders versions (-1, 0, 1).
func (v Version) Compare(o Version) int {
	a := [4]uint64{uint64(v.Major), uint64(v.Minor), uint64(v.Revision), uint64(v.Build)}
	b := [4]uint64{uint64(o.Major), uint64(o.Minor), uint64(o.Revision), uint64(o.Build)}
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// ParseVersion reads "1.2.3", "1.2.3.4" or "1.2.3+4".
func ParseVersion(s string) (Version, error) {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '+' })
	if len(parts) < 1 || len(parts) > 4 {
		return Version{}, fmt.Errorf("version %q: want major.minor.revision[.build]: %w", s, ErrInvalid)
	}
	limits := []int{8, 8, 16, 32}
	var n [4]uint64
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, limits[i])
		if err != nil {
			return Version{}, fmt.Errorf("version %q: part %d: %w", s, i+1, ErrInvalid)
		}
		n[i] = x
	}
	return Version{Major: uint8(n[0]), Minor: uint8(n[1]), Revision: uint16(n[2]), Build: uint32(n[3])}, nil
}

// Image is a parsed image file.
type Image struct {
	LoadAddr   uint32
	HeaderSize int // ih_hdr_size: the header is padded to this
	BodySize   int // ih_img_size
	Flags      uint32
	Version    Version
	// Hash is the SHA-256 over header, body and protected TLVs, as the TLV
	// carries it and the device's image list reports it (not the SHA-256 of
	// the file).
	Hash []byte
}

// Parse checks an image file the way MCUboot does before it boots one: the
// magic, sizes that fit the file, a TLV area with a SHA-256 entry, and that
// the hash matches the content.
func Parse(b []byte) (Image, error) {
	if len(b) < HeaderSize {
		return Image{}, fmt.Errorf("image of %d bytes, shorter than the header: %w", len(b), ErrInvalid)
	}
	le := binary.LittleEndian
	if m := le.Uint32(b); m != Magic {
		return Image{}, fmt.Errorf("image header magic %#08x, want %#08x: %w", m, uint32(Magic), ErrInvalid)
	}
	img := Image{
		LoadAddr:   le.Uint32(b[4:]),
		HeaderSize: int(le.Uint16(b[8:])),
		BodySize:   int(le.Uint32(b[12:])),
		Flags:      le.Uint32(b[16:]),
		Version:    Version{Major: b[20], Minor: b[21], Revision: le.Uint16(b[22:]), Build: le.Uint32(b[24:])},
	}
	protSize := int(le.Uint16(b[10:]))
	if img.HeaderSize < HeaderSize {
		return Image{}, fmt.Errorf("header size %d, want at least %d: %w", img.HeaderSize, HeaderSize, ErrInvalid)
	}
	end := img.HeaderSize + img.BodySize
	if end+protSize+tlvInfoSize > len(b) || end < 0 {
		return Image{}, fmt.Errorf("header and body of %d bytes and TLVs do not fit a %d-byte file: %w", end, len(b), ErrInvalid)
	}
	hashed := end + protSize
	off := hashed
	if protSize > 0 && le.Uint16(b[end:]) != tlvProtMagic {
		return Image{}, fmt.Errorf("protected TLV magic at %d: %w", end, ErrInvalid)
	}
	if le.Uint16(b[off:]) != tlvInfoMagic {
		return Image{}, fmt.Errorf("TLV info magic %#04x at %d, want %#04x: %w", le.Uint16(b[off:]), off, tlvInfoMagic, ErrInvalid)
	}
	total := int(le.Uint16(b[off+2:]))
	if off+total > len(b) || total < tlvInfoSize {
		return Image{}, fmt.Errorf("TLV area of %d bytes past the end of the file: %w", total, ErrInvalid)
	}
	var hash []byte
	for p := off + tlvInfoSize; p+tlvHdrSize <= off+total; {
		typ, n := le.Uint16(b[p:]), int(le.Uint16(b[p+2:]))
		p += tlvHdrSize
		if p+n > off+total {
			return Image{}, fmt.Errorf("TLV %#x of %d bytes past the TLV area: %w", typ, n, ErrInvalid)
		}
		if typ == TLVTypeSHA256 && n == sha256.Size {
			hash = b[p : p+n]
		}
		p += n
	}
	if hash == nil {
		return Image{}, fmt.Errorf("no SHA-256 TLV: %w", ErrInvalid)
	}
	sum := sha256.Sum256(b[:hashed])
	if !bytes.Equal(sum[:], hash) {
		return Image{}, fmt.Errorf("SHA-256 TLV does not match the image content: %w", ErrInvalid)
	}
	img.Hash = bytes.Clone(hash)
	return img, nil
}

// Build makes an image file around body, as imgtool would (unsigned: a
// SHA-256 TLV only). Tests, the simulator and the demo use it.
func Build(v Version, body []byte) []byte {
	le := binary.LittleEndian
	b := make([]byte, HeaderSize, HeaderSize+len(body)+tlvInfoSize+tlvHdrSize+sha256.Size)
	le.PutUint32(b[0:], Magic)
	le.PutUint16(b[8:], HeaderSize)
	le.PutUint32(b[12:], uint32(len(body)))
	b[20], b[21] = v.Major, v.Minor
	le.PutUint16(b[22:], v.Revision)
	le.PutUint32(b[24:], v.Build)
	b = append(b, body...)
	sum := sha256.Sum256(b)
	b = le.AppendUint16(b, tlvInfoMagic)
	b = le.AppendUint16(b, tlvInfoSize+tlvHdrSize+sha256.Size)
	b = le.AppendUint16(b, TLVTypeSHA256)
	b = le.AppendUint16(b, sha256.Size)
	return append(b, sum[:]...)
}
