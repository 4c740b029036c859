package modbussim

import (
	"encoding/binary"
	"fmt"
)

// Function codes served. [Modbus Application Protocol V1.1b3 §6]
const (
	fcReadCoils          = 0x01
	fcReadDiscrete       = 0x02
	fcReadHolding        = 0x03
	fcReadInput          = 0x04
	fcWriteSingleCoil    = 0x05
	fcWriteSingleReg     = 0x06
	fcWriteMultipleCoils = 0x0F
	fcWriteMultipleRegs  = 0x10
	fcWriteFileRecord    = 0x15
	fcReadWriteRegs      = 0x17
	fcEncapsulated       = 0x2B
	meiReadDeviceID      = 0x0E
)

// Quantity limits per request, from the 253-byte PDU. [V1.1b3 §6.1–6.17]
const (
	maxReadBits   = 2000 // FC 1, 2
	maxReadRegs   = 125  // FC 3, 4, 23 read
	maxWriteBits  = 1968 // FC 15
	maxWriteRegs  = 123  // FC 16
	maxRWWriteReg = 121  // FC 23 write
	maxPDU        = 253
)

// ExceptionCode is a Modbus exception code. It implements error so the Unit
// accessors can return the same code a client would see.
type ExceptionCode byte

// Exception codes. [V1.1b3 §7]
const (
	IllegalFunction        ExceptionCode = 0x01
	IllegalDataAddress     ExceptionCode = 0x02
	IllegalDataValue       ExceptionCode = 0x03
	ServerDeviceFailure    ExceptionCode = 0x04
	Acknowledge            ExceptionCode = 0x05
	ServerDeviceBusy       ExceptionCode = 0x06
	GatewayPathUnavailable ExceptionCode = 0x0A
	GatewayTargetFailed    ExceptionCode = 0x0B
)

// Error implements error.
func (e ExceptionCode) Error() string {
	names := map[ExceptionCode]string{
		IllegalFunction: "illegal function", IllegalDataAddress: "illegal data address",
		IllegalDataValue: "illegal data value", ServerDeviceFailure: "server device failure",
		Acknowledge: "acknowledge", ServerDeviceBusy: "server device busy",
		GatewayPathUnavailable: "gateway path unavailable", GatewayTargetFailed: "gateway target device failed to respond",
	}
	if n, ok := names[e]; ok {
		return fmt.Sprintf("modbus exception %02X: %s", byte(e), n)
	}
	return fmt.Sprintf("modbus exception %02X", byte(e))
}

// exceptionPDU builds the exception response to function code fc. [V1.1b3 §7]
func exceptionPDU(fc byte, code ExceptionCode) []byte {
	return []byte{fc | 0x80, byte(code)}
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

func put16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

// packBits packs bools LSB first, as FC 1/2/15 do. [V1.1b3 §6.1]
func packBits(bits []bool) []byte {
	out := make([]byte, (len(bits)+7)/8)
	for i, v := range bits {
		if v {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

func unpackBits(b []byte, n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = b[i/8]&(1<<(i%8)) != 0
	}
	return out
}

// isWriteFC reports whether fc changes state (the only kind valid as a
// broadcast).
func isWriteFC(fc byte) bool {
	switch fc {
	case fcWriteSingleCoil, fcWriteSingleReg, fcWriteMultipleCoils, fcWriteMultipleRegs:
		return true
	}
	return false
}

// rangeOK reports whether addr..addr+qty-1 stays inside the 16-bit space.
func rangeOK(addr, qty uint16) bool { return int(addr)+int(qty) <= 65536 }
