package config

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults. docs/configuration.md lists the same values.
const (
	DefaultDataDir        = "/var/lib/drover"
	DefaultLocalAPI       = "127.0.0.1:7080"
	DefaultLogLevel       = "info"
	DefaultPluginsDir     = "/usr/lib/drover/plugins"
	DefaultProfilesDir    = "profiles"
	DefaultKeepalive      = 60 * time.Second
	DefaultTokenTTL       = time.Hour
	DefaultStartTimeout   = 10 * time.Second
	DefaultBackoffMin     = time.Second
	DefaultBackoffMax     = time.Minute
	DefaultBusTimeout     = time.Second
	DefaultRetries        = 1
	DefaultModbusBaud     = 19200  // Modbus over serial line: 19200 is the required default rate
	DefaultSerialBaud     = 115200 // SMP over UART (mcumgr's usual rate)
	DefaultDataBits       = 8
	DefaultASCIIDataBits  = 7 // Modbus ASCII uses 7 data bits
	DefaultStopBits       = 1
	DefaultOutboxMaxBytes = Size(128 << 20)
	DefaultOutboxTTL      = 72 * time.Hour // a long weekend without uplink
	DefaultOnFull         = OnFullDropOldest
	DefaultDurability     = DurabilitySpill
	DefaultSpillAfter     = 2 * time.Second
	DefaultMemoryBytes    = Size(4 << 20)
	DefaultBatchEvery     = 200 * time.Millisecond
	DefaultTimezone       = "Local"
	DefaultFirmwareCache  = Size(256 << 20) // a few images of MCUs and PLCs; Linux-class images need more
)

// executable is os.Executable, replaceable in tests.
var executable = os.Executable

// defaultPluginsDir is the directory of the running binary when drover-plugin-*
// executables sit next to it (a development or tarball install), else
// DefaultPluginsDir.
func defaultPluginsDir() string {
	exe, err := executable()
	if err == nil {
		dir := filepath.Dir(exe)
		if m, _ := filepath.Glob(filepath.Join(dir, "drover-plugin-*")); len(m) > 0 {
			return dir
		}
	}
	return DefaultPluginsDir
}

// applyDefaults fills every unset key that has a default. It is the only
// place defaults live, and it runs once, after decoding and before Validate.
func applyDefaults(c *Config) {
	g := &c.Gateway
	setStr(&g.DataDir, DefaultDataDir)
	setStr(&g.LocalAPI, DefaultLocalAPI)
	setStr(&g.LogLevel, DefaultLogLevel)

	u := &c.Upstream
	setDur(&u.Keepalive, DefaultKeepalive)
	setDur(&u.TokenTTL, DefaultTokenTTL)

	p := &c.Plugins
	if p.Dir == "" {
		p.Dir = defaultPluginsDir()
	}
	setDur(&p.StartTimeout, DefaultStartTimeout)
	setDur(&p.RestartBackoff.Min, DefaultBackoffMin)
	setDur(&p.RestartBackoff.Max, DefaultBackoffMax)

	setStr(&c.ProfilesDir, DefaultProfilesDir)

	for i := range c.Buses {
		applyBusDefaults(&c.Buses[i])
	}
	for i := range c.Maintenance.Windows {
		setStr(&c.Maintenance.Windows[i].Timezone, DefaultTimezone)
	}

	o := &c.Outbox
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultOutboxMaxBytes
	}
	setDur(&o.TTL, DefaultOutboxTTL)
	setStr(&o.OnFull, DefaultOnFull)
	setStr(&o.Durability, DefaultDurability)
	setDur(&o.SpillAfter, DefaultSpillAfter)
	setDur(&o.BatchEvery, DefaultBatchEvery)
	if o.MemoryBytes == 0 {
		o.MemoryBytes = DefaultMemoryBytes
	}

	if c.Firmware.CacheMax == 0 {
		c.Firmware.CacheMax = DefaultFirmwareCache
	}
}

func applyBusDefaults(b *Bus) {
	setDur(&b.Timeout, DefaultBusTimeout)
	if b.Retries == nil {
		r := DefaultRetries
		b.Retries = &r
	}
	if !b.serialLine() {
		return
	}
	modbus := b.Plugin == "modbus"
	switch {
	case b.Plugin == "serial":
		setInt(&b.Baud, DefaultSerialBaud)
	default:
		setInt(&b.Baud, DefaultModbusBaud)
	}
	if modbus && b.Mode == "ascii" {
		setInt(&b.DataBits, DefaultASCIIDataBits)
	}
	setInt(&b.DataBits, DefaultDataBits)
	if modbus {
		setStr(&b.Parity, "even") // Modbus over serial line: even parity is the default
	}
	setStr(&b.Parity, "none")
	setInt(&b.StopBits, DefaultStopBits)
}

// serialLine reports whether the bus is a serial line (as opposed to a
// network endpoint).
func (b *Bus) serialLine() bool {
	if b.Plugin == "modbus" {
		return b.Mode == "rtu" || b.Mode == "ascii"
	}
	return b.Port != ""
}

// resolvePaths makes file paths in the configuration absolute, relative to
// the directory of gateway.yaml.
func resolvePaths(c *Config) {
	if c.dir == "" {
		return
	}
	for _, p := range []*string{
		&c.Gateway.DataDir, &c.Gateway.LocalAPITokenFile,
		&c.Upstream.ConnectionStringFile, &c.Upstream.CAFile, &c.Upstream.ChildrenKeyFile,
		&c.Plugins.Dir, &c.ProfilesDir,
	} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(c.dir, *p)
		}
	}
	// A serial port given as a relative path (a symlink next to the file,
	// as the demo makes) is relative to the file too; bare names stay.
	for i := range c.Buses {
		if p := c.Buses[i].Port; p != "" && !filepath.IsAbs(p) && strings.ContainsRune(p, '/') {
			c.Buses[i].Port = filepath.Join(c.dir, p)
		}
	}
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}
