package modbus

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Function codes the driver sends.
const (
	fcReadCoils          = 0x01
	fcReadDiscrete       = 0x02
	fcReadHolding        = 0x03
	fcReadInput          = 0x04
	fcWriteSingleCoil    = 0x05
	fcWriteSingleReg     = 0x06
	fcWriteMultipleCoils = 0x0F
	fcWriteMultipleRegs  = 0x10
	fcReadFileRecord     = 0x14
	fcWriteFileRecord    = 0x15
	fcMaskWrite          = 0x16
	fcReadWriteRegs      = 0x17
	fcEncapsulated       = 0x2B // MEI transport; 0x0E = Read Device Identification
	meiDeviceID          = 0x0E
)

// RTU frame limits (Modbus over Serial Line V1.02, 2.5.1).
const (
	rtuMaxADU       = 256
	rtuExceptionLen = 5
	asciiMaxADU     = 513
)

// crc16 is CRC-16/MODBUS: reflected poly 0xA001, init 0xFFFF. The result
// goes on the wire low byte first (Modbus over Serial Line V1.02, 6.2.2).
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// checkCRC verifies the trailing CRC of an RTU frame.
func checkCRC(frame []byte) error {
	if len(frame) < 4 {
		return fmt.Errorf("%w: %d bytes is too short for an RTU frame", ErrBadFrame, len(frame))
	}
	n := len(frame) - 2
	got := binary.LittleEndian.Uint16(frame[n:])
	if want := crc16(frame[:n]); got != want {
		return fmt.Errorf("%w: CRC %04X, want %04X", ErrBadFrame, got, want)
	}
	return nil
}

// lrc is the ASCII mode checksum: two's complement of the byte sum
// (Modbus over Serial Line V1.02, 6.2.1).
func lrc(b []byte) byte {
	var sum byte
	for _, c := range b {
		sum += c
	}
	return -sum
}

// checkASCII verifies an ASCII frame ":" hex… LRC CRLF and returns its
// binary content (address, PDU) without the LRC.
func checkASCII(frame []byte) ([]byte, error) {
	n := len(frame)
	if n < 9 || frame[0] != ':' || frame[n-2] != '\r' || frame[n-1] != '\n' || (n-3)%2 != 0 {
		return nil, fmt.Errorf("%w: malformed ASCII frame %q", ErrBadFrame, truncate(frame))
	}
	raw := make([]byte, (n-3)/2)
	if _, err := hex.Decode(raw, frame[1:n-2]); err != nil {
		return nil, fmt.Errorf("%w: ASCII frame is not hex: %v", ErrBadFrame, err)
	}
	body, sum := raw[:len(raw)-1], raw[len(raw)-1]
	if want := lrc(body); sum != want {
		return nil, fmt.Errorf("%w: LRC %02X, want %02X", ErrBadFrame, sum, want)
	}
	return body, nil
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// responseLength returns how many bytes the response to pdu-level request
// req (function code first) has in total, given the first bytes got of the
// response (unit id first, same layout as RTU without CRC plus trailer). When
// got is too short to tell, it returns the length needed to tell more (always
// > len(got)). trailer is 2 for RTU (CRC).
//
// Lengths by function (Modbus Application Protocol V1.1b3, 6.x):
// exception 3+trailer; FC 1/2/3/4/20/21/23: 3+byte count+trailer; FC 5/6/15/16:
// 6+trailer; FC 22: 8+trailer; FC 43/14: parsed object by object.
func responseLength(req, got []byte, trailer int) (int, error) {
	if len(got) < 2 {
		return 2, nil
	}
	if got[0] != req[0] {
		return 0, fmt.Errorf("%w: reply from unit %d to a request for unit %d", ErrBadFrame, got[0], req[0])
	}
	fc := req[1]
	switch got[1] {
	case fc | 0x80:
		return 3 + trailer, nil
	case fc:
	default:
		return 0, fmt.Errorf("%w: reply has function %d to a request with function %d", ErrBadFrame, got[1], fc)
	}
	switch fc {
	case fcReadCoils, fcReadDiscrete, fcReadHolding, fcReadInput, fcReadWriteRegs, fcReadFileRecord, fcWriteFileRecord:
		if len(got) < 3 {
			return 3, nil
		}
		return 3 + int(got[2]) + trailer, nil
	case fcWriteSingleCoil, fcWriteSingleReg, fcWriteMultipleCoils, fcWriteMultipleRegs:
		return 6 + trailer, nil
	case fcMaskWrite:
		return 8 + trailer, nil
	case fcEncapsulated:
		return deviceIDLength(got, trailer)
	}
	return 0, fmt.Errorf("%w: cannot frame a reply to function %d", ErrBadFrame, fc)
}

// deviceIDLength frames an FC 43/14 reply: unit, 2B, 0E, code, conformity,
// more follows, next id, count, then count × {id, length, value}.
func deviceIDLength(got []byte, trailer int) (int, error) {
	const head = 8
	if len(got) < head {
		return head, nil
	}
	if got[2] != meiDeviceID {
		return 0, fmt.Errorf("%w: MEI type %02X in a device identification reply", ErrBadFrame, got[2])
	}
	pos := head
	for range int(got[7]) {
		if len(got) < pos+2 {
			return pos + 2, nil
		}
		pos += 2 + int(got[pos+1])
		if pos > rtuMaxADU {
			return 0, fmt.Errorf("%w: device identification reply too long", ErrBadFrame)
		}
	}
	return pos + trailer, nil
}
