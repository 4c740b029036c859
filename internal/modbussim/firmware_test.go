package modbussim

import (
	"cmp"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"strings"
	"testing"
	"time"
)

// Registers of the demo pump's firmware section.
const (
	regStatus  = 990
	regControl = 991
	regOffset  = 992
	regSize    = 994
	regCRC     = 996
	regBlock   = 1000
)

// fwRig drives unit 1 of a simulator PDU by PDU, on a fake clock.
type fwRig struct {
	t   *testing.T
	s   *Sim
	clk *fakeClock
}

func newFwRig(t *testing.T, profileEdit func(string) string) *fwRig {
	t.Helper()
	raw, err := os.ReadFile(pumpProfilePath(t))
	if err != nil {
		t.Fatal(err)
	}
	src := string(raw)
	if profileEdit != nil {
		src = profileEdit(src)
	}
	p, err := ParseProfile("pump.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	s, err := New(p, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fwRig{t: t, s: s, clk: clk}
}

// call sends pdu to unit 1; "" means no answer (silent unit).
func (r *fwRig) call(pdu []byte) string {
	r.t.Helper()
	rep, ok := r.s.dispatch(1, pdu, true)
	if !ok {
		return ""
	}
	return hexs(rep.pdu)
}

func (r *fwRig) write(addr uint16, vals ...uint16) string {
	pdu := []byte{fcWriteMultipleRegs}
	pdu = binary.BigEndian.AppendUint16(pdu, addr)
	pdu = binary.BigEndian.AppendUint16(pdu, uint16(len(vals)))
	pdu = append(pdu, byte(2*len(vals)))
	for _, v := range vals {
		pdu = binary.BigEndian.AppendUint16(pdu, v)
	}
	return r.call(pdu)
}

func (r *fwRig) control(cmd uint16) string { return r.call(writeSingle(regControl, cmd)) }

func (r *fwRig) read(addr, n uint16) []uint16 {
	r.t.Helper()
	got := r.call(readHolding(addr, n))
	b := unhex(r.t, got)
	if len(b) != 2+2*int(n) || b[0] != fcReadHolding {
		r.t.Fatalf("read %d+%d: %s", addr, n, got)
	}
	return regsOf(b[2:])
}

func (r *fwRig) status() uint16 { return r.read(regStatus, 1)[0] }
func (r *fwRig) offset() uint32 {
	v := r.read(regOffset, 2)
	return uint32(v[0])<<16 | uint32(v[1])
}

// block writes data at off through the window.
func (r *fwRig) block(off uint32, data []byte) string {
	vals := []uint16{uint16(off >> 16), uint16(off)}
	for i := 0; i < len(data); i += 2 {
		hi, lo := data[i], byte(0)
		if i+1 < len(data) {
			lo = data[i+1]
		}
		vals = append(vals, uint16(hi)<<8|uint16(lo))
	}
	return r.write(regBlock, vals...)
}

// begin writes the image size and CRC and sends the begin command.
func (r *fwRig) begin(img []byte, crc uint32) string {
	r.t.Helper()
	if got := r.write(regSize, uint16(len(img)>>16), uint16(len(img))); got != "1003E20002" {
		r.t.Fatalf("write size: %s", got)
	}
	if got := r.write(regCRC, uint16(crc>>16), uint16(crc)); got != "1003E40002" {
		r.t.Fatalf("write crc: %s", got)
	}
	return r.control(fwBegin)
}

func (r *fwRig) send(img []byte) {
	r.t.Helper()
	for off := 0; off < len(img); off += 200 {
		if got := r.block(uint32(off), img[off:min(off+200, len(img))]); !strings.HasPrefix(got, "1003E8") {
			r.t.Fatalf("block at %d: %s", off, got)
		}
	}
}

func (r *fwRig) revision() string {
	r.t.Helper()
	got := unhex(r.t, r.call(unhex(r.t, "2B0E0402")))
	return string(got[9:])
}

func (r *fwRig) stats() FirmwareStats {
	st, _ := r.s.Unit(1).Firmware()
	return st
}

// TestFirmwareProtocol walks the device side of the transfer through a
// flash, the refusals of each step, a bad CRC, a cancelled transfer, an
// image that does not boot and one that is not an image.
func TestFirmwareProtocol(t *testing.T) {
	r := newFwRig(t, nil)
	img := FirmwareImage("2.4.0", 21)
	crc := crc32.ChecksumIEEE(img)
	steps := []struct {
		name string
		do   func() string
		want string
	}{
		{"idle at start", func() string {
			if r.status() != fwIdle || r.offset() != 0 {
				return "busy"
			}
			return "idle"
		}, "idle"},
		{"block while idle", func() string { return r.block(0, img[:10]) }, "9004"},
		{"commit while idle", func() string { return r.control(fwCommit) }, "8604"},
		{"apply while idle", func() string { return r.control(fwApply) }, "8604"},
		{"unknown command", func() string { return r.control(9) }, "8603"},
		{"begin without a size", func() string { return r.control(fwBegin) }, "8603"},
		{"begin", func() string { return r.begin(img, crc) }, "0603DF0001"},
		{"status is read-only", func() string { return r.call(writeSingle(regStatus, 3)) }, "8602"},
		{"offset is read-only", func() string { return r.write(regOffset, 0, 5) }, "9002"},
		{"block past the held bytes", func() string { return r.block(4, img[4:10]) }, "9003"},
		{"first block", func() string { return r.block(0, img[:10]) }, "1003E80007"},
		{"same block again", func() string { return r.block(0, img[:10]) }, "1003E80007"},
		{"block inside the window", func() string { return r.write(regBlock+1, 1, 2, 3) }, "9002"},
		{"block without data", func() string { return r.write(regBlock, 0, 10) }, "9003"},
		{"commit before the end", func() string { return r.control(fwCommit) }, "8604"},
		{"last block, padded", func() string { return r.block(10, img[10:]) }, "1003E80008"},
		{"block at the end", func() string { return r.block(21, []byte{1, 2}) }, "9003"},
		{"commit", func() string { return r.control(fwCommit) }, "0603DF0002"},
		{"apply", func() string { return r.control(fwApply) }, "0603DF0003"},
		{"silent while it boots", func() string { return r.call(readHolding(regStatus, 1)) }, ""},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, got, s.want)
		}
	}
	if st := r.stats(); st.Offset != 21 || st.Blocks != 3 || st.Duplicates != 1 || st.BlockBytes != 31 || st.Running != "2.3" || st.Status != fwApplying {
		t.Fatalf("before the boot: %+v", st)
	}
	r.clk.Advance(time.Second)
	if st := r.stats(); st.Running != "2.4.0" || st.Status != fwIdle || st.Offset != 0 || r.revision() != "2.4.0" || r.s.Unit(1).Reboots() != 1 {
		t.Fatalf("after the boot: %+v, FC 43 revision %q", st, r.revision())
	}

	t.Run("bad CRC", func(t *testing.T) {
		r.t = t
		if got := r.begin(img, crc^1); got != "0603DF0001" {
			t.Fatal(got)
		}
		r.send(img)
		if got := r.control(fwCommit); got != "0603DF0002" || r.status() != fwBadCRC || r.offset() != 0 {
			t.Fatalf("commit: %s, status %d, offset %d", got, r.status(), r.offset())
		}
		if got := r.control(fwApply); got != "8604" {
			t.Errorf("apply after a bad CRC: %s", got)
		}
	})
	t.Run("new parameters cancel a transfer", func(t *testing.T) {
		r.t = t
		r.begin(img, crc)
		r.block(0, img[:10])
		if got := r.write(regCRC, 0, 1); got != "1003E40002" || r.status() != fwIdle || r.offset() != 0 {
			t.Fatalf("crc write mid-transfer: %s, status %d, offset %d", got, r.status(), r.offset())
		}
	})
	t.Run("abort", func(t *testing.T) {
		r.t = t
		r.begin(img, crc)
		r.block(0, img[:10])
		if got := r.control(fwAbort); got != "0603DF0004" || r.status() != fwIdle {
			t.Fatalf("abort: %s, status %d", got, r.status())
		}
	})
	t.Run("not an image", func(t *testing.T) {
		r.t = t
		junk := []byte("PK\x03\x04 a zip file, not firmware")
		r.begin(junk, crc32.ChecksumIEEE(junk))
		r.send(junk)
		if r.control(fwCommit); r.status() != fwInvalid {
			t.Fatalf("status %d, want invalid", r.status())
		}
	})
	t.Run("BADBOOT rolls back", func(t *testing.T) {
		r.t = t
		bad := []byte(BadBootMagic + " whatever follows")
		r.begin(bad, crc32.ChecksumIEEE(bad))
		r.send(bad)
		r.control(fwCommit)
		if got := r.control(fwApply); got != "0603DF0003" {
			t.Fatal(got)
		}
		r.clk.Advance(time.Second)
		if st := r.stats(); st.Running != "2.4.0" || st.Rollbacks != 1 || st.Applies != 2 || r.revision() != "2.4.0" {
			t.Fatalf("after a bad boot: %+v", st)
		}
	})
}

