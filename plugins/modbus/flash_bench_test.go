package modbus

import (
	"fmt"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/drover-iot/drover/plugins"
)

// flashWireTime is the physical lower bound of uploading size bytes in
// blocks of f on an RTU line: per block, the request and its answer at
// charTime a byte, and two t3.5 gaps (before the answer, before the next
// request); no device latency (shared/notes/modbus.md, B1, B3 and B4).
// Window: the FC 16 request is 9 + 2N bytes for N registers (2 of offset,
// then data), the answer 8. File records: the FC 21 request is 12 + 2N
// (address, function, byte count, the 7-byte sub-request header, data,
// CRC), and the answer echoes it.
func flashWireTime(size int, f *FirmwareSpec, b *Bus) time.Duration {
	var total time.Duration
	for off := 0; off < size; {
		n := min(f.DataBytes(), size-off)
		frames := 9 + 2*(blockHeader+(n+1)/2) + 8
		if f.Transfer == TransferFileRecords {
			_, rec := fileRecordAt(f, uint32(off))
			n = min(n, 2*(f.FileRecords-rec))
			frames = 2 * (12 + 2*((n+1)/2))
		}
		total += time.Duration(frames)*b.charTime() + 2*b.interFrameGap()
		off += n
	}
	return total
}

// BenchmarkModbusFlash flashes a 64 KiB image into a simulated device:
// over Modbus TCP on loopback, and over RTU at 115200 baud 8E1 on the
// simulator's pty, the simulator pacing each answer by the wire time of
// the request and the answer plus t3.5, as a real line would. Window
// blocks are 123 registers (242 bytes of image); FC 21 requests 122
// registers (244 bytes) in files of 10,000 records. upload-B/s is the upload phase
// alone (first uploading event to verifying); s/flash the whole call
// (state reads, begin, commit, apply, the device's 10 ms reboot, the
// version check). wire-B/s is flashWireTime's limit for RTU.
func BenchmarkModbusFlash(b *testing.B) {
	const size = 64 << 10
	for _, tc := range []struct {
		name         string
		rtu, records bool
	}{{"tcp/window", false, false}, {"tcp/fc21", false, true}, {"rtu-115200/window", true, false}, {"rtu-115200/fc21", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			o := rigOpts{rtu: tc.rtu, records: tc.records, perFile: MaxFileRecords, sim: modbussim.Options{FirmwareBoot: 10 * time.Millisecond}}
			if tc.rtu {
				o.sim.Baud, o.sim.Pace = 115200, true
				o.bus = `"timeout": "500ms", "retries": 1`
			}
			r := newFlashRig(b, o)
			ctx := testContext(b)
			var upload time.Duration
			for i := range b.N {
				b.StopTimer()
				v := fmt.Sprintf("9.%d.0", i)
				req := r.image(b, v, modbussim.FirmwareImage(v, size))
				b.StartTimer()
				var t0, t1 time.Time
				err := r.d.Flash(ctx, req, func(ev plugins.FlashEvent) {
					switch {
					case ev.Phase == plugins.PhaseUploading && t0.IsZero():
						t0 = time.Now()
					case ev.Phase == plugins.PhaseVerifying && t1.IsZero():
						t1 = time.Now()
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				upload += t1.Sub(t0)
			}
			rate := float64(size) * float64(b.N) / upload.Seconds()
			b.ReportMetric(rate, "upload-B/s")
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/flash")
			if tc.rtu {
				d, _ := r.d.device("pump-1")
				limit := float64(size) / flashWireTime(size, d.profile.Firmware, d.bus.cfg).Seconds()
				b.ReportMetric(limit, "wire-B/s")
				b.ReportMetric(100*rate/limit, "%wire")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
