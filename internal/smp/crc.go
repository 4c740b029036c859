package smp

// CRC16 is CRC-16/XMODEM (poly 0x1021, init 0, not reflected, no final XOR),
// the checksum of the serial framing [SMP transport: UART/serial]. Its check
// value for "123456789" is 0x31C3; with no final XOR, the CRC of a frame
// followed by its own big-endian CRC is 0.
func CRC16(b []byte) uint16 {
	return crc16Update(0, b)
}

func crc16Update(crc uint16, b []byte) uint16 {
	for _, c := range b {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^c]
	}
	return crc
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
