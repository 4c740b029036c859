package modbus

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/plugintest"
)

// Version sources of testdata/firmware/pump.yaml, by name.
var versionSources = map[string]string{
	"fc43":     `{ fc43: true }`,
	"point":    `{ point: fw_version }`,
	"string":   `{ table: input, address: 40, type: string, length: 8 }`,
	"uint16x3": `{ table: holding, address: 50, type: uint16x3 }`,
}

// flashRig is a Driver with one bus to a simulator serving the firmware
// test profile: over TCP, or over RTU on the simulator's own pty.
type flashRig struct {
	d    *Driver
	sim  *modbussim.Sim
	dir  string
	prof json.RawMessage
}

type rigOpts struct {
	version string // key of versionSources; default fc43
	records bool   // transfer file_records (FC 21) instead of the window
	perFile int    // records a file with records; default 1000
	rtu     bool
	units   []byte // default {1}; device "pump-N" per unit
	sim     modbussim.Options
	bus     string // extra bus keys, JSON members
}

func newFlashRig(t testing.TB, o rigOpts) *flashRig {
	t.Helper()
	if o.version == "" {
		o.version = "fc43"
	}
	if len(o.units) == 0 {
		o.units = []byte{1}
	}
	raw, err := os.ReadFile("testdata/firmware/pump.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(raw), "version:    VERSION", "version:    "+versionSources[o.version], 1)
	if o.records {
		src = strings.Replace(src, "  transfer: registers", "  transfer: file_records", 1)
		src = strings.Replace(src, "  block:      { address: 1000, size: 123 }",
			fmt.Sprintf("  file:       { number: 3, records: %d }", cmp.Or(o.perFile, 1000)), 1)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "pump.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := modbussim.LoadProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	so := o.sim
	so.Units = o.units
	if so.FirmwareBoot == 0 {
		so.FirmwareBoot = 300 * time.Millisecond
	}
	sim, err := modbussim.New(p, so)
	if err != nil {
		t.Fatal(err)
	}
	bus := `"timeout": "300ms", "retries": 1`
	if o.bus != "" {
		bus = o.bus
	}
	if o.rtu {
		pty, err := sim.OpenPTY(modbussim.RTU)
		if err != nil {
			t.Fatal(err)
		}
		bus = fmt.Sprintf(`{"mode": "rtu", "port": %q, "baud": %d, %s}`, pty, max(so.Baud, 19200), bus)
	} else {
		addr, err := sim.ListenTCP("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		bus = fmt.Sprintf(`{"mode": "tcp", "address": %q, %s}`, addr, bus)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulator: %v", err)
		}
	})
	r := &flashRig{d: New(Options{}), sim: sim, dir: dir, prof: deviceProfileJSON(t, []byte(src))}
	tctx := testContext(t)
	if err := r.d.OpenBus(tctx, plugins.BusConfig{Name: "b", Config: json.RawMessage(bus)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.d.CloseBus(context.Background(), "b") })
	for _, u := range o.units {
		id := fmt.Sprintf("pump-%d", u)
		if err := r.d.Attach(tctx, plugins.DeviceConfig{ID: id, Bus: "b", Address: int(u), Profile: r.prof}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// deviceProfileJSON is a simulator profile as the gateway hands it to the
// plugin: sim blocks removed, YAML turned into JSON.
func deviceProfileJSON(t testing.TB, simYAML []byte) json.RawMessage {
	t.Helper()
	dev, err := modbussim.DeviceProfileYAML(simYAML)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(dev, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// image writes data as an image file and returns the request to flash it
// into pump-1 as version.
func (r *flashRig) image(t testing.TB, version string, data []byte) plugins.FlashRequest {
	t.Helper()
	path := filepath.Join(r.dir, fmt.Sprintf("fw-%s-%d.bin", version, len(data)))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m, _ := json.Marshal(map[string]any{"version": version, "sha256": hex.EncodeToString(sum[:])})
	return plugins.FlashRequest{DeviceID: "pump-1", ImagePath: path, Manifest: m}
}

func (r *flashRig) fw(t testing.TB, unit byte) modbussim.FirmwareStats {
	t.Helper()
	st, ok := r.sim.Unit(unit).Firmware()
	if !ok {
		t.Fatal("unit has no firmware")
	}
	return st
}

// events collects Flash events; safe for the callback.
type events struct {
	mu  sync.Mutex
	evs []plugins.FlashEvent
}

func (e *events) add(ev plugins.FlashEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) phases() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.evs {
		if len(out) == 0 || out[len(out)-1] != ev.Phase {
			out = append(out, ev.Phase)
		}
	}
	return out
}

func (e *events) last() plugins.FlashEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.evs) == 0 {
		return plugins.FlashEvent{}
	}
	return e.evs[len(e.evs)-1]
}

func (e *events) first(phase string) (plugins.FlashEvent, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Phase == phase {
			return ev, true
		}
	}
	return plugins.FlashEvent{}, false
}

// blockCount is how many requests upload the image from byte from: 242-byte
// window blocks, or FC 21 requests of 122 registers that stop at each
// 1000-record file's end.
func blockCount(records bool, from, size int) int {
	n := 0
	for off := from; off < size; n++ {
		step := min(242, size-off)
		if records {
			step = min(244, size-off, 2*(1000-(off/2)%1000))
		}
		off += step
	}
	return n
}

var fullPhases = []string{plugins.PhaseUploading, plugins.PhaseVerifying, plugins.PhaseApplying, plugins.PhaseRebooting, plugins.PhaseConfirming, plugins.PhaseDone}

// TestFlash flashes a new version over TCP and RTU, with each version
// source, and checks the phases, the progress, the device's state and
// that the version it reports is the new one.
func TestFlash(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version string
		rtu     bool
		records bool
		size    int
	}{
		{"tcp/fc43", "fc43", false, false, 64 << 10},
		{"tcp/point", "point", false, false, 10_001},
		{"tcp/string", "string", false, false, 5000},
		{"tcp/uint16x3", "uint16x3", false, false, 4097},
		{"rtu/fc43", "fc43", true, false, 20_000},
		{"rtu/point-odd-size", "point", true, false, 243},
		{"tcp/file-records", "fc43", false, true, 64 << 10},
		{"rtu/file-records-odd-size", "string", true, true, 6001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFlashRig(t, rigOpts{version: tc.version, rtu: tc.rtu, records: tc.records})
			req := r.image(t, "1.2.0", modbussim.FirmwareImage("1.2.0", tc.size))
			var ev events
			if err := r.d.Flash(testContext(t), req, ev.add); err != nil {
				t.Fatalf("Flash: %v (events %+v)", err, ev.evs)
			}
			if got := ev.phases(); fmt.Sprint(got) != fmt.Sprint(fullPhases) {
				t.Errorf("phases %v, want %v", got, fullPhases)
			}
			if l := ev.last(); l.Done != int64(tc.size) || l.Total != int64(tc.size) || !strings.Contains(l.Message, "1.2.0") {
				t.Errorf("last event %+v", l)
			}
			ups := 0
			var prev int64 = -1
			for _, e := range ev.evs {
				if e.Phase == plugins.PhaseUploading {
					ups++
					if e.Done < prev || e.Done > e.Total {
						t.Errorf("upload progress %d/%d after %d", e.Done, e.Total, prev)
					}
					prev = e.Done
				}
			}
			if ups > 102 { // one per percent, the first and the last
				t.Errorf("%d upload events, want at most 102", ups)
			}
			st := r.fw(t, 1)
			nb := blockCount(tc.records, 0, tc.size)
			if st.Running != "1.2.0" || st.Begins != 1 || st.Blocks != nb || st.Duplicates != 0 || st.BlockBytes != int64(tc.size) ||
				st.Commits != 1 || st.Applies != 1 || st.Rollbacks != 0 {
				t.Errorf("device after flash: %+v, want 1.2.0 after 1 begin, %d blocks", st, nb)
			}
			if tc.version == "fc43" {
				id, err := r.d.Identify(testContext(t), "pump-1")
				if err != nil || id.FirmwareVersion != "1.2.0" {
					t.Errorf("Identify after flash: %+v, %v", id, err)
				}
			}
		})
	}
}

