// Package modbussim simulates Modbus devices for tests, demos and the bench.
//
// A Sim serves one or many unit ids from one simulator profile (the device
// profile format plus a `sim:` block, see profile.go) over Modbus TCP and over
// Modbus RTU or ASCII on a pseudo-terminal or any io.ReadWriter. Values move
// with an injected clock; writes stick in a per-unit store; the reboot and
// factory-reset registers of the profile's methods behave like a real device;
// faults (drop, delay, bad CRC, forced exception) can be set per unit at run
// time. A profile with a firmware section makes each unit flashable: it
// takes images through the register window or FC 21 file records, checks
// the CRC, reboots into them and rolls back the ones that do not boot
// (firmware.go; the rules are in docs/firmware.md, "Modbus devices").
//
// The protocol code here is deliberately independent of the gateway's Modbus
// client (plugins/modbus): it has its own PDU codec, CRC-16/MODBUS and LRC, so
// each side cross-checks the other.
//
// Address rule: a read whose range touches at least one register (or bit) of
// a defined point — or a method or firmware register — succeeds, and the registers in the
// gaps between points read as zero; a range touching none is exception 02.
// Writes follow the same rule; writes to gap registers are accepted and
// discarded. Single writes (FC 5, 6) must hit a defined register.
package modbussim
