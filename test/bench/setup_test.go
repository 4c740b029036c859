package bench

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/test/harness"
)

// provisionGateway creates the gateway's identity (an IoT Edge device) and
// the enrollment group its children join, and writes what `drover run`
// reads: dir/gw.connstr and dir/children.key.
func provisionGateway(b *testing.B, svc *serviceclient.Client, hostname, gwID, group, dir string) {
	b.Helper()
	ctx := harness.Context(b)
	gw, err := svc.CreateDevice(ctx, serviceclient.Device{DeviceID: gwID, Capabilities: &serviceclient.Capabilities{IoTEdge: true}})
	if err != nil {
		b.Fatal(err)
	}
	grp, err := svc.CreateEnrollmentGroup(ctx, serviceclient.EnrollmentGroup{EnrollmentGroupID: group, ParentDeviceID: gwID})
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(dir, "gw.connstr"), sas.ConnectionString{HostName: hostname, DeviceID: gwID, Key: gw.Authentication.SymmetricKey.PrimaryKey}.String())
	writeFile(b, filepath.Join(dir, "children.key"), grp.Attestation.SymmetricKey.PrimaryKey)
}

// simFleet starts nDev simulated pumps (the demo-pump profile), perBus
// units per devsim process on Modbus TCP, as a plant LAN with several
// Modbus TCP gateways in front of its units would be. It returns the
// buses and devices sections of a gateway.yaml for them (bus lan-N, device
// pump-NNN polled every poll) and the device ids.
func simFleet(b *testing.B, nDev, perBus int, poll time.Duration) (buses, devices string, ids []string) {
	b.Helper()
	profile := filepath.Join(demoProfilesDir(), "demo-pump.yaml")
	var bs, ds strings.Builder
	for bus := 0; bus*perBus < nDev; bus++ {
		n := min(perBus, nDev-bus*perBus)
		sim := harness.Start(b, harness.Bin(b, "devsim"), "modbus", "--profile", profile,
			"--tcp", "127.0.0.1:0", "--units", fmt.Sprintf("1-%d", n), "--log-level", "warn")
		addr := sim.Await(b, "tcp:", 30*time.Second)
		sim.Await(b, "ready", 30*time.Second)
		fmt.Fprintf(&bs, "  - { name: lan-%d, plugin: modbus, mode: tcp, address: %s, timeout: 1s }\n", bus+1, addr)
		for u := 1; u <= n; u++ {
			id := fmt.Sprintf("pump-%03d", bus*perBus+u)
			ids = append(ids, id)
			fmt.Fprintf(&ds, "  - { id: %s, bus: lan-%d, address: %d, profile: demo-pump, poll: %s }\n", id, bus+1, u, poll)
		}
	}
	return bs.String(), ds.String(), ids
}

// demoProfilesDir holds demo-pump.yaml, the profile devsim serves and the
// gateway reads.
func demoProfilesDir() string { return filepath.Join(benchRepoRoot(), "configs", "devsim") }