// TestFlashResume cuts an upload in the middle (the gateway's context
// ends), then flashes again with a wrong hint: the second run must start
// at the offset the device holds, send each remaining byte once, and end
// with the device running the new version.
func TestFlashResume(t *testing.T) {
	for _, tc := range []struct{ rtu, records bool }{{false, false}, {true, false}, {false, true}} {
		t.Run(fmt.Sprintf("rtu=%v/file_records=%v", tc.rtu, tc.records), func(t *testing.T) {
			r := newFlashRig(t, rigOpts{rtu: tc.rtu, records: tc.records})
			const size = 30_000
			req := r.image(t, "1.3.0", modbussim.FirmwareImage("1.3.0", size))
			ctx, cancel := context.WithCancel(testContext(t))
			err := r.d.Flash(ctx, req, func(ev plugins.FlashEvent) {
				if ev.Phase == plugins.PhaseUploading && ev.Done >= size/2 {
					cancel()
				}
			})
			cancel()
			if err == nil || plugins.CodeOf(err) == plugins.CodeDeviceError {
				t.Fatalf("cut Flash: %v, want a cancellation error", err)
			}
			before := r.fw(t, 1)
			if before.Offset < size/2 || before.Offset >= size || before.Status != 1 || before.Running != "1.0.0" {
				t.Fatalf("device after the cut: %+v, want receiving past the middle, still 1.0.0", before)
			}
			req.ResumeOffset = 0 // a gateway that lost its record: the device decides
			var ev events
			if err := r.d.Flash(testContext(t), req, ev.add); err != nil {
				t.Fatalf("second Flash: %v", err)
			}
			after := r.fw(t, 1)
			left := size - int(before.Offset)
			if got, want := after.Blocks-before.Blocks, blockCount(tc.records, int(before.Offset), size); got != want {
				t.Errorf("second run sent %d blocks, want %d (from the device's offset %d)", got, want, before.Offset)
			}
			if after.BlockBytes-before.BlockBytes != int64(left) || after.Duplicates != before.Duplicates || after.Begins != 1 {
				t.Errorf("second run: %d bytes, %d duplicates, %d begins; want %d, %d, 1",
					after.BlockBytes-before.BlockBytes, after.Duplicates, after.Begins, left, before.Duplicates)
			}
			if first, _ := ev.first(plugins.PhaseUploading); first.Done != int64(before.Offset) || !strings.Contains(first.Message, fmt.Sprintf("resuming at offset %d", before.Offset)) {
				t.Errorf("first upload event %+v, want it at the device's offset %d", first, before.Offset)
			}
			if after.Running != "1.3.0" || ev.last().Phase != plugins.PhaseDone {
				t.Errorf("after resume: running %s, last event %+v", after.Running, ev.last())
			}
		})
	}
}

