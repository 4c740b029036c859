package harness

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
)

// GatewayConfig is the gateway.yaml of a test rig: the keys the e2e, soak
// and bench rigs set, one builder so that a renamed key is renamed once.
// Zero fields are left out, so the gateway's defaults apply.
type GatewayConfig struct {
	ID, DataDir, LocalAPI string
	Upstream              *Upstream // nil: no uplink (offline by design)
	PluginsDir            string
	// RestartBackoff is the plugins' restart backoff, min and max.
	RestartBackoff [2]time.Duration
	ProfilesDir    string
	// OutboxMaxBytes (e.g. "1GiB") and OutboxOnFull (drop_oldest |
	// reject_new) bound the outbox.
	OutboxMaxBytes, OutboxOnFull string
	// OutboxDurability (spill | batched | every_message) and
	// OutboxSpillAfter set when messages reach the disk; empty/zero: the
	// gateway's defaults.
	OutboxDurability string
	OutboxSpillAfter time.Duration
	// FirmwareKeys are firmware.trusted_keys; FirmwareCacheMax (e.g.
	// "4MiB") bounds the image cache.
	FirmwareKeys     []string
	FirmwareCacheMax string
	Buses            []Bus
	Devices          []Device
}

// Upstream is the upstream section of a GatewayConfig.
type Upstream struct {
	ConnectionStringFile, Address, CAFile, ChildrenKeyFile string
	HTTPSAddress                                           string // the hub's HTTPS endpoint (firmware downloads)
	TokenTTL, Keepalive                                    time.Duration
}

// Bus is one entry of buses; Plugin defaults to modbus. A serial (SMP)
// bus sets Plugin "serial", Port, Baud and Timeout, and no Mode.
type Bus struct {
	Name, Plugin, Mode string
	Address            string // mode tcp
	Port               string // mode rtu / ascii
	Baud               int
	Timeout            time.Duration
	Retries            *int // nil: the default
}

// Device is one entry of devices.
type Device struct {
	ID, Bus, Profile string
	// Address is the unit or node address; 0 leaves the key out, as a
	// device on a serial (SMP) bus must, since it takes none.
	Address int
	Poll    time.Duration
}

// Retries is a Bus.Retries value.
func Retries(n int) *int { return &n }

// YAML renders the configuration.
func (c GatewayConfig) YAML() string {
	var b strings.Builder
	section := func(name string, kv ...string) {
		var lines []string
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				lines = append(lines, fmt.Sprintf("  %s: %s\n", kv[i], kv[i+1]))
			}
		}
		if len(lines) > 0 {
			b.WriteString(name + ":\n" + strings.Join(lines, ""))
		}
	}
	section("gateway", "id", c.ID, "data_dir", c.DataDir, "local_api", c.LocalAPI)
	if u := c.Upstream; u != nil {
		section("upstream", "connection_string_file", u.ConnectionStringFile, "address", u.Address, "https_address", u.HTTPSAddress, "ca_file", u.CAFile,
			"children_key_file", u.ChildrenKeyFile, "token_ttl", duration(u.TokenTTL), "keepalive", duration(u.Keepalive))
	}
	backoff := ""
	if c.RestartBackoff != [2]time.Duration{} {
		backoff = fmt.Sprintf("{ min: %s, max: %s }", c.RestartBackoff[0], c.RestartBackoff[1])
	}
	section("plugins", "dir", c.PluginsDir, "restart_backoff", backoff)
	if c.ProfilesDir != "" {
		fmt.Fprintf(&b, "profiles_dir: %s\n", c.ProfilesDir)
	}
	section("outbox", "max_bytes", c.OutboxMaxBytes, "on_full", c.OutboxOnFull,
		"durability", c.OutboxDurability, "spill_after", duration(c.OutboxSpillAfter))
	keys := ""
	if len(c.FirmwareKeys) > 0 {
		keys = "[" + strings.Join(c.FirmwareKeys, ", ") + "]"
	}
	section("firmware", "trusted_keys", keys, "cache_max", c.FirmwareCacheMax)
	if len(c.Buses) > 0 {
		b.WriteString("buses:\n")
		for _, bus := range c.Buses {
			b.WriteString("  - " + bus.yaml() + "\n")
		}
	}
	if len(c.Devices) > 0 {
		b.WriteString("devices:\n")
		for _, d := range c.Devices {
			b.WriteString("  - " + d.yaml() + "\n")
		}
	}
	return b.String()
}

// Write writes the configuration to path (mode 0600).
func (c GatewayConfig) Write(t testing.TB, path string) {
	t.Helper()
	WriteFile(t, path, c.YAML())
}

func (b Bus) yaml() string {
	plugin := b.Plugin
	if plugin == "" {
		plugin = "modbus"
	}
	kv := []string{"name", b.Name, "plugin", plugin, "mode", b.Mode, "address", b.Address, "port", b.Port, "timeout", duration(b.Timeout)}
	if b.Baud != 0 {
		kv = append(kv, "baud", fmt.Sprint(b.Baud))
	}
	if b.Retries != nil {
		kv = append(kv, "retries", fmt.Sprint(*b.Retries))
	}
	return flow(kv...)
}

func (d Device) yaml() string {
	addr := ""
	if d.Address != 0 {
		addr = fmt.Sprint(d.Address)
	}
	return flow("id", d.ID, "bus", d.Bus, "address", addr, "profile", d.Profile, "poll", duration(d.Poll))
}

// flow renders key/value pairs as a YAML flow mapping, leaving out empty values.
func flow(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			parts = append(parts, kv[i]+": "+kv[i+1])
		}
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// duration is d as the configuration writes it; "" for zero (left out).
func duration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// ProvisionGateway creates the gateway's identity in the hub (an IoT Edge
// device) and the enrollment group its children join, and writes what
// `drover run` reads: dir/gw.connstr and dir/children.key. It returns
// their paths.
func ProvisionGateway(t testing.TB, svc *serviceclient.Client, hostname, gwID, group, dir string) (connStrFile, childrenKeyFile string) {
	t.Helper()
	ctx := Context(t)
	gw, err := svc.CreateDevice(ctx, serviceclient.Device{DeviceID: gwID, Capabilities: &serviceclient.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatalf("create gateway identity %s: %v", gwID, err)
	}
	grp, err := svc.CreateEnrollmentGroup(ctx, serviceclient.EnrollmentGroup{EnrollmentGroupID: group, ParentDeviceID: gwID})
	if err != nil {
		t.Fatalf("create enrollment group %s: %v", group, err)
	}
	connStrFile, childrenKeyFile = filepath.Join(dir, "gw.connstr"), filepath.Join(dir, "children.key")
	WriteFile(t, connStrFile, sas.ConnectionString{HostName: hostname, DeviceID: gwID, Key: gw.Authentication.SymmetricKey.PrimaryKey}.String())
	WriteFile(t, childrenKeyFile, grp.Attestation.SymmetricKey.PrimaryKey)
	return connStrFile, childrenKeyFile
}

// Field walks nested JSON objects (a twin section) along keys; nil when a
// key is missing or a value on the way is not an object.
func Field(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}
