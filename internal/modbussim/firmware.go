package modbussim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// The device side of the register-window firmware transfer
// (docs/firmware.md, "Modbus devices"). A unit whose profile has a
// firmware section keeps, per unit and for the life of the simulator:
// the running version, the transfer's parameters (image size, CRC), the
// bytes received in order, and a status. A gateway that disconnects and
// comes back finds all of it, so it resumes from the unit's offset.
//
// Simulator images: an image is accepted at commit only if its CRC-32
// matches and it starts with a header line the simulator can boot:
//
//	DEVSIM-FW <version>\n   boots and then reports <version>
//	BADBOOT...              verifies, but fails to boot: after apply the
//	                        unit comes back running the old version
//
// Anything else is status 6 (invalid image) at commit. FirmwareImage
// builds images of the first kind.

// Commands (control register) and statuses (status register); the same
// numbers as plugins/modbus, kept apart so each side checks the other.
const (
	fwBegin  = 1
	fwCommit = 2
	fwApply  = 3
	fwAbort  = 4

	fwIdle      = 0
	fwReceiving = 1
	fwVerifying = 2
	fwVerified  = 3
	fwBadCRC    = 4
	fwBusy      = 5
	fwInvalid   = 6
	fwApplying  = 7
)

// Image header of simulator firmware.
const (
	ImageMagic   = "DEVSIM-FW "
	BadBootMagic = "BADBOOT"
	maxHeader    = 80
	maxImage     = 16 << 20 // a begin for more is refused (exception 03)
)

// FirmwareImage returns a bootable simulator image of size bytes (at least
// the header) that reports version once running; the filler is
// deterministic per version.
func FirmwareImage(version string, size int) []byte {
	img := []byte(ImageMagic + version + "\n")
	r := rand.New(rand.NewPCG(uint64(len(version)), uint64(crc32.ChecksumIEEE([]byte(version)))))
	for len(img) < size {
		img = append(img, byte(r.Uint32()))
	}
	return img
}

// parseImage reads the header: the version an image boots into, or bad
// for a BADBOOT image; ok false when the unit cannot run it at all.
func parseImage(img []byte) (version string, bad, ok bool) {
	if bytes.HasPrefix(img, []byte(BadBootMagic)) {
		return "", true, true
	}
	head := img[:min(len(img), maxHeader)]
	nl := bytes.IndexByte(head, '\n')
	if !bytes.HasPrefix(head, []byte(ImageMagic)) || nl < 0 {
		return "", false, false
	}
	v := strings.TrimSpace(string(head[len(ImageMagic):nl]))
	return v, false, v != ""
}

// FirmwareFaults make a unit misbehave during a flash.
type FirmwareFaults struct {
	RejectBlocks  bool   // refuse blocks at offset RejectFrom and beyond (exception 04)
	RejectFrom    uint32 // first refused offset, with RejectBlocks
	CorruptStored bool   // flip a stored byte before the CRC check (commit ends in bad CRC)
}

// FirmwareStats are a unit's firmware counters and state.
type FirmwareStats struct {
	Running    string // version running
	Status     uint16 // status register
	Offset     uint32 // bytes held in order
	Begins     int
	Blocks     int   // block writes accepted (duplicates included)
	Duplicates int   // blocks that brought no new byte
	BlockBytes int64 // image bytes carried by accepted blocks (duplicates included, padding not)
	Rejected   int   // block writes refused
	Commits    int
	BadCRC     int
	Applies    int
	Rollbacks  int // applied images that failed to boot
}

type fwUnit struct {
	spec   *FirmwareSpec
	cfg    FirmwareSim
	log    *slog.Logger
	faults FirmwareFaults
	stats  FirmwareStats

	running   string
	status    uint16
	size, crc uint32 // parameter registers
	data      []byte
	held      uint32    // bytes received in order
	busyUntil time.Time // end of busy/verifying
	after     uint16    // status when busy/verifying ends
	bootAt    time.Time // end of the reboot after apply
	pending   string    // version the applied image boots into
	pendBad   bool      // the applied image fails to boot
}

