package modbussim

// crcTable is the CRC-16/MODBUS table for the reflected polynomial 0xA001.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the CRC-16/MODBUS of b (init 0xFFFF, reflected poly 0x8005).
// On the wire the low byte goes first. [Modbus over serial line V1.02 §6.2.2]
func CRC16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^x]
	}
	return crc
}

// LRC returns the longitudinal redundancy check of b used by Modbus ASCII:
// the two's complement of the 8-bit sum. [Modbus over serial line V1.02 §6.2.1]
func LRC(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return -s
}

// appendCRC appends the CRC of frame to it, low byte first.
func appendCRC(frame []byte) []byte {
	c := CRC16(frame)
	return append(frame, byte(c), byte(c>>8))
}

// crcOK reports whether the last two bytes of frame are its CRC.
func crcOK(frame []byte) bool {
	n := len(frame)
	if n < 3 {
		return false
	}
	c := CRC16(frame[:n-2])
	return frame[n-2] == byte(c) && frame[n-1] == byte(c>>8)
}
