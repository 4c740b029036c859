package modbus

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

// Firmware transfer methods a profile may declare (firmware.transfer).
const (
	// TransferRegisters moves the image through a window of holding
	// registers written with FC 16, next to control, status, offset, size
	// and CRC registers; docs/firmware.md ("Modbus devices") is the
	// protocol a device implements.
	TransferRegisters = "registers"
	// TransferFileRecords moves the image with FC 21 (Write File Record):
	// image register i (bytes 2i, 2i+1) is record i mod file.records of
	// file file.number + i div file.records. The control, status and other
	// registers are the register transfer's.
	TransferFileRecords = "file_records"
)

var transfers = []string{TransferRegisters, TransferFileRecords}

// Version formats of firmware.version read from registers.
const (
	VersionString   = "string"   // text, two characters per register, NULs and spaces trimmed
	VersionUint16x3 = "uint16x3" // three registers: major, minor, patch
)

var versionTypes = []string{VersionString, VersionUint16x3}

// Firmware defaults and limits.
const (
	DefaultFlashBusyTimeout   = 30 * time.Second // erase at begin, CRC check at commit
	DefaultFlashRebootTimeout = time.Minute
	// blockHeader is the registers in front of a block's data: the byte
	// offset of the data in the image, a uint32.
	blockHeader  = 2
	minBlockSize = blockHeader + 1
	// FC 21 limits (Modbus Application Protocol V1.1b3, 6.15): a request
	// carries at most 251 bytes after its byte count, 7 of them the
	// sub-request header, so 122 registers; records 0..9999 per file.
	MaxFileRecordRegisters = 122
	MaxFileRecords         = 10000
)

// FirmwareSpec is a profile's firmware section: where the device takes a
// new image. Every register of the transfer is a holding register; the
// uint32 registers (offset, image size, CRC) are two registers, high word
// first.
type FirmwareSpec struct {
	Transfer      string
	BlockAddress  int // registers: the window (blockHeader offset registers, then data)
	BlockSize     int // registers: in the window, minBlockSize..MaxWriteRegisters; file_records: data registers per FC 21
	File          int // file_records: file number of the image's first record, 1..65535
	FileRecords   int // file_records: records (registers) per file, 1..MaxFileRecords
	Offset        int // uint32, read: bytes of the image the device holds in order
	ImageSize     int // uint32, written before begin: the image's length in bytes
	CRC           int // uint32, written before begin: CRC-32 (IEEE) of the image
	Control       int // uint16 command register (FlashBegin...)
	Status        int // uint16 status register (FlashIdle...)
	Version       VersionSpec
	BusyTimeout   time.Duration // how long the device may stay busy or verifying
	RebootTimeout time.Duration // how long it may stay silent after apply

	given map[string]bool // keys present, even with a bad value: "missing" is for the others
}

// DataBytes is how many image bytes one block carries.
func (f *FirmwareSpec) DataBytes() int {
	if f.Transfer == TransferFileRecords {
		return 2 * f.BlockSize
	}
	return 2 * (f.BlockSize - blockHeader)
}

// VersionSpec says where the device's running firmware version is read:
// exactly one of FC43 (object 0x02 MajorMinorRevision), Point (a point of
// the profile) or registers (Table, Address, Type, Length).
type VersionSpec struct {
	FC43    bool
	Point   string
	Table   Table
	Address int
	Type    string // VersionString or VersionUint16x3
	Length  int    // registers, for VersionString
}

// registers returns the registers the version occupies when it is read
// from registers (ok false otherwise).
func (v *VersionSpec) registers() (start, n int, ok bool) {
	if v.FC43 || v.Point != "" || v.Type == "" {
		return 0, 0, false
	}
	if v.Type == VersionUint16x3 {
		return v.Address, 3, true
	}
	return v.Address, v.Length, true
}

var (
	firmwareKeys = []string{"transfer", "block", "file", "offset", "image_size", "crc", "control", "status", "version",
		"busy_timeout", "reboot_timeout"}
	fileKeys     = []string{"number", "records"}
	blockKeys    = []string{"address", "size"}
	registerKeys = []string{"address"}
	versionKeys  = []string{"fc43", "point", "table", "address", "type", "length"}
)

// firmwareRegister is one single-purpose register (or uint32 pair) of the
// transfer, for decoding and the overlap checks.
type firmwareRegister struct {
	key string
	dst *int
	n   int // registers
}

func (f *FirmwareSpec) registerList() []firmwareRegister {
	return []firmwareRegister{
		{"offset", &f.Offset, 2}, {"image_size", &f.ImageSize, 2}, {"crc", &f.CRC, 2},
		{"control", &f.Control, 1}, {"status", &f.Status, 1},
	}
}

