package bench

import (
	"context"
	"math"
	"os"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/internal/smpsim"
	"golang.org/x/sys/unix"
)

// smpFramingLimit is the upload rate ceiling of the base64 serial
// transport for a device buffer at a baud rate, by the model of
// shared/notes/smp-serial.md A5 (zero turnaround, 128-byte lines, 8N1):
// D = buf−4−8−18 image bytes per chunk, the frame base64-encoded in lines
// of 124 characters plus 3 bytes each, and a 35-byte answer.
func smpFramingLimit(buf, baud int) float64 {
	d := buf - 4 - 8 - 18
	b64 := 4 * int(math.Ceil(float64(d+30)/3))
	lines := int(math.Ceil(float64(b64) / 124))
	wire := b64 + 3*lines
	t := float64(wire+35) / (float64(baud) / 10)
	return float64(d) / t
}

// BenchmarkSMPUpload uploads a 256 KiB MCUboot image with the serial
// plugin's SMP client (stop-and-wait, chunks filling buf_size−4, lines
// paced at the wire rate) to a simulated device on a pseudo-terminal paced
// like a 115200-baud UART, for Zephyr's default buffer (384) and a large
// one (2048). The device has a 2-line receive pool that takes 1 ms to
// decode a line and logs a line a second on the same UART. Reported: rate
// (B/s), its share of the framing limit (target ≥ 85 %), seconds for the
// image, lines the device dropped (must be 0), client retries, and where
// time went per chunk: the silence between an answer and the host's next
// request (host gap) and how late the simulator's transmitter ran (both
// grow with the machine's load). A third run leaves out the client's
// pacing gap, to show what it costs.
func BenchmarkSMPUpload(b *testing.B) {
	const baud = 115200
	const size = 256 << 10
	// An image file of exactly 256 KiB: header, body and the SHA-256 TLV.
	img := smpsim.BuildImage(mcuboot.Version{Major: 2}, size-mcuboot.HeaderSize-40, false)
	if len(img) != size {
		b.Fatalf("image of %d bytes", len(img))
	}
	for _, run := range []struct {
		buf    int
		pacing time.Duration
		name   string
	}{
		{384, smp.PacingAuto, "buf=384"},
		{2048, smp.PacingAuto, "buf=2048"},
		// The client's pacing gap (1/16 of a line) is a safety margin for a
		// 2-line pool; at 115200 the UART itself spaces the lines.
		{384, smp.PacingNone, "buf=384/pacing=none"},
	} {
		buf := run.buf
		b.Run(run.name, func(b *testing.B) {
			path, dev := smpsim.ServePTY(b, smpsim.Config{BufSize: buf, Baud: baud, LinePool: 2, LineDecode: time.Millisecond})
			limit := smpFramingLimit(buf, baud)
			var elapsed time.Duration
			var retries int
			for range b.N {
				f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
				if err != nil {
					b.Fatal(err)
				}
				c := smp.NewClient(f, smp.ClientOptions{CharTime: time.Second * 10 / baud, Pacing: run.pacing})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				if _, err := c.BufSize(ctx); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				err = c.Upload(ctx, img, smp.UploadOptions{})
				elapsed += time.Since(start)
				retries += c.Stats().Retries
				cancel()
				_ = c.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			per := elapsed / time.Duration(b.N)
			rate := float64(size) / per.Seconds()
			cnt := dev.Counters()
			b.ReportMetric(rate, "B/s")
			b.ReportMetric(100*rate/limit, "%limit")
			b.ReportMetric(per.Seconds(), "s/256KiB")
			b.ReportMetric(float64(cnt.LinesDropped), "lines-dropped")
			b.ReportMetric(float64(retries), "retries")
			chunks := max(cnt.UploadChunks, 1)
			gap := cnt.HostGap / time.Duration(chunks)
			late := cnt.TxLate / time.Duration(chunks)
			b.ReportMetric(float64(gap.Microseconds())/1000, "host-gap-ms/chunk")
			b.ReportMetric(float64(late.Microseconds())/1000, "tx-late-ms/chunk")
			b.Logf("buf %d: %.0f B/s = %.1f %% of the framing limit %.0f B/s; 256 KiB in %.1f s; device: %d lines, %d dropped, %d bad frames, %d lost packets; client retries %d; %d chunks, per chunk: host gap %v, transmitter late %v",
				buf, rate, 100*rate/limit, limit, per.Seconds(), cnt.Lines, cnt.LinesDropped, cnt.FramesBad, cnt.PacketsLost, retries, chunks, gap, late)
			if cnt.LinesDropped != 0 {
				b.Errorf("the device dropped %d lines", cnt.LinesDropped)
			}
		})
	}
}
