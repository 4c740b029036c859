package config

import (
	"time"
)

// Config is gateway.yaml after loading: decoded, defaulted and validated.
// The yaml tags are the file's keys; docs/schema/gateway.schema.json and
// docs/configuration.md list the same keys (a test keeps them in step).
type Config struct {
	source
	Gateway     Gateway     `yaml:"gateway"`
	Upstream    Upstream    `yaml:"upstream"`
	Plugins     Plugins     `yaml:"plugins"`
	ProfilesDir string      `yaml:"profiles_dir"`
	Buses       []Bus       `yaml:"buses"`
	Devices     []Device    `yaml:"devices"`
	Maintenance Maintenance `yaml:"maintenance"`
	Outbox      Outbox      `yaml:"outbox"`
	Firmware    Firmware    `yaml:"firmware"`

	// File is the path gateway.yaml was loaded from, as given to Load
	// (empty for a Config built in code).
	File string `yaml:"-"`
	// Profiles holds every profile a device names, by profile name.
	Profiles map[string]*Profile `yaml:"-"`

	dir      string          // directory of File; relative paths in the file are relative to it
	reported map[string]bool // profile names whose loading problems are already reported
}

// Gateway is the gateway's own identity and local surface.
type Gateway struct {
	source
	ID                string `yaml:"id"`                   // device id of the gateway in the hub
	DataDir           string `yaml:"data_dir"`             // SQLite database, firmware cache, state
	LocalAPI          string `yaml:"local_api"`            // host:port or unix:/path
	LocalAPITokenFile string `yaml:"local_api_token_file"` // token required for writes; needed off loopback
	LogLevel          string `yaml:"log_level"`            // debug | info | warn | error
}

// Upstream is the connection to the hub (localhub or Azure IoT Hub). An
// absent upstream section means the gateway runs without an uplink.
type Upstream struct {
	source
	ConnectionStringFile string        `yaml:"connection_string_file"` // HostName=…;DeviceId=…;SharedAccessKey=…
	Address              string        `yaml:"address"`                // host:port; empty means HostName:8883
	HTTPSAddress         string        `yaml:"https_address"`          // host:port of the hub's HTTPS endpoint (firmware downloads); empty means HostName:443
	CAFile               string        `yaml:"ca_file"`                // PEM trust for a self-signed hub
	ChildrenKeyFile      string        `yaml:"children_key_file"`      // enrollment group key (base64)
	Keepalive            time.Duration `yaml:"keepalive"`              // MQTT keep-alive
	TokenTTL             time.Duration `yaml:"token_ttl"`              // lifetime of each SAS token
}

// Plugins says where plugin executables live and how they are supervised.
type Plugins struct {
	source
	Dir            string        `yaml:"dir"`
	StartTimeout   time.Duration `yaml:"start_timeout"`
	RestartBackoff Backoff       `yaml:"restart_backoff"`
}

