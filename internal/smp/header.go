package smp

import (
	"encoding/binary"
	"fmt"
)

// HeaderSize is the size of the SMP header in bytes.
const HeaderSize = 8

// Op is the operation code of an SMP packet.
type Op uint8

// Operation codes [SMP protocol specification: "Op"].
const (
	OpRead     Op = 0
	OpReadRsp  Op = 1
	OpWrite    Op = 2
	OpWriteRsp Op = 3
)

// IsResponse reports whether op is a response code.
func (o Op) IsResponse() bool { return o == OpReadRsp || o == OpWriteRsp }

// Response returns the response op of a request op.
func (o Op) Response() Op { return o | 1 }

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpReadRsp:
		return "read-rsp"
	case OpWrite:
		return "write"
	case OpWriteRsp:
		return "write-rsp"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Protocol versions carried in the header's Ver bits.
const (
	Version1 uint8 = 0 // the original protocol: errors as {"rc": N}
	Version2 uint8 = 1 // SMP v2: group errors as {"err": {"group": G, "rc": N}}
)

// Group is an SMP management group id.
type Group uint16

// Management groups [SMP protocol specification: "Group ID"].
const (
	GroupOS          Group = 0
	GroupImage       Group = 1
	GroupStat        Group = 2
	GroupSettings    Group = 3
	GroupLog         Group = 4
	GroupFS          Group = 8
	GroupShell       Group = 9
	GroupEnum        Group = 10
	GroupZephyrBasic Group = 63
	GroupUserDefined Group = 64 // first application-defined group
)

var groupNames = map[Group]string{
	GroupOS: "os", GroupImage: "image", GroupStat: "stat", GroupSettings: "settings",
	GroupLog: "log", GroupFS: "fs", GroupShell: "shell", GroupEnum: "enum", GroupZephyrBasic: "zephyr-basic",
}

func (g Group) String() string {
	if s, ok := groupNames[g]; ok {
		return s
	}
	return fmt.Sprintf("group(%d)", uint16(g))
}

// Command ids of the OS group.
const (
	OSEcho           uint8 = 0
	OSTaskStat       uint8 = 2
	OSMemPool        uint8 = 3
	OSDateTime       uint8 = 4
	OSReset          uint8 = 5
	OSParams         uint8 = 6 // MCUmgr parameters: buf_size, buf_count
	OSInfo           uint8 = 7
	OSBootloaderInfo uint8 = 8
)

// Command ids of the image group.
const (
	ImageState    uint8 = 0
	ImageUpload   uint8 = 1
	ImageErase    uint8 = 5
	ImageSlotInfo uint8 = 6
)

// Command ids of the stat group.
const (
	StatRead uint8 = 0
	StatList uint8 = 1
)

// Command ids of the settings (config) group.
const (
	SettingsReadWrite uint8 = 0 // read with OpRead, write with OpWrite
	SettingsDelete    uint8 = 1
	SettingsCommit    uint8 = 2
	SettingsLoadSave  uint8 = 3 // load with OpRead, save with OpWrite
)

// Command ids of the Zephyr basic group.
const (
	ZephyrEraseStorage uint8 = 0
)

// Header is the 8-byte SMP header (all fields big-endian on the wire).
type Header struct {
	Op      Op
	Version uint8 // Version1 or Version2 (two bits)
	Flags   uint8
	Length  uint16 // length of the CBOR body
	Group   Group
	Seq     uint8
	ID      uint8 // command id within the group
}

// AppendHeader appends the wire form of h to b.
func AppendHeader(b []byte, h Header) []byte {
	b = append(b, (h.Version&0x3)<<3|uint8(h.Op)&0x7, h.Flags)
	b = binary.BigEndian.AppendUint16(b, h.Length)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Group))
	return append(b, h.Seq, h.ID)
}

// ParseHeader decodes the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("smp header: %d bytes, want %d: %w", len(b), HeaderSize, ErrShort)
	}
	h := Header{
		Op:      Op(b[0] & 0x7),
		Version: (b[0] >> 3) & 0x3,
		Flags:   b[1],
		Length:  binary.BigEndian.Uint16(b[2:4]),
		Group:   Group(binary.BigEndian.Uint16(b[4:6])),
		Seq:     b[6],
		ID:      b[7],
	}
	if b[0]&0xE0 != 0 {
		return h, fmt.Errorf("smp header: reserved bits set in 0x%02x: %w", b[0], ErrMalformed)
	}
	return h, nil
}

// Packet is one SMP packet: header and CBOR body.
type Packet struct {
	Header
	Body []byte
}

// Marshal returns the wire form of p; the header's Length is taken from Body.
func (p Packet) Marshal() ([]byte, error) {
	if len(p.Body) > 0xFFFF-HeaderSize {
		return nil, fmt.Errorf("smp packet: body of %d bytes: %w", len(p.Body), ErrTooLong)
	}
	h := p.Header
	h.Length = uint16(len(p.Body))
	b := make([]byte, 0, HeaderSize+len(p.Body))
	return append(AppendHeader(b, h), p.Body...), nil
}

// ParsePacket decodes a whole packet; the body must be exactly as long as
// the header says.
func ParsePacket(b []byte) (Packet, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Packet{}, err
	}
	if got := len(b) - HeaderSize; got != int(h.Length) {
		return Packet{}, fmt.Errorf("smp packet %s/%d: header says %d body bytes, got %d: %w", h.Group, h.ID, h.Length, got, ErrMalformed)
	}
	return Packet{Header: h, Body: b[HeaderSize:]}, nil
}