// TestFlashAlreadyRunning: flashing the version the device runs sends
// nothing and reports done, so a gateway that crashed after the reboot
// can run Flash again.
func TestFlashAlreadyRunning(t *testing.T) {
	r := newFlashRig(t, rigOpts{version: "uint16x3"})
	req := r.image(t, "1.0.0", modbussim.FirmwareImage("1.0.0", 1000))
	var ev events
	if err := r.d.Flash(testContext(t), req, ev.add); err != nil {
		t.Fatal(err)
	}
	if got := ev.phases(); len(got) != 1 || got[0] != plugins.PhaseDone {
		t.Errorf("phases %v, want [done]", got)
	}
	if st := r.fw(t, 1); st.Begins != 0 || st.Blocks != 0 || st.Applies != 0 {
		t.Errorf("device: %+v, want nothing sent", st)
	}
	// And after a real flash, a second Flash of the same image is done at once.
	req = r.image(t, "1.1.0", modbussim.FirmwareImage("1.1.0", 1000))
	if err := r.d.Flash(testContext(t), req, nil); err != nil {
		t.Fatal(err)
	}
	before := r.fw(t, 1)
	ev = events{}
	if err := r.d.Flash(testContext(t), req, ev.add); err != nil || ev.last().Phase != plugins.PhaseDone || len(ev.evs) != 1 {
		t.Errorf("re-run: %v, events %+v", err, ev.evs)
	}
	if after := r.fw(t, 1); after.Blocks != before.Blocks || after.Applies != before.Applies {
		t.Errorf("re-run sent something: %+v after %+v", after, before)
	}
}

