package bench

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-iot/drover/test/harness"
)

// simFleet starts nDev simulated pumps (the demo-pump profile), perBus
// units per devsim process on Modbus TCP, as a plant LAN with several
// Modbus TCP gateways in front of its units would be. It returns the
// buses and devices of a gateway.yaml for them (bus lan-N, device pump-NNN
// polled every poll) and the device ids.
func simFleet(b *testing.B, nDev, perBus int, poll time.Duration) (buses []harness.Bus, devices []harness.Device, ids []string) {
	b.Helper()
	profile := filepath.Join(demoProfilesDir(), "demo-pump.yaml")
	for bus := 0; bus*perBus < nDev; bus++ {
		n := min(perBus, nDev-bus*perBus)
		sim := harness.Start(b, harness.Bin(b, "devsim"), "modbus", "--profile", profile,
			"--tcp", "127.0.0.1:0", "--units", fmt.Sprintf("1-%d", n), "--log-level", "warn")
		addr := sim.Await(b, "tcp:", 30*time.Second)
		sim.Await(b, "ready", 30*time.Second)
		name := fmt.Sprintf("lan-%d", bus+1)
		buses = append(buses, harness.Bus{Name: name, Mode: "tcp", Address: addr, Timeout: time.Second})
		for u := 1; u <= n; u++ {
			id := fmt.Sprintf("pump-%03d", bus*perBus+u)
			ids = append(ids, id)
			devices = append(devices, harness.Device{ID: id, Bus: name, Address: u, Profile: "demo-pump", Poll: poll})
		}
	}
	return buses, devices, ids
}

// demoProfilesDir holds demo-pump.yaml, the profile devsim serves and the
// gateway reads.
func demoProfilesDir() string { return filepath.Join(benchRepoRoot(), "configs", "devsim") }