func newFwUnit(spec *FirmwareSpec, cfg FirmwareSim, log *slog.Logger) *fwUnit {
	return &fwUnit{spec: spec, cfg: cfg, running: cfg.Version, log: log}
}

var fwStatusNames = map[uint16]string{fwIdle: "idle", fwReceiving: "receiving", fwVerifying: "verifying",
	fwVerified: "verified", fwBadCRC: "bad CRC", fwBusy: "busy", fwInvalid: "invalid image", fwApplying: "applying"}

// tick moves time-driven states on: busy and verifying end, a reboot ends.
func (f *fwUnit) tick(now time.Time) {
	if (f.status == fwBusy || f.status == fwVerifying) && !now.Before(f.busyUntil) {
		f.status = f.after
	}
	if f.status == fwApplying && !now.Before(f.bootAt) {
		if f.pendBad {
			f.stats.Rollbacks++ // the bootloader went back to the old image
			f.log.Info("modbussim firmware failed to boot; rolled back", "version", f.running)
		} else {
			f.running = f.pending
			f.log.Info("modbussim firmware booted", "version", f.running)
		}
		f.reset()
	}
}

func (f *fwUnit) reset() {
	f.status, f.data, f.held = fwIdle, nil, 0
}

// owns reports whether [addr, addr+n) of t overlaps a transfer register.
func (f *fwUnit) owns(t Table, addr, n uint16) bool {
	if t != Holding {
		return false
	}
	for _, r := range f.spec.registers() {
		if int(addr) < int(r[0])+int(r[1]) && int(r[0]) < int(addr)+int(n) {
			return true
		}
	}
	return false
}

// versionRegs returns the registers of a register-served version.
func (f *fwUnit) versionRegs() (Table, uint16, int, bool) {
	v := &f.spec.Version
	if v.FC43 || v.Point != "" {
		return "", 0, 0, false
	}
	return v.Table, v.Address, v.Length, true
}

// touches reports whether a read of [addr, addr+n) hits a register the
// firmware serves.
func (f *fwUnit) touches(t Table, addr, n uint16) bool {
	if f.owns(t, addr, n) {
		return true
	}
	vt, va, vn, ok := f.versionRegs()
	return ok && vt == t && int(addr) < int(va)+vn && int(va) < int(addr)+int(n)
}

// overlay puts the firmware's registers into a read of [addr, addr+len(out)).
func (f *fwUnit) overlay(u *Unit, t Table, addr uint16, out []uint16, now time.Time) {
	f.tick(now)
	put := func(tt Table, at uint16, regs []uint16) {
		if tt != t {
			return
		}
		for k, r := range regs {
			if a := int(at) + k - int(addr); a >= 0 && a < len(out) {
				out[a] = r
			}
		}
	}
	s := f.spec
	put(Holding, s.Status, []uint16{f.status})
	put(Holding, s.Offset, u32(f.held))
	put(Holding, s.ImageSize, u32(f.size))
	put(Holding, s.CRC, u32(f.crc))
	put(Holding, s.Control, []uint16{0})
	if s.Transfer != "file_records" {
		put(Holding, s.Block, make([]uint16, s.BlockSize))
	}
	v := &s.Version
	switch {
	case v.Point != "":
		if i, ok := u.sim.byName[v.Point]; ok {
			p := &u.sim.profile.Points[i]
			put(p.Table, p.Address, encodeValue(p, 0, f.running))
		}
	case v.Type == "uint16x3":
		regs := make([]uint16, 3)
		for i, part := range strings.SplitN(f.running, ".", 3) {
			n, _ := strconv.ParseUint(part, 10, 16)
			regs[i] = uint16(n)
		}
		put(v.Table, v.Address, regs)
	case v.Type == "string":
		put(v.Table, v.Address, encodeValue(&Point{Type: TypeString, Length: v.Length, ByteOrder: "ABCD", Scale: 1}, 0, f.running))
	}
}