// decodeFirmware decodes the firmware section at key "firmware".
func decodeFirmware(raw json.RawMessage, errs *[]plugins.FieldError) *FirmwareSpec {
	f := &FirmwareSpec{BlockAddress: -1, BusyTimeout: DefaultFlashBusyTimeout, RebootTimeout: DefaultFlashRebootTimeout,
		given: map[string]bool{}}
	o := jsonfields.Open(raw, "firmware", errs)
	if !o.OK() {
		return nil // reported; nothing to check against the rest
	}
	for _, k := range o.Keys() {
		f.given[k] = o.Has(k) // null is missing
	}
	if !o.OneOf("transfer", &f.Transfer, transfers...) && o.OK() && !o.Has("transfer") {
		o.Add("transfer", "missing (want one of %v)", transfers)
	}
	if v, ok := o.Raw("block"); ok {
		b := jsonfields.Open(v, "firmware.block", errs)
		b.Int("address", &f.BlockAddress)
		b.Int("size", &f.BlockSize)
		b.Done(blockKeys)
	}
	f.FileRecords = MaxFileRecords
	if v, ok := o.Raw("file"); ok {
		fo := jsonfields.Open(v, "firmware.file", errs)
		fo.Int("number", &f.File)
		fo.Int("records", &f.FileRecords)
		fo.Done(fileKeys)
	}
	for _, r := range f.registerList() {
		*r.dst = -1
		if v, ok := o.Raw(r.key); ok {
			ro := jsonfields.Open(v, "firmware."+r.key, errs)
			f.given[r.key+".address"] = !ro.OK() || ro.Has("address")
			ro.Int("address", r.dst)
			ro.Done(registerKeys)
		}
	}
	f.Version.Address = -1
	if v, ok := o.Raw("version"); ok {
		vo := jsonfields.Open(v, "firmware.version", errs)
		vo.Bool("fc43", &f.Version.FC43)
		vo.Str("point", &f.Version.Point)
		var s string
		if vo.Str("table", &s) {
			f.Version.Table = Table(s)
		}
		vo.Int("address", &f.Version.Address)
		vo.Str("type", &f.Version.Type)
		vo.Int("length", &f.Version.Length)
		vo.Done(versionKeys)
	}
	if o.Duration("busy_timeout", &f.BusyTimeout) && f.BusyTimeout <= 0 {
		o.Add("busy_timeout", "must be more than 0")
	}
	if o.Duration("reboot_timeout", &f.RebootTimeout) && f.RebootTimeout <= 0 {
		o.Add("reboot_timeout", "must be more than 0")
	}
	o.Done(firmwareKeys)
	if f.Transfer == TransferFileRecords && f.BlockSize == 0 {
		f.BlockSize = MaxFileRecordRegisters // block is optional there
	}
	return f
}

// validateFirmware checks the firmware section against the rest of the
// profile: every register in range, none shared with another register of
// the transfer, a point, a method or a forbidden range.
func validateFirmware(p *Profile, add func(path, f string, a ...any)) {
	f := p.Firmware
	type span struct {
		key      string
		from, to int // inclusive
	}
	var spans []span
	if f.Transfer == TransferFileRecords {
		validateFileRecords(f, add)
	}
	inRange := func(key string, addr, n int) bool {
		switch {
		case addr == -1 && (f.given[key+".address"] || (key == "block" && f.given[key])):
			// present with a bad value: reported by the decoder
		case addr == -1:
			add("firmware."+key+".address", "missing")
		case addr < 0 || addr > maxAddress:
			add("firmware."+key+".address", "%d out of range 0..65535", addr)
		case addr+n-1 > maxAddress:
			add("firmware."+key+".address", "%d registers from %d would run past 65535", n, addr)
		default:
			return true
		}
		return false
	}
	switch {
	case f.Transfer == TransferFileRecords:
		// No window: blocks are FC 21 writes (validateFileRecords).
	case f.BlockSize == 0 && f.BlockAddress == -1:
		if !f.given["block"] {
			add("firmware.block", "missing (want {address, size})")
		}
	case f.BlockSize < minBlockSize || f.BlockSize > MaxWriteRegisters:
		add("firmware.block.size", "%d out of range %d..%d (registers: 2 for the block's offset, then data; FC 16 writes at most %d)",
			f.BlockSize, minBlockSize, MaxWriteRegisters, MaxWriteRegisters)
		inRange("block", f.BlockAddress, 1)
	default:
		if inRange("block", f.BlockAddress, f.BlockSize) {
			spans = append(spans, span{"block", f.BlockAddress, f.BlockAddress + f.BlockSize - 1})
		}
	}
	for _, r := range f.registerList() {
		if inRange(r.key, *r.dst, r.n) {
			spans = append(spans, span{r.key, *r.dst, *r.dst + r.n - 1})
		}
	}
	for i, a := range spans {
		for _, b := range spans[:i] {
			if a.from <= b.to && b.from <= a.to {
				add("firmware."+a.key+".address", "registers %d..%d overlap firmware.%s (%d..%d)", a.from, a.to, b.key, b.from, b.to)
			}
		}
		if p.Quirks.forbids(TableHolding, a.from, a.to+1) {
			add("firmware."+a.key+".address", "holding %d..%d overlaps a forbidden range", a.from, a.to)
		}
		for _, pt := range p.Points {
			start, n := pt.Span()
			if pt.Table == TableHolding && start <= a.to && a.from < start+n {
				add("firmware."+a.key+".address", "registers %d..%d overlap point %s", a.from, a.to, pt.Name)
			}
		}
		for _, name := range methodNames {
			if w, ok := p.Methods[name]; ok && w.Table == TableHolding && a.from <= w.Address && w.Address <= a.to {
				add("firmware."+a.key+".address", "registers %d..%d hold the %s method's register %d", a.from, a.to, name, w.Address)
			}
		}
	}
	validateVersion(p, add)
}

