package modbussim

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// FirmwareSpec is the firmware section of a profile: the registers of the
// register-window transfer (all holding registers; see firmware.go for the
// device's side and docs/firmware.md for the protocol). The simulator
// serves what the gateway's Modbus plugin drives.
type FirmwareSpec struct {
	Transfer  string // "registers" (the window) or "file_records" (FC 21)
	Block     uint16 // registers: first register of the window: offset (uint32), then data
	BlockSize int    // registers: registers in the window, 3..123
	File      uint16 // file_records: file of the image's first record
	Records   int    // file_records: records per file (default 10000)
	Offset    uint16 // uint32: bytes held in order (read-only)
	ImageSize uint16 // uint32: length of the image of the next begin
	CRC       uint16 // uint32: CRC-32 (IEEE) of that image
	Control   uint16 // command register
	Status    uint16 // status register (read-only)
	Version   FirmwareVersion
}

// FirmwareVersion says where the running version is served: FC 43 object
// 0x02, a string point, or registers (text, or three uint16).
type FirmwareVersion struct {
	FC43    bool
	Point   string
	Table   Table
	Address uint16
	Type    string // "string" or "uint16x3"
	Length  int    // registers, for "string"
}

// FirmwareSim is the `sim.firmware` block: how the simulated device
// behaves around a flash.
type FirmwareSim struct {
	Version    string        // running at start; default "1.0.0"
	BootTime   time.Duration // silent after apply; default 1s
	EraseTime  time.Duration // busy after begin; default 0
	VerifyTime time.Duration // verifying after commit; default 0
}

// Firmware simulation defaults.
const (
	DefaultFirmwareVersion = "1.0.0"
	DefaultFirmwareBoot    = time.Second
)

func (d *decoder) address(n *yaml.Node, key string) uint16 {
	if !d.mapping(n, key) {
		return 0
	}
	var addr uint16
	found := false
	for _, kv := range pairs(n) {
		if kv[0].Value == "address" {
			addr, found = d.uint16v(kv[1], key+".address"), true
		}
	}
	if !found {
		d.errf(n, key+".address", "missing")
	}
	return addr
}

// firmware decodes the profile's firmware section. Keys only the gateway
// uses (transfer, busy_timeout, reboot_timeout) are tolerated.
func (d *decoder) firmware(p *Profile, n *yaml.Node) {
	if !d.mapping(n, "firmware") {
		return
	}
	f := &FirmwareSpec{Transfer: "registers", Records: 10000}
	seen := map[string]bool{}
	for _, kv := range pairs(n) {
		k, v := kv[0].Value, kv[1]
		key := "firmware." + k
		seen[k] = true
		switch k {
		case "transfer":
			f.Transfer = d.str(v, key)
			if f.Transfer != "registers" && f.Transfer != "file_records" {
				d.errf(v, key, "transfer %q: the simulator serves registers or file_records", f.Transfer)
			}
		case "file":
			if !d.mapping(v, key) {
				return
			}
			for _, fkv := range pairs(v) {
				switch fkv[0].Value {
				case "number":
					f.File = d.uint16v(fkv[1], key+".number")
				case "records":
					f.Records = int(d.uint16v(fkv[1], key+".records"))
				}
			}
			if f.File == 0 || f.Records < 1 || f.Records > 10000 {
				d.errf(v, key, "want number 1..65535 and records 1..10000")
			}
		case "block":
			if !d.mapping(v, key) {
				return
			}
			for _, bkv := range pairs(v) {
				switch bkv[0].Value {
				case "address":
					f.Block = d.uint16v(bkv[1], key+".address")
				case "size":
					f.BlockSize = int(d.uint16v(bkv[1], key+".size"))
				}
			}
			if f.Transfer != "file_records" && (f.BlockSize < 3 || f.BlockSize > maxWriteRegs || int(f.Block)+f.BlockSize > 65536) {
				d.errf(v, key+".size", "want 3..%d registers within 0..65535", maxWriteRegs)
			}
		case "offset":
			f.Offset = d.address(v, key)
		case "image_size":
			f.ImageSize = d.address(v, key)
		case "crc":
			f.CRC = d.address(v, key)
		case "control":
			f.Control = d.address(v, key)
		case "status":
			f.Status = d.address(v, key)
		case "version":
			d.firmwareVersion(&f.Version, v, key)
		}
	}
	data := "block"
	if f.Transfer == "file_records" {
		data = "file"
	}
	for _, req := range []string{data, "offset", "image_size", "crc", "control", "status", "version"} {
		if !seen[req] {
			d.errf(n, "firmware."+req, "missing")
		}
	}
	p.Firmware = f
}

