package modbussim

import "time"

// handleLocked executes one request PDU and returns the response PDU. It
// checks in the order the spec's state diagrams use: function code (01),
// quantity and length (03), address (02). [V1.1b3 §6]
func (u *Unit) handleLocked(now time.Time, req []byte) []byte {
	fc := req[0]
	d := req[1:]
	switch fc {
	case fcReadCoils, fcReadDiscrete:
		if len(d) != 4 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		addr, n := be16(d), be16(d[2:])
		if n < 1 || n > maxReadBits {
			return exceptionPDU(fc, IllegalDataValue)
		}
		t := Coil
		if fc == fcReadDiscrete {
			t = Discrete
		}
		bits, ex := u.readBitsLocked(t, addr, n, now)
		if ex != 0 {
			return exceptionPDU(fc, ex)
		}
		b := packBits(bits)
		return append([]byte{fc, byte(len(b))}, b...)

	case fcReadHolding, fcReadInput:
		if len(d) != 4 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		addr, n := be16(d), be16(d[2:])
		if n < 1 || n > maxReadRegs {
			return exceptionPDU(fc, IllegalDataValue)
		}
		t := Holding
		if fc == fcReadInput {
			t = Input
		}
		regs, ex := u.readRegsLocked(t, addr, n, now)
		if ex != 0 {
			return exceptionPDU(fc, ex)
		}
		return regsResponse(fc, regs)

	case fcWriteSingleCoil:
		if len(d) != 4 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		addr, v := be16(d), be16(d[2:])
		if v != 0xFF00 && v != 0x0000 { // [V1.1b3 §6.5]
			return exceptionPDU(fc, IllegalDataValue)
		}
		if !u.exact(Coil, addr) {
			return exceptionPDU(fc, IllegalDataAddress)
		}
		if ex := u.writeBitsLocked(Coil, addr, []bool{v == 0xFF00}, true); ex != 0 {
			return exceptionPDU(fc, ex)
		}
		return append([]byte(nil), req...)

	case fcWriteSingleReg:
		if len(d) != 4 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		addr, v := be16(d), be16(d[2:])
		if !u.exact(Holding, addr) {
			return exceptionPDU(fc, IllegalDataAddress)
		}
		if ex := u.writeRegsLocked(Holding, addr, []uint16{v}, true); ex != 0 {
			return exceptionPDU(fc, ex)
		}
		return append([]byte(nil), req...)

	case fcWriteMultipleCoils:
		if len(d) < 5 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		addr, n, bc := be16(d), be16(d[2:]), int(d[4])
		if n < 1 || n > maxWriteBits || bc != (int(n)+7)/8 || len(d) != 5+bc {
			return exceptionPDU(fc, IllegalDataValue)
		}
		if ex := u.writeBitsLocked(Coil, addr, unpackBits(d[5:], int(n)), true); ex != 0 {
			return exceptionPDU(fc, ex)
		}
		return put16(put16([]byte{fc}, addr), n)

	case fcWriteMultipleRegs:
		if len(d) < 5 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		addr, n, bc := be16(d), be16(d[2:]), int(d[4])
		if n < 1 || n > maxWriteRegs || bc != 2*int(n) || len(d) != 5+bc {
			return exceptionPDU(fc, IllegalDataValue)
		}
		if ex := u.writeRegsLocked(Holding, addr, regsOf(d[5:]), true); ex != 0 {
			return exceptionPDU(fc, ex)
		}
		return put16(put16([]byte{fc}, addr), n)

	case fcReadWriteRegs:
		if len(d) < 9 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		raddr, rn, waddr, wn, bc := be16(d), be16(d[2:]), be16(d[4:]), be16(d[6:]), int(d[8])
		if rn < 1 || rn > maxReadRegs || wn < 1 || wn > maxRWWriteReg || bc != 2*int(wn) || len(d) != 9+bc {
			return exceptionPDU(fc, IllegalDataValue)
		}
		if !rangeOK(raddr, rn) || !u.touches(Holding, raddr, rn) {
			return exceptionPDU(fc, IllegalDataAddress)
		}
		// The write happens before the read. [V1.1b3 §6.17]
		if ex := u.writeRegsLocked(Holding, waddr, regsOf(d[9:]), true); ex != 0 {
			return exceptionPDU(fc, ex)
		}
		regs, ex := u.readRegsLocked(Holding, raddr, rn, now)
		if ex != 0 {
			return exceptionPDU(fc, ex)
		}
		return regsResponse(fc, regs)

	case fcWriteFileRecord:
		if u.fw == nil || u.fw.spec.Transfer != "file_records" {
			return exceptionPDU(fc, IllegalFunction)
		}
		u.fw.tick(now)
		return u.fw.fileRecord(req)

	case fcEncapsulated:
		if len(d) < 1 || d[0] != meiReadDeviceID {
			return exceptionPDU(fc, IllegalFunction)
		}
		if len(d) != 3 {
			return exceptionPDU(fc, IllegalDataValue)
		}
		return u.sim.identity.response(d[1], d[2], u.revisionLocked(now))
	}
	return exceptionPDU(fc, IllegalFunction)
}