// validateFileRecords checks the FC 21 keys: a file, the records per
// file, the records per request, and no window address.
func validateFileRecords(f *FirmwareSpec, add func(path, f string, a ...any)) {
	switch {
	case !f.given["file"]:
		add("firmware.file", "missing (want {number} for transfer file_records)")
	case f.File < 1 || f.File > 0xFFFF:
		add("firmware.file.number", "%d out of range 1..65535", f.File)
	}
	if f.FileRecords < 1 || f.FileRecords > MaxFileRecords {
		add("firmware.file.records", "%d out of range 1..%d (records per file)", f.FileRecords, MaxFileRecords)
	}
	if f.BlockAddress != -1 {
		add("firmware.block.address", "only for transfer registers (file_records writes files, not a window)")
	}
	if f.BlockSize < 1 || f.BlockSize > MaxFileRecordRegisters {
		add("firmware.block.size", "%d out of range 1..%d (registers per FC 21 request)", f.BlockSize, MaxFileRecordRegisters)
	}
}

func validateVersion(p *Profile, add func(path, f string, a ...any)) {
	v := &p.Firmware.Version
	sources := 0
	if v.FC43 {
		sources++
		if p.Quirks.NoFC43 {
			add("firmware.version.fc43", "the device has no FC 43 (quirks.no_fc43)")
		}
	}
	if v.Point != "" {
		sources++
		if _, ok := p.Point(v.Point); !ok {
			add("firmware.version.point", "no point named %q", v.Point)
		}
	}
	regs := v.Table != "" || v.Address != -1 || v.Type != "" || v.Length != 0
	if regs {
		sources++
	}
	switch {
	case sources == 0 && p.Firmware.given["version"]:
		return // present with a bad value: reported by the decoder
	case sources == 0:
		add("firmware.version", "missing (want fc43: true, point: NAME, or table, address and type)")
		return
	case sources > 1:
		add("firmware.version", "give one of fc43, point, or table/address/type")
		return
	case !regs:
		return
	}
	switch {
	case v.Table == "":
		add("firmware.version.table", "missing (want input or holding)")
	case v.Table != TableInput && v.Table != TableHolding:
		add("firmware.version.table", "unknown or bit table %q (want input or holding)", v.Table)
	}
	switch {
	case v.Type == "":
		add("firmware.version.type", "missing (want one of %s)", oneOf(versionTypes))
		return
	case !slices.Contains(versionTypes, v.Type):
		add("firmware.version.type", "unknown type %q (want one of %s)", v.Type, oneOf(versionTypes))
		return
	case v.Type == VersionString && (v.Length < 1 || v.Length > MaxReadRegisters):
		add("firmware.version.length", "a string version needs length 1..%d (registers), got %d", MaxReadRegisters, v.Length)
		return
	case v.Type == VersionUint16x3 && v.Length != 0:
		add("firmware.version.length", "only for type string")
		return
	}
	start, n, _ := v.registers()
	switch {
	case v.Address == -1:
		add("firmware.version.address", "missing")
	case v.Address < 0 || start+n-1 > maxAddress:
		add("firmware.version.address", "%d registers from %d do not fit 0..65535", n, v.Address)
	case v.Table != "" && p.Quirks.forbids(v.Table, start, start+n):
		add("firmware.version.address", "%s %d..%d overlaps a forbidden range", v.Table, start, start+n-1)
	}
}

// text formats the registers of a register version.
func (v *VersionSpec) text(data []byte) (string, error) {
	if v.Type == VersionUint16x3 {
		if len(data) != 6 {
			return "", fmt.Errorf("%w: version of %d bytes, want 6", ErrBadFrame, len(data))
		}
		return fmt.Sprintf("%d.%d.%d", be16(data), be16(data[2:]), be16(data[4:])), nil
	}
	return trimVersion(string(data)), nil
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