func u32(v uint32) []uint16 { return []uint16{uint16(v >> 16), uint16(v)} }

// write runs a write of holding registers that overlaps the transfer's
// registers. It must lie wholly within them: a block write is the window
// from its first register; other registers are written one by one.
func (f *fwUnit) write(u *Unit, addr uint16, vals []uint16, now time.Time) ExceptionCode {
	f.tick(now)
	s := f.spec
	if addr == s.Block && s.Transfer != "file_records" {
		return f.block(vals)
	}
	for k, v := range vals {
		a := addr + uint16(k)
		switch {
		case a == s.Control:
			if ex := f.command(u, v, now); ex != 0 {
				return ex
			}
		case a == s.ImageSize || a == s.ImageSize+1:
			f.size = setHalf(f.size, a == s.ImageSize, v)
			f.cancel()
		case a == s.CRC || a == s.CRC+1:
			f.crc = setHalf(f.crc, a == s.CRC, v)
			f.cancel()
		default: // status, offset, the window past its start, or a point
			return IllegalDataAddress
		}
	}
	return 0
}

func setHalf(x uint32, high bool, v uint16) uint32 {
	if high {
		return x&0xFFFF | uint32(v)<<16
	}
	return x&^0xFFFF | uint32(v)
}

// cancel drops a transfer whose parameters changed, so a resume can never
// mix the bytes of two images.
func (f *fwUnit) cancel() {
	if f.status != fwApplying && f.status != fwIdle {
		f.reset()
	}
}

// block stores one block of the window: [offset hi, offset lo, data...].
func (f *fwUnit) block(vals []uint16) ExceptionCode {
	if len(vals) < 3 || len(vals) > f.spec.BlockSize {
		return IllegalDataValue
	}
	off := uint32(vals[0])<<16 | uint32(vals[1])
	data := make([]byte, 0, 2*(len(vals)-2))
	for _, v := range vals[2:] {
		data = binary.BigEndian.AppendUint16(data, v)
	}
	return f.store(off, data)
}

// fileRecord runs an FC 21 request (the data after the function code):
// each sub-request {06, file, record, length, data} is stored at its byte
// offset in the image; the answer echoes the request. [V1.1b3 §6.15]
func (f *fwUnit) fileRecord(req []byte) []byte {
	d := req[1:]
	if len(d) < 1 || int(d[0]) != len(d)-1 || d[0] < 0x09 || d[0] > 0xFB {
		return exceptionPDU(fcWriteFileRecord, IllegalDataValue)
	}
	for sub := d[1:]; len(sub) > 0; {
		if len(sub) < 7 {
			return exceptionPDU(fcWriteFileRecord, IllegalDataValue)
		}
		file, rec, n := be16(sub[1:]), int(be16(sub[3:])), int(be16(sub[5:]))
		if len(sub) < 7+2*n || n == 0 {
			return exceptionPDU(fcWriteFileRecord, IllegalDataValue)
		}
		if sub[0] != 6 || file < f.spec.File || rec+n > f.spec.Records {
			return exceptionPDU(fcWriteFileRecord, IllegalDataAddress)
		}
		reg := (int(file-f.spec.File)*f.spec.Records + rec)
		if ex := f.store(uint32(2*reg), sub[7:7+2*n]); ex != 0 {
			return exceptionPDU(fcWriteFileRecord, ex)
		}
		sub = sub[7+2*n:]
	}
	return append([]byte(nil), req...)
}

