// Package smp is the codec of MCUmgr's Simple Management Protocol (SMP) as
// spoken over a serial line: the 8-byte header, CBOR bodies, both error
// forms, and the two serial transports — the console-friendly base64 line
// framing ("SMP over console": 0x06 0x09 / 0x04 0x14 lines, length prefix,
// CRC-16/XMODEM) and the raw transport (bare packets framed by the header
// length).
//
// The codec does no I/O of its own beyond reading from the io.Reader it is
// handed: the serial plugin (the SMP client) and the device simulator (the SMP
// server) both build on it. References in trailing comments name the Zephyr
// MCUmgr documentation section ("SMP transport: UART/serial", "SMP protocol
// specification").
package smp