// Backoff bounds an exponential back-off.
type Backoff struct {
	source
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// Bus is one line or endpoint a plugin drives. Keys besides the common ones
// below are the plugin's own and are kept in Extra; the plugin validates them
// (ValidateWithPlugins).
type Bus struct {
	source
	Name     string         `yaml:"name"`
	Plugin   string         `yaml:"plugin"`
	Mode     string         `yaml:"mode"`      // modbus: rtu | ascii | tcp
	Port     string         `yaml:"port"`      // serial device, e.g. /dev/ttyUSB0
	Baud     int            `yaml:"baud"`      // serial line speed
	DataBits int            `yaml:"data_bits"` // 7 | 8
	Parity   string         `yaml:"parity"`    // none | even | odd
	StopBits int            `yaml:"stop_bits"` // 1 | 2
	Timeout  time.Duration  `yaml:"timeout"`   // per request
	Address  string         `yaml:"address"`   // host:port for network modes
	Retries  *int           `yaml:"retries"`   // extra attempts after a timeout
	Extra    map[string]any `yaml:",inline"`   // plugin-specific keys
}

// Device is one field device behind the gateway, and one hub identity.
type Device struct {
	source
	ID      string         `yaml:"id"`
	Bus     string         `yaml:"bus"`
	Address *int           `yaml:"address"` // unit id / node address; nil when the protocol has none
	Profile string         `yaml:"profile"`
	Poll    time.Duration  `yaml:"poll"`    // default poll interval of this device's points
	Options map[string]any `yaml:"options"` // per-device overrides handed to the plugin
	Tags    map[string]any `yaml:"tags"`    // copied to the twin's tags when the identity is created
}

// UnitAddress returns the device address, or 0 when it has none.
func (d *Device) UnitAddress() int {
	if d.Address == nil {
		return 0
	}
	return *d.Address
}

// Maintenance says when disruptive work (reboot, reset, flash) may run.
type Maintenance struct {
	source
	Windows []Window `yaml:"windows"`
}

// Window is a recurring maintenance window: it opens at every time the cron
// expression matches, in Timezone, and stays open for Duration.
type Window struct {
	source
	Cron     string        `yaml:"cron"`
	Duration time.Duration `yaml:"duration"`
	Timezone string        `yaml:"timezone"` // IANA name, or Local (the gateway's zone)

	sched *Schedule
	loc   *time.Location
}

// Outbox bounds the store-and-forward queue of telemetry.
type Outbox struct {
	source
	MaxBytes Size          `yaml:"max_bytes"`
	TTL      time.Duration `yaml:"ttl"`
	OnFull   string        `yaml:"on_full"` // drop_oldest | reject_new
	// Durability says when an accepted message reaches the disk:
	// spill | batched | every_message (see docs/configuration.md).
	Durability  string        `yaml:"durability"`
	SpillAfter  time.Duration `yaml:"spill_after"`  // spill: unacknowledged messages go to disk after this
	MemoryBytes Size          `yaml:"memory_bytes"` // spill: bound on messages held in memory
	BatchEvery  time.Duration `yaml:"batch_every"`  // batched: at most one commit per this
}

// Outbox durability modes.
const (
	DurabilitySpill        = "spill"
	DurabilityBatched      = "batched"
	DurabilityEveryMessage = "every_message"
)

// Outbox overflow policies.
const (
	OnFullDropOldest = "drop_oldest"
	OnFullRejectNew  = "reject_new"
)

// Firmware holds firmware trust and cache settings.
type Firmware struct {
	source
	TrustedKeys []string `yaml:"trusted_keys"` // base64 ed25519 public keys; images must be signed by one
	CacheMax    Size     `yaml:"cache_max"`    // bound of the image cache under data_dir
}

// Size is a byte count. In YAML it is an integer or a string with a unit
// (KB, MB, GB = powers of 1000; KiB, MiB, GiB = powers of 1024).
type Size int64

// Profile describes one device model. The generic keys are checked here,
// custom methods included; protocol keys (Modbus table, address,
// byte_order, the reboot and factoryReset actions, quirks contents) are the
// plugin's and kept in Extra, Point.Extra, Methods, Identify and Quirks.
type Profile struct {
	source
	Name        string         `yaml:"name"`
	Plugin      string         `yaml:"plugin"`
	Description string         `yaml:"description"`
	Points      []Point        `yaml:"points"`
	Methods     map[string]any `yaml:"methods"`  // method name -> plugin action (reboot, factoryReset) or custom method (see CustomMethods)
	InUse       *InUse         `yaml:"in_use"`   // when disruptive work must wait
	Identify    map[string]any `yaml:"identify"` // plugin-defined identification
	Quirks      map[string]any `yaml:"quirks"`   // plugin-defined workarounds
	Extra       map[string]any `yaml:",inline"`  // other plugin-specific top-level keys

	// File is the path the profile was loaded from.
	File string `yaml:"-"`
}

// Point is one value of a device: a register, a coil, a variable.
type Point struct {
	source
	Name        string         `yaml:"name"` // also its twin property name
	Type        string         `yaml:"type"`
	Unit        string         `yaml:"unit"`
	Description string         `yaml:"description"`
	Poll        time.Duration  `yaml:"poll"`
	Writable    bool           `yaml:"writable"` // desired.config.<name> writes it
	Deadband    float64        `yaml:"deadband"` // report only changes larger than this
	Extra       map[string]any `yaml:",inline"`  // plugin-specific keys (table, address, scale, ...)
}

// InUse is the profile's "in use" rule: disruptive work waits (unless
// forced) while point Point equals Equals.
type InUse struct {
	source
	Point  string `yaml:"point"`
	Equals any    `yaml:"equals"`
}

// PointTypes are the value types a point may have.
var PointTypes = []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}

// DefaultPoll is the poll interval of a point when neither the point nor the
// device sets one.
const DefaultPoll = 10 * time.Second

// PointPoll returns how often point p of device d is polled: the point's own
// poll, else the device's, else DefaultPoll.
func PointPoll(d *Device, p *Point) time.Duration {
	switch {
	case p != nil && p.Poll > 0:
		return p.Poll
	case d != nil && d.Poll > 0:
		return d.Poll
	}
	return DefaultPoll
}

// Bus returns the bus with the given name, or nil.
func (c *Config) Bus(name string) *Bus {
	for i := range c.Buses {
		if c.Buses[i].Name == name {
			return &c.Buses[i]
		}
	}
	return nil
}

// Device returns the device with the given id, or nil.
func (c *Config) Device(id string) *Device {
	for i := range c.Devices {
		if c.Devices[i].ID == id {
			return &c.Devices[i]
		}
	}
	return nil
}

// source remembers the tree a struct was decoded from, so validation can
// point at the file, line and key of a value. It is empty for structs built
// in code.
type source struct {
	src *node
}

func (s *source) setSource(n *node) { s.src = n }

// at returns the position of key inside the struct, or of the struct itself
// (with key appended to the path) when the key is absent. fallback is the
// struct's path when it was not decoded from a file.
func (s *source) at(fallback, key string) pos {
	if s.src == nil {
		return pos{path: appendPath(fallback, key)}
	}
	if key == "" {
		return s.src.pos
	}
	return s.src.lookup(key)
}