// store keeps data at byte offset off of the image being received.
func (f *fwUnit) store(off uint32, data []byte) ExceptionCode {
	switch {
	case f.status == fwBusy:
		return ServerDeviceBusy
	case f.status != fwReceiving:
		f.stats.Rejected++
		return ServerDeviceFailure
	}
	if off > f.held || off >= f.size {
		f.stats.Rejected++
		return IllegalDataValue // a gap: the gateway asks the offset and resends
	}
	if f.faults.RejectBlocks && off >= f.faults.RejectFrom {
		f.stats.Rejected++
		return ServerDeviceFailure
	}
	n := min(uint32(len(data)), f.size-off)
	copy(f.data[off:off+n], data[:n])
	f.stats.Blocks++
	f.stats.BlockBytes += int64(n)
	if off+n <= f.held {
		f.stats.Duplicates++
	}
	f.held = max(f.held, off+n)
	return 0
}

func (f *fwUnit) command(u *Unit, cmd uint16, now time.Time) ExceptionCode {
	if (f.status == fwBusy || f.status == fwVerifying) && cmd != fwAbort {
		return ServerDeviceBusy
	}
	switch cmd {
	case fwBegin:
		if f.size == 0 || f.size > maxImage {
			return IllegalDataValue
		}
		f.stats.Begins++
		f.log.Info("modbussim firmware transfer begun", "size", f.size, "crc", fmt.Sprintf("%08x", f.crc))
		f.data, f.held = make([]byte, f.size), 0
		f.busy(now, f.cfg.EraseTime, fwBusy, fwReceiving)
	case fwCommit:
		if f.status != fwReceiving || f.held != f.size {
			return ServerDeviceFailure
		}
		f.stats.Commits++
		if f.faults.CorruptStored {
			f.data[len(f.data)/2] ^= 0x55
		}
		result := uint16(fwVerified)
		if crc32.ChecksumIEEE(f.data) != f.crc {
			result = fwBadCRC
			f.stats.BadCRC++
		} else if v, bad, ok := parseImage(f.data); !ok {
			result = fwInvalid
		} else {
			f.pending, f.pendBad = v, bad
		}
		if result != fwVerified {
			f.data, f.held = nil, 0 // discarded: nothing of it is ever applied
		}
		f.log.Info("modbussim firmware checked", "result", fwStatusNames[result])
		f.busy(now, f.cfg.VerifyTime, fwVerifying, result)
	case fwApply:
		if f.status != fwVerified {
			return ServerDeviceFailure
		}
		f.stats.Applies++
		f.log.Info("modbussim firmware applied; rebooting", "boot_time", f.cfg.BootTime)
		f.status = fwApplying
		f.bootAt = now.Add(f.cfg.BootTime)
		u.restartLocked(now, f.cfg.BootTime)
	case fwAbort:
		if f.status != fwApplying {
			f.reset()
		}
	default:
		return IllegalDataValue
	}
	return 0
}

// busy enters state for d (when d > 0), then next.
func (f *fwUnit) busy(now time.Time, d time.Duration, state, next uint16) {
	if d <= 0 {
		f.status = next
		return
	}
	f.status, f.after, f.busyUntil = state, next, now.Add(d)
}

// SetFirmwareFaults replaces the unit's firmware faults (no effect on a
// unit without a firmware section).
func (u *Unit) SetFirmwareFaults(ff FirmwareFaults) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fw != nil {
		u.fw.faults = ff
	}
}

// Firmware returns the unit's firmware state and counters; false when its
// profile has no firmware section.
func (u *Unit) Firmware() (FirmwareStats, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fw == nil {
		return FirmwareStats{}, false
	}
	u.fw.tick(u.sim.now())
	st := u.fw.stats
	st.Running, st.Status, st.Offset = u.fw.running, u.fw.status, u.fw.held
	return st, true
}

// revisionLocked is the FC 43 MajorMinorRevision the unit reports: its
// running firmware when versions are served that way, else "" (the
// profile's identity).
func (u *Unit) revisionLocked(now time.Time) string {
	if u.fw == nil || !u.fw.spec.Version.FC43 {
		return ""
	}
	u.fw.tick(now)
	return u.fw.running
}