// TestFirmwareBusyAndFaults: erase and verify time keep the unit busy (it
// refuses blocks and commands with exception 06, and reports busy or
// verifying), and the faults refuse blocks or corrupt the stored image.
func TestFirmwareBusyAndFaults(t *testing.T) {
	r := newFwRig(t, func(s string) string {
		return strings.Replace(s, "    boot_time: 1s", "    boot_time: 1s\n    erase_time: 200ms\n    verify_time: 300ms", 1)
	})
	img := FirmwareImage("3.0.0", 500)
	crc := crc32.ChecksumIEEE(img)
	r.begin(img, crc)
	if st := r.status(); st != fwBusy || r.block(0, img[:10]) != "9006" || r.control(fwCommit) != "8606" {
		t.Fatalf("erasing: status %d", st)
	}
	r.clk.Advance(200 * time.Millisecond)
	r.s.Unit(1).SetFirmwareFaults(FirmwareFaults{RejectBlocks: true, RejectFrom: 200})
	if got := r.block(0, img[:200]); got != "1003E80066" {
		t.Fatalf("block before the refused range: %s", got)
	}
	if got := r.block(200, img[200:400]); got != "9004" || r.stats().Rejected != 1 {
		t.Fatalf("refused block: %s, %+v", got, r.stats())
	}
	r.s.Unit(1).SetFirmwareFaults(FirmwareFaults{CorruptStored: true})
	r.block(200, img[200:400])
	r.block(400, img[400:])
	r.control(fwCommit)
	if st := r.status(); st != fwVerifying {
		t.Fatalf("status %d, want verifying", st)
	}
	r.clk.Advance(300 * time.Millisecond)
	if st := r.status(); st != fwBadCRC || r.stats().BadCRC != 1 {
		t.Fatalf("status %d after a corrupted store, want bad CRC", st)
	}
}

