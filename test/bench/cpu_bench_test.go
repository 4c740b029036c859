package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/test/harness"
)

// cpuProfile is the device model of BenchmarkPointReadCPU: eight points of
// the usual kinds, all read every poll cycle (no per-point poll interval),
// in three Modbus tables, so each cycle is a few block reads.
const cpuProfile = `name: cpu-pump
plugin: modbus
points:
  - { name: t1, table: holding, address: 0, type: int16, scale: 0.1, sim: { kind: sine, min: 18, max: 26, period: 60s } }
  - { name: t2, table: holding, address: 1, type: int16, scale: 0.1, sim: { kind: constant, value: 20 } }
  - { name: p1, table: holding, address: 2, type: float32, byte_order: ABCD, sim: { kind: random_walk, value: 4.2, min: 3.5, max: 5.0, step: 0.05, period: 1s } }
  - { name: p2, table: holding, address: 4, type: float32, byte_order: ABCD, sim: { kind: constant, value: 1.5 } }
  - { name: up, table: input, address: 0, type: uint32, sim: { kind: counter, value: 0, step: 1, period: 1s } }
  - { name: flow, table: input, address: 2, type: uint16, sim: { kind: constant, value: 7 } }
  - { name: run, table: coil, address: 0, type: bool, sim: { kind: constant, value: true } }
  - { name: fault, table: coil, address: 1, type: bool, sim: { kind: constant, value: false } }
`

const cpuPointsPerDevice = 8

// BenchmarkPointReadCPU measures the CPU time the gateway and its Modbus
// plugin spend per 1,000 point reads: devsim serves 20 units on Modbus TCP,
// the gateway (no uplink) polls each every 100 ms, and the CPU ticks of both
// processes over a steady window are divided by the points read in it.
// Run it with DROVER_BIN=bin and DROVER_BIN=dist/qemu-arm64 (make
// release-test's wrappers) to compare amd64 with emulated arm64.
//
//	DROVER_BENCH_CPU_DEVICES  units polled [20]
//	DROVER_BENCH_CPU_WINDOW   measurement window [20s]
func BenchmarkPointReadCPU(b *testing.B) {
	nDev := envInt("DROVER_BENCH_CPU_DEVICES", 20)
	window := envDuration("DROVER_BENCH_CPU_WINDOW", 20*time.Second)
	dir := b.TempDir()
	profiles := filepath.Join(dir, "profiles")
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(profiles, "cpu-pump.yaml"), cpuProfile)
	sim := harness.Start(b, harness.Bin(b, "devsim"), "modbus", "--profile", filepath.Join(profiles, "cpu-pump.yaml"),
		"--tcp", "127.0.0.1:0", "--units", fmt.Sprintf("1-%d", nDev), "--log-level", "warn")
	addr := sim.Await(b, "tcp:", 60*time.Second)
	sim.Await(b, "ready", 60*time.Second)
	var devs strings.Builder
	for u := 1; u <= nDev; u++ {
		fmt.Fprintf(&devs, "  - { id: pump-%02d, bus: lan, address: %d, profile: cpu-pump, poll: 100ms }\n", u, u)
	}
	api := freeAddrString(b)
	const gwID = "gw-cpu"
	writeFile(b, filepath.Join(dir, "gateway.yaml"), fmt.Sprintf(`gateway:
  id: %s
  data_dir: %s
  local_api: %s
plugins:
  dir: %s
  start_timeout: 60s
profiles_dir: %s
buses:
  - { name: lan, plugin: modbus, mode: tcp, address: %s, timeout: 2s }
devices:
%s`, gwID, filepath.Join(dir, "data"), api, filepath.Dir(harness.Bin(b, "drover-plugin-modbus")), profiles, addr, devs.String()))
	g := harness.Start(b, harness.Bin(b, "drover"), "run", "-c", filepath.Join(dir, "gateway.yaml"), "--log-level", "warn")
	local := &gwAPI{addr: api, gwID: gwID}
	poll(b, 2*time.Minute, fmt.Sprintf("%d devices online", nDev), g, func() (bool, string) {
		if local.token == "" {
			tok, err := os.ReadFile(filepath.Join(dir, "data", "api.token"))
			if err != nil {
				return false, err.Error()
			}
			local.token = strings.TrimSpace(string(tok))
		}
		st, err := local.stats()
		if err != nil {
			return false, err.Error()
		}
		on, _, _ := deviceTotals(st)
		return on >= nDev, fmt.Sprintf("%d online", on)
	})
	gwPID := g.Cmd.Process.Pid
	plPID := childPID(gwPID, "drover-plugin-modbus")
	if plPID == 0 {
		b.Fatalf("no drover-plugin-modbus child of %d", gwPID)
	}
	s0 := sampleGateway(b, local, gwPID, plPID)
	st0, g0, p0 := s0.st, s0.gw, s0.pl
	time.Sleep(window) // the measurement window itself, not synchronisation
	s1 := sampleGateway(b, local, gwPID, plPID)
	st1, g1, p1 := s1.st, s1.gw, s1.pl
	_, polls0, errs0 := deviceTotals(st0)
	_, polls1, errs1 := deviceTotals(st1)
	reads := (polls1 - polls0) * cpuPointsPerDevice
	if reads <= 0 {
		b.Fatalf("no polls in the window (%v -> %v)", polls0, polls1)
	}
	const hz = 100.0 // USER_HZ
	gwCPU := float64(g1.cpuTicks-g0.cpuTicks) / hz
	plCPU := float64(p1.cpuTicks-p0.cpuTicks) / hz
	perK := 1000 * (gwCPU + plCPU) / reads * 1000 // ms of CPU per 1,000 point reads
	fmt.Printf("RESULT %-40s bin=%s devices=%d window=%s point reads=%.0f (%.0f/s) failed cycles=%.0f\n",
		"point reads: setup", os.Getenv("DROVER_BIN"), nDev, window, reads, reads/window.Seconds(), errs1-errs0)
	fmt.Printf("RESULT %-40s gateway=%.2fs plugin=%.2fs total=%.2fs; %.1f ms CPU per 1,000 point reads\n",
		"point reads: CPU", gwCPU, plCPU, gwCPU+plCPU, perK)
	b.ReportMetric(perK, "cpu_ms/1000reads")
	b.ReportMetric(0, "ns/op")
}
