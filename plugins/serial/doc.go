// Package serial is Drover's plugin for microcontrollers managed over SMP
// (MCUmgr's Simple Management Protocol) on a UART: Zephyr or MCUboot
// firmware, or any firmware with an SMP server. One device sits on each
// serial bus. Points read statistics, settings and OS information;
// writable settings take desired configuration (with read-back); Identify
// reports the image slots; Reboot and FactoryReset are SMP commands; Flash
// uploads an MCUboot image with resume, tests it, resets the device and
// confirms the new image or reports a rollback; Scan probes serial ports
// for SMP devices.
//
// The protocol itself (framing, header, CBOR, the client with its reader,
// retries, pacing and upload) lives in internal/smp; this package maps the
// plugin contract onto it. The port is locked with internal/portlock, the
// same lock the Modbus plugin takes.
package serial