func TestFirmwareImage(t *testing.T) {
	img := FirmwareImage("1.2.3", 100)
	if v, bad, ok := parseImage(img); len(img) != 100 || v != "1.2.3" || bad || !ok {
		t.Errorf("parseImage(FirmwareImage) = %q %v %v", v, bad, ok)
	}
	for _, tc := range []struct {
		img     string
		version string
		bad, ok bool
	}{
		{"BADBOOT", "", true, true},
		{"DEVSIM-FW  \n", "", false, false},
		{"DEVSIM-FW 1.0", "", false, false},
		{"DEVSIM-FW " + strings.Repeat("9", 80) + "\n", "", false, false},
		{"", "", false, false},
		{"devsim-fw 1.0\n", "", false, false},
	} {
		if v, bad, ok := parseImage([]byte(tc.img)); v != tc.version || bad != tc.bad || ok != tc.ok {
			t.Errorf("parseImage(%q) = %q %v %v", tc.img, v, bad, ok)
		}
	}
}

func TestParseProfileFirmwareErrors(t *testing.T) {
	head := "name: x\npoints:\n  - name: a\n    table: holding\n    address: 0\n    type: uint16\n  - name: v\n    table: input\n    address: 0\n    type: uint16\n"
	regs := "  status: {address: 10}\n  control: {address: 11}\n  offset: {address: 12}\n  image_size: {address: 14}\n  crc: {address: 16}\n"
	for _, tc := range []struct {
		name, src, key string
	}{
		{"block too big", head + "firmware:\n  block: {address: 100, size: 124}\n" + regs + "  version: {fc43: true}\n", "firmware.block.size"},
		{"missing status", head + "firmware:\n  block: {address: 100, size: 12}\n  version: {fc43: true}\n", "firmware.offset"},
		{"no version source", head + "firmware:\n  block: {address: 100, size: 12}\n" + regs + "  version: {type: float}\n", "firmware.version"},
		{"version point not a string", head + "firmware:\n  block: {address: 100, size: 12}\n" + regs + "  version: {point: v}\n", "firmware.version.point"},
		{"overlaps a point", head + "firmware:\n  block: {address: 0, size: 12}\n" + regs + "  version: {fc43: true}\n", "firmware"},
		{"other transfer", head + "firmware:\n  transfer: xmodem\n", "firmware.transfer"},
		{"address not a mapping", head + "firmware:\n  status: 10\n", "firmware.status"},
		{"unknown sim.firmware key", head + "sim:\n  firmware: {versoin: 1}\n", "sim.firmware.versoin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile("sim.yaml", []byte(tc.src))
			var pe *ProfileError
			if !errors.As(err, &pe) || pe.Key != tc.key {
				t.Fatalf("err = %v, want one at key %q", err, tc.key)
			}
		})
	}
}