// TestFlashRefused covers the device saying no: a block refused, a CRC
// that does not match at commit, bytes it cannot boot. Each fails with
// device-error and a message naming the step, and the device still runs
// the old version with nothing applied. Then, faults cleared, a flash
// succeeds (resuming where the device stopped taking blocks).
func TestFlashRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults modbussim.FirmwareFaults
		image  func() []byte
		want   string
	}{
		{"block refused", modbussim.FirmwareFaults{RejectBlocks: true, RejectFrom: 5000}, nil,
			"the device refused the block at offset 5082 (242 bytes)"},
		{"bad CRC at commit", modbussim.FirmwareFaults{CorruptStored: true}, nil,
			"the device rejected the image: the CRC-32 of the 12000 bytes it received is not"},
		{"not an image", modbussim.FirmwareFaults{}, func() []byte { return make([]byte, 12000) },
			"the device rejected the image as not one it can run (status 6)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFlashRig(t, rigOpts{})
			r.sim.Unit(1).SetFirmwareFaults(tc.faults)
			data := modbussim.FirmwareImage("2.0.0", 12000)
			if tc.image != nil {
				data = tc.image()
			}
			req := r.image(t, "2.0.0", data)
			var ev events
			err := r.d.Flash(testContext(t), req, ev.add)
			if plugins.CodeOf(err) != plugins.CodeDeviceError || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Flash: %v (code %v), want device-error with %q", err, plugins.CodeOf(err), tc.want)
			}
			st := r.fw(t, 1)
			if st.Running != "1.0.0" || st.Applies != 0 {
				t.Errorf("device after refusal: %+v, want 1.0.0 and nothing applied", st)
			}
			for _, e := range ev.evs {
				if e.Phase == plugins.PhaseApplying || e.Phase == plugins.PhaseDone {
					t.Errorf("event %+v after a refusal", e)
				}
			}
			r.sim.Unit(1).SetFirmwareFaults(modbussim.FirmwareFaults{})
			good := r.image(t, "2.0.0", modbussim.FirmwareImage("2.0.0", 12000))
			before := r.fw(t, 1)
			if err := r.d.Flash(testContext(t), good, nil); err != nil {
				t.Fatalf("Flash after clearing the fault: %v", err)
			}
			after := r.fw(t, 1)
			if after.Running != "2.0.0" || after.Duplicates != before.Duplicates {
				t.Errorf("after the retry: %+v", after)
			}
			if tc.name == "block refused" && after.Begins != 1 {
				t.Errorf("the retry began anew (%d begins) instead of resuming at %d", after.Begins, before.Offset)
			}
		})
	}
}

// TestFlashRolledBack: an image that fails to boot (simulator rule: it
// starts with BADBOOT) leaves the device on its old version; Flash ends
// with phase rolled-back and a device-error starting "rolled-back:".
func TestFlashRolledBack(t *testing.T) {
	r := newFlashRig(t, rigOpts{version: "string"})
	data := append([]byte(modbussim.BadBootMagic+"\n"), modbussim.FirmwareImage("3.0.0", 3000)...)
	req := r.image(t, "3.0.0", data)
	var ev events
	err := r.d.Flash(testContext(t), req, ev.add)
	var pe *plugins.Error
	if !errors.As(err, &pe) || pe.Code != plugins.CodeDeviceError || !strings.HasPrefix(pe.Msg, "rolled-back: device pump-1 runs 1.0.0 again") {
		t.Fatalf("Flash: %v, want device-error rolled-back: …", err)
	}
	if l := ev.last(); l.Phase != plugins.PhaseRolledBack || !strings.HasPrefix(l.Message, "rolled-back:") {
		t.Errorf("last event %+v, want rolled-back", l)
	}
	if st := r.fw(t, 1); st.Running != "1.0.0" || st.Rollbacks != 1 || st.Applies != 1 {
		t.Errorf("device: %+v", st)
	}
}

// TestFlashSharesTheBus flashes unit 1 while unit 2 on the same bus is
// polled: reads of unit 2 succeed between blocks (one is made from inside
// the progress callback, which would deadlock if Flash held the bus for
// the whole transfer), and a second Flash or a Reboot of the flashing
// device is refused as busy.
func TestFlashSharesTheBus(t *testing.T) {
	for _, rtu := range []bool{false, true} {
		t.Run(fmt.Sprintf("rtu=%v", rtu), func(t *testing.T) {
			r := newFlashRig(t, rigOpts{rtu: rtu, units: []byte{1, 2}})
			req := r.image(t, "1.5.0", modbussim.FirmwareImage("1.5.0", 20_000))
			ctx := testContext(t)
			checked := false
			var cbErr []string
			err := r.d.Flash(ctx, req, func(ev plugins.FlashEvent) {
				if ev.Phase != plugins.PhaseUploading || ev.Done == 0 || checked {
					return
				}
				checked = true
				vals, err := r.d.Read(ctx, "pump-2", []string{"temperature"})
				if err != nil || vals[0].Quality != plugins.QualityGood {
					cbErr = append(cbErr, fmt.Sprintf("read pump-2 mid-flash: %v %+v", err, vals))
				}
				if err := r.d.Flash(ctx, req, nil); plugins.CodeOf(err) != plugins.CodeBusy {
					cbErr = append(cbErr, fmt.Sprintf("second Flash: %v, want busy", err))
				}
				if err := r.d.Reboot(ctx, "pump-1", plugins.ManageOptions{Force: true}); plugins.CodeOf(err) != plugins.CodeBusy {
					cbErr = append(cbErr, fmt.Sprintf("Reboot mid-flash: %v, want busy", err))
				}
			})
			if err != nil || !checked || len(cbErr) > 0 {
				t.Fatalf("Flash: %v; checked %v; %v", err, checked, cbErr)
			}
			if st := r.fw(t, 2); st.Running != "1.0.0" || st.Blocks != 0 {
				t.Errorf("unit 2 touched: %+v", st)
			}
		})
	}
}

