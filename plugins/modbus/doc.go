// Package modbus is Drover's Modbus driver: it implements plugins.Plugin for
// Modbus TCP, RTU and ASCII field devices.
//
// The package is a pure core inside a thin I/O shell:
//
//   - profile.go, bus.go: decode and validate the device profile and bus JSON
//     (key paths in every error, unknown keys rejected);
//   - plan.go: turn the points to read into as few block reads as the device
//     allows (pure, table-tested, benchmarked);
//   - codec.go: registers ↔ values for every type, byte order and scale (pure);
//   - frame.go, identify.go: CRC/LRC, RTU response lengths and the FC 43/14
//     PDU codec (pure);
//   - transport_serial.go: Drover's own RTU/ASCII transporter for
//     goburrow/modbus over tarm/serial (exact-length reads, t3.5, flush);
//   - client.go: one bus link (serial or TCP), retries and error mapping;
//   - driver.go, manage.go: the plugins.Plugin implementation;
//   - firmware_profile.go, flash.go, flash_regs.go: the profile's firmware
//     section and Flash over a register window (FC 16) or file records
//     (FC 21), resumed from the device's offset (docs/firmware.md).
//
// goburrow/modbus types stay inside this package; callers see plugins types.
package modbus