// exact reports whether addr is a register of a point or a method register.
func (u *Unit) exact(t Table, addr uint16) bool { return u.touches(t, addr, 1) }

func regsOf(b []byte) []uint16 {
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = be16(b[2*i:])
	}
	return out
}

func regsResponse(fc byte, regs []uint16) []byte {
	out := []byte{fc, byte(2 * len(regs))}
	for _, r := range regs {
		out = put16(out, r)
	}
	return out
}

// deviceID is the object table of Read Device Identification.
type deviceID struct {
	objects map[byte]string // id → value; ids 0–2 always present
	maxID   byte            // highest id present
}

func newDeviceID(id Identity, name string) *deviceID {
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	if name == "" {
		name = "devsim"
	}
	objs := map[byte]string{
		0x00: def(id.Vendor, "Drover"),
		0x01: def(id.Product, name),
		0x02: def(id.Revision, "1.0"),
	}
	for k, v := range map[byte]string{0x03: id.URL, 0x04: id.ProductName, 0x05: id.Model, 0x06: id.Application} {
		if v != "" {
			objs[k] = v
		}
	}
	d := &deviceID{objects: objs}
	for k, v := range objs {
		if len(v) > 240 { // one object must fit a response PDU
			objs[k] = v[:240]
		}
		d.maxID = max(d.maxID, k)
	}
	return d
}

// response answers 2B 0E code objectID. Streams (codes 1–3) start at
// objectID (or at 0 if it is outside the category) and page with
// "more follows" when the PDU is full; code 4 returns one object or 02.
// Code 3 (extended) returns the regular objects: no private ones exist.
// A non-empty revision replaces object 0x02 (a flashed unit reports the
// firmware it runs). [V1.1b3 §6.21]
func (d *deviceID) response(code, objectID byte, revision string) []byte {
	objects := d.objects
	if revision != "" {
		objects = make(map[byte]string, len(d.objects))
		for k, v := range d.objects {
			objects[k] = v
		}
		objects[0x02] = revision
	}
	conformity := byte(0x81) // basic, stream and individual access
	if d.maxID > 0x02 {
		conformity = 0x82
	}
	head := func(more, next, count byte) []byte {
		return []byte{fcEncapsulated, meiReadDeviceID, code, conformity, more, next, count}
	}
	switch code {
	case 0x04:
		v, ok := objects[objectID]
		if !ok {
			return exceptionPDU(fcEncapsulated, IllegalDataAddress)
		}
		out := head(0, 0, 1)
		return append(append(out, objectID, byte(len(v))), v...)
	case 0x01, 0x02, 0x03:
	default:
		return exceptionPDU(fcEncapsulated, IllegalDataValue)
	}
	last := byte(0x02)
	if code != 0x01 {
		last = 0x06
	}
	if objectID > last {
		objectID = 0
	}
	out := head(0, 0, 0)
	count := byte(0)
	for id := objectID; id <= last; id++ {
		v, ok := objects[id]
		if !ok {
			continue
		}
		if len(out)+2+len(v) > maxPDU {
			out[4], out[5] = 0xFF, id
			break
		}
		out = append(append(out, id, byte(len(v))), v...)
		count++
	}
	out[6] = count
	return out
}