// fileRecord builds an FC 21 request with one sub-request.
func fileRecord(ref byte, file, rec uint16, data []byte) []byte {
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	pdu := []byte{fcWriteFileRecord, byte(7 + len(data)), ref}
	pdu = binary.BigEndian.AppendUint16(pdu, file)
	pdu = binary.BigEndian.AppendUint16(pdu, rec)
	pdu = binary.BigEndian.AppendUint16(pdu, uint16(len(data)/2))
	return append(pdu, data...)
}

// TestFirmwareFileRecords: with transfer file_records the image arrives
// by FC 21, register i of the image being record i mod records of file
// number + i div records; the answer echoes the request.
func TestFirmwareFileRecords(t *testing.T) {
	r := newFwRig(t, func(s string) string {
		s = strings.Replace(s, "  transfer: registers", "  transfer: file_records", 1)
		return strings.Replace(s, "  block:      { address: 1000, size: 123 }", "  file:       { number: 1, records: 100 }", 1)
	})
	img := FirmwareImage("5.0.0", 211) // files 1 (records 0..99) and 2 (0..5)
	crc := crc32.ChecksumIEEE(img)
	if got := r.call(fileRecord(6, 1, 0, img[:10])); got != "9504" {
		t.Fatalf("FC 21 while idle: %s", got)
	}
	r.begin(img, crc)
	for _, tc := range []struct {
		name string
		req  []byte
		want string // "" = echo
	}{
		{"first records", fileRecord(6, 1, 0, img[:10]), ""},
		{"reference type 7", fileRecord(7, 1, 5, img[10:20]), "9502"},
		{"file before the first", fileRecord(6, 0, 5, img[10:20]), "9502"},
		{"past the file's records", fileRecord(6, 1, 98, img[196:206]), "9502"},
		{"a gap", fileRecord(6, 1, 10, img[20:30]), "9503"},
		{"byte count lies", append(fileRecord(6, 1, 5, img[10:20]), 0), "9503"},
		{"rest of file 1", fileRecord(6, 1, 5, img[10:200]), ""},
		{"file 2", fileRecord(6, 2, 0, img[200:]), ""},
		{"the window is not there", unhex(t, "1003E8000306"+"000000000000"), "9002"},
	} {
		got := r.call(tc.req)
		if want := tc.want; want == "" && got != hexs(tc.req) || want != "" && got != want {
			t.Errorf("%s: got %s, want %s", tc.name, got, cmp.Or(want, "the echo"))
		}
	}
	if r.offset() != 211 || r.control(fwCommit) != "0603DF0002" || r.status() != fwVerified {
		t.Fatalf("after the records: offset %d, status %d", r.offset(), r.status())
	}
	// A unit of the window transfer has no FC 21.
	w := newFwRig(t, nil)
	if got := w.call(fileRecord(6, 1, 0, img[:10])); got != "9501" {
		t.Errorf("FC 21 on a window unit: %s", got)
	}
}