func (d *decoder) firmwareVersion(v *FirmwareVersion, n *yaml.Node, key string) {
	if !d.mapping(n, key) {
		return
	}
	for _, kv := range pairs(n) {
		k, val := kv[0].Value, kv[1]
		switch k {
		case "fc43":
			v.FC43 = val.Value == "true"
		case "point":
			v.Point = d.str(val, key+".point")
		case "table":
			v.Table = d.table(val, key+".table")
		case "address":
			v.Address = d.uint16v(val, key+".address")
		case "type":
			v.Type = d.str(val, key+".type")
		case "length":
			v.Length = int(d.uint16v(val, key+".length"))
		}
	}
	switch {
	case v.FC43 || v.Point != "":
	case v.Type == "uint16x3":
		v.Length = 3
	case v.Type == "string" && v.Length >= 1 && v.Length <= maxReadRegs:
	default:
		d.errf(n, key, "want fc43: true, point: NAME, or table, address and type (string with length, or uint16x3)")
	}
	if v.Table.isBit() {
		d.errf(n, key+".table", "a version lives in input or holding registers")
	}
}

// firmwareChecks runs after the points are known: the version point must
// exist and be a string, and no transfer register may be a point's.
func (d *decoder) firmwareChecks(p *Profile, n *yaml.Node) error {
	f := p.Firmware
	if f == nil {
		return nil
	}
	if f.Version.Point != "" {
		i := -1
		for j := range p.Points {
			if p.Points[j].Name == f.Version.Point {
				i = j
			}
		}
		if i < 0 || p.Points[i].Type != TypeString {
			return d.errf(n, "firmware.version.point", "want the name of a string point, got %q", f.Version.Point)
		}
	}
	for _, r := range f.registers() {
		for _, pt := range p.Points {
			if pt.Table == Holding && int(pt.Address) < int(r[0])+int(r[1]) && int(r[0]) < int(pt.Address)+pt.Registers() {
				return d.errf(n, "firmware", "registers %d..%d overlap point %q", r[0], int(r[0])+int(r[1])-1, pt.Name)
			}
		}
	}
	return nil
}

// registers lists the holding registers of the transfer as {start, count}.
func (f *FirmwareSpec) registers() [][2]uint16 {
	regs := [][2]uint16{{f.Offset, 2}, {f.ImageSize, 2}, {f.CRC, 2}, {f.Control, 1}, {f.Status, 1}}
	if f.Transfer != "file_records" {
		regs = append(regs, [2]uint16{f.Block, uint16(f.BlockSize)})
	}
	return regs
}

func (d *decoder) firmwareSim(p *Profile, n *yaml.Node) {
	if !d.mapping(n, "sim.firmware") {
		return
	}
	fs := &p.Sim.Firmware
	for _, kv := range pairs(n) {
		k, v := kv[0].Value, kv[1]
		key := "sim.firmware." + k
		switch k {
		case "version":
			fs.Version = d.str(v, key)
		case "boot_time":
			fs.BootTime = d.duration(v, key)
		case "erase_time":
			fs.EraseTime = d.duration(v, key)
		case "verify_time":
			fs.VerifyTime = d.duration(v, key)
		default:
			d.errf(kv[0], key, "unknown key (want version, boot_time, erase_time, verify_time)")
		}
	}
}

// String describes the spec for logs.
func (f *FirmwareSpec) String() string {
	return fmt.Sprintf("block %d+%d, offset %d, image_size %d, crc %d, control %d, status %d",
		f.Block, f.BlockSize, f.Offset, f.ImageSize, f.CRC, f.Control, f.Status)
}
