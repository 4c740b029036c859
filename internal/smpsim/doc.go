// Package smpsim simulates a microcontroller managed over MCUmgr's SMP on a
// UART, as a Zephyr application with MCUboot presents itself: the SMP
// server (OS, image, stat, settings and Zephyr basic groups), two image
// slots with MCUboot's test/confirm/revert semantics, console log lines
// sharing the UART, and the device's receive path — a small pool of line
// buffers, decode time per line, a reassembly buffer of buf_size bytes —
// so a host that writes too fast loses lines exactly where a real device
// would.
//
// A Device serves a pseudo-terminal (OpenPTY, Run) or any io.ReadWriter
// (Serve). With Config.Baud set, bytes in both directions take their wire
// time (10 bits per byte, 8N1), so throughput through the pty is that of a
// real UART. Faults (lost or corrupt frames, a power cut mid-upload, slow
// flash, a reset refused with EBUSY) are set in the Config or at run time
// with SetFaults; Counters and Wait let tests await what the device saw.
//
// The protocol side is built on internal/smp (framing, header, CBOR) and
// internal/mcuboot (image header and hash). Behaviour follows the Zephyr
// MCUmgr sources as summarised in shared/notes/smp-serial.md; where the
// simulator had to choose, the doc comment of the handler says so.
package smpsim
