package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/smpsim"
	"github.com/spf13/cobra"
)

// serialFlags are the flags of `devsim serial`.
type serialFlags struct {
	count        int
	name         string
	bufSize      int
	bufCount     int
	pool         int
	lineDecode   time.Duration
	baud         int
	version      string
	transport    string
	imageVersion string
	imageSize    int
	slotSize     int
	turnaround   time.Duration
	resetSilence time.Duration
	logInterval  time.Duration
	interleave   bool
	legacyRC     bool
	faults       []string
	logLevel     string
}

func newSerialCmd() *cobra.Command {
	var f serialFlags
	cmd := &cobra.Command{
		Use:   "serial [--count N] [--baud 115200] [--buf-size 384] [--pool 2] [--fault ...]",
		Short: "Simulate SMP (MCUmgr) microcontrollers with MCUboot on pseudo-terminals",
		Long: `Serves one or more SMP devices (a Zephyr application with MCUboot), each on its own
pseudo-terminal. Prints "serial: /dev/pts/N" per device, then "ready".

The device reports --buf-size with the params command and drops requests over
buf-size-4 bytes; lines that arrive while its --pool line buffers wait to be
decoded (--line-decode each) are dropped; with --baud both directions are paced
at 10 bits per byte, as on a real UART (0: unpaced).

Faults (repeatable, comma-separated keys, applied to every device):
  --fault drop-requests=N     the next N requests are lost
  --fault drop-responses=N    the next N answers are not sent
  --fault corrupt=N           the next N answers carry a bad CRC
  --fault drop-every=N        every Nth answer is lost (a noisy line)
  --fault corrupt-every=N     every Nth answer carries a bad CRC
  --fault reset-at=BYTES      power cut once an upload reaches BYTES
  --fault erase-delay=2s      the first chunk of an upload waits (slot erase)
  --fault write-delay=5ms     every upload chunk waits (flash write)
  --fault refuse-reset        reset answers EBUSY unless forced
  --fault fail-boot=2.0.0     that image version crashes before it confirms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSerial(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.count, "count", 1, "number of devices, each on its own pseudo-terminal")
	fl.StringVar(&f.name, "name", "drover-mcu", "device name (numbered from 2 on: NAME-2, ...)")
	fl.IntVar(&f.bufSize, "buf-size", smpsim.DefaultBufSize, "SMP buffer size reported by params (MCUMGR_TRANSPORT_NETBUF_SIZE)")
	fl.IntVar(&f.bufCount, "buf-count", smpsim.DefaultBufCount, "SMP buffers: requests queued before more are dropped")
	fl.IntVar(&f.pool, "pool", smpsim.DefaultLinePool, "receive line buffers (UART_MCUMGR_RX_BUF_COUNT)")
	fl.DurationVar(&f.lineDecode, "line-decode", 0, "time the device takes to decode one received line")
	fl.IntVar(&f.baud, "baud", 115200, "pace both directions at this baud rate (0: unpaced)")
	fl.StringVar(&f.version, "smp-version", string(smpsim.V2), "v2 (answers v1 in v1), v1 (answers everything in v1) or v1-strict (refuses v2 with rc 13)")
	fl.StringVar(&f.transport, "transport", string(smpsim.Base64), "base64 (console framing, logs on the line) or raw")
	fl.StringVar(&f.imageVersion, "image-version", "1.0.0", "version of the image running at start")
	fl.IntVar(&f.imageSize, "image-size", 4096, "body size of the image running at start")
	fl.IntVar(&f.slotSize, "slot-size", smpsim.DefaultSlotSize, "size of each image slot")
	fl.DurationVar(&f.turnaround, "turnaround", 0, "processing time of every request")
	fl.DurationVar(&f.resetSilence, "reset-silence", 300*time.Millisecond, "silence on the line while rebooting")
	fl.DurationVar(&f.logInterval, "log-interval", time.Second, "period of the application's log lines (0: none)")
	fl.BoolVar(&f.interleave, "interleave-logs", false, "let log lines fall between the lines of an SMP frame")
	fl.BoolVar(&f.legacyRC, "legacy-rc", false, `add "rc": 0 to successful answers`)
	fl.StringArrayVar(&f.faults, "fault", nil, "fault injection, e.g. \"drop-responses=1,erase-delay=2s\" (repeatable; see above)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// parseSerialFaults reads --fault values into f.
func parseSerialFaults(specs []string, f *smpsim.Faults) error {
	for _, spec := range specs {
		for kv := range strings.SplitSeq(spec, ",") {
			kv = strings.TrimSpace(kv)
			if kv == "" {
				continue
			}
			k, v, hasValue := strings.Cut(kv, "=")
			var err error
			atoi := func(dst *int) {
				*dst, err = strconv.Atoi(v)
				if err == nil && *dst < 0 {
					err = errors.New("negative count")
				}
			}
			switch k {
			case "drop-requests":
				atoi(&f.DropRequests)
			case "drop-responses":
				atoi(&f.DropResponses)
			case "corrupt":
				atoi(&f.CorruptResponses)
			case "drop-every":
				atoi(&f.DropEvery)
			case "corrupt-every":
				atoi(&f.CorruptEvery)
			case "reset-at":
				var n uint64
				n, err = strconv.ParseUint(v, 10, 32)
				f.ResetAtOffset = uint32(n)
			case "erase-delay":
				f.EraseDelay, err = time.ParseDuration(v)
			case "write-delay":
				f.WriteDelay, err = time.ParseDuration(v)
			case "refuse-reset":
				f.RefuseReset = !hasValue || v == "true" || v == "1"
			case "fail-boot":
				f.FailBoot = append(f.FailBoot, v)
			default:
				err = errors.New("unknown key (want drop-requests, drop-responses, corrupt, drop-every, corrupt-every, reset-at, erase-delay, write-delay, refuse-reset, fail-boot)")
			}
			if err == nil && !hasValue && k != "refuse-reset" {
				err = errors.New("needs a value")
			}
			if err != nil {
				return fmt.Errorf("parse --fault %q: %s: %w", spec, k, err)
			}
		}
	}
	return nil
}

func runSerial(cmd *cobra.Command, f *serialFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	if f.count < 1 || f.count > 64 {
		return fmt.Errorf("--count %d outside 1..64", f.count)
	}
	var faults smpsim.Faults
	if err := parseSerialFaults(f.faults, &faults); err != nil {
		return err
	}
	none := func(d time.Duration) time.Duration { // flag 0 means none; Config 0 means default
		if d == 0 {
			return -1
		}
		return d
	}
	var devs []*smpsim.Device
	defer func() {
		for _, d := range devs {
			_ = d.Close()
		}
	}()
	out := cmd.OutOrStdout()
	for i := range f.count {
		name := f.name
		if i > 0 {
			name = fmt.Sprintf("%s-%d", f.name, i+1)
		}
		d, err := smpsim.New(smpsim.Config{
			Name: name, Transport: smpsim.Transport(f.transport), Version: smpsim.VersionMode(f.version),
			BufSize: f.bufSize, BufCount: f.bufCount, LinePool: f.pool, LineDecode: f.lineDecode, Baud: f.baud,
			Turnaround: f.turnaround, LegacyRC: f.legacyRC,
			ImageVersion: f.imageVersion, ImageSize: f.imageSize, SlotSize: f.slotSize,
			ResetSilence: none(f.resetSilence), LogInterval: none(f.logInterval), InterleaveLogs: f.interleave,
			Faults: faults, Logger: log,
		})
		if err != nil {
			return err
		}
		devs = append(devs, d)
		path, err := d.OpenPTY()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "serial: %s\n", path)
	}
	fmt.Fprintln(out, "ready")
	log.Info("smp simulator ready", "devices", len(devs), "baud", f.baud, "buf_size", f.bufSize)

	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(devs))
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = d.Run(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