// TestFlashOverGRPC runs a flash and a rollback through the plugin
// contract's gRPC adapters: the events arrive in order, and the
// rolled-back error keeps its code and message across the boundary.
func TestFlashOverGRPC(t *testing.T) {
	r := newFlashRig(t, rigOpts{version: "point"})
	p := plugintest.Connect(t, r.d)
	ctx := testContext(t)
	var ev events
	if err := p.Flash(ctx, r.image(t, "1.1.0", modbussim.FirmwareImage("1.1.0", 9000)), ev.add); err != nil {
		t.Fatalf("Flash over gRPC: %v", err)
	}
	if got := ev.phases(); fmt.Sprint(got) != fmt.Sprint(fullPhases) {
		t.Errorf("phases %v", got)
	}
	bad := append([]byte(modbussim.BadBootMagic), make([]byte, 900)...)
	ev = events{}
	err := p.Flash(ctx, r.image(t, "1.2.0", bad), ev.add)
	var pe *plugins.Error
	if !errors.As(err, &pe) || pe.Code != plugins.CodeDeviceError || !strings.HasPrefix(pe.Msg, "rolled-back: device pump-1 runs 1.1.0 again") {
		t.Errorf("rollback over gRPC: %#v", err)
	}
	if ev.last().Phase != plugins.PhaseRolledBack {
		t.Errorf("last event %+v", ev.last())
	}
}

// TestFlashGarbledAnswers flashes over RTU while the device corrupts the
// CRC of one answer in six (seeded, so the run repeats): every transaction
// is retried, blocks resent after a lost answer are stored once (their
// offset makes them harmless), commit and apply are not doubled, and the
// image arrives intact.
func TestFlashGarbledAnswers(t *testing.T) {
	for _, seed := range []uint64{7, 11, 23} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			r := newFlashRig(t, rigOpts{rtu: true, version: "point", sim: modbussim.Options{Seed: seed, Faults: modbussim.Faults{BadCRC: 1.0 / 6}},
				bus: `"timeout": "300ms", "retries": 6`})
			if err := r.d.Flash(testContext(t), r.image(t, "4.0.0", modbussim.FirmwareImage("4.0.0", 12_000)), nil); err != nil {
				t.Fatalf("Flash: %v", err)
			}
			st := r.fw(t, 1)
			if st.Running != "4.0.0" || st.Commits != 1 || st.Applies != 1 || st.BadCRC != 0 {
				t.Errorf("device: %+v", st)
			}
			if st.Blocks-st.Duplicates != (12_000+241)/242 || st.Duplicates == 0 {
				t.Errorf("%d blocks, %d duplicates: want every block stored once and some resent", st.Blocks, st.Duplicates)
			}
		})
	}
}

// TestFlashCutBetweenSteps ends the gateway's context as a step begins
// (before commit, before apply); Flash again picks up at that step: no
// block is sent again, the transfer is not begun anew, and a verified
// image is not committed twice.
func TestFlashCutBetweenSteps(t *testing.T) {
	for _, phase := range []string{plugins.PhaseVerifying, plugins.PhaseApplying} {
		t.Run(phase, func(t *testing.T) {
			r := newFlashRig(t, rigOpts{})
			req := r.image(t, "6.0.0", modbussim.FirmwareImage("6.0.0", 5000))
			ctx, cancel := context.WithCancel(testContext(t))
			err := r.d.Flash(ctx, req, func(ev plugins.FlashEvent) {
				if ev.Phase == phase {
					cancel()
				}
			})
			cancel()
			if err == nil {
				t.Fatal("cut Flash succeeded")
			}
			before := r.fw(t, 1)
			var ev events
			if err := r.d.Flash(testContext(t), req, ev.add); err != nil {
				t.Fatalf("second Flash: %v", err)
			}
			after := r.fw(t, 1)
			if after.Running != "6.0.0" || after.Blocks != before.Blocks || after.Begins != 1 || after.Commits != 1 || after.Applies != 1 {
				t.Errorf("after the second run: %+v (before it: %+v)", after, before)
			}
			if ev.last().Phase != plugins.PhaseDone {
				t.Errorf("last event %+v", ev.last())
			}
		})
	}
}
