// Package plugins is the contract between the gateway and its protocol plugins.
//
// A plugin is a separate process (hashicorp/go-plugin over gRPC) that knows
// buses, devices, points and management operations, and nothing else: it never
// sees twins or MQTT. The gateway (host) talks to it through the Plugin
// interface below; the gRPC adapters in this package carry every call across
// the process boundary, context and deadline included.
//
// Configuration crosses the boundary as JSON: the gateway turns the bus entry
// of gateway.yaml and the device profile YAML into JSON objects with the same
// keys, and each plugin decodes the keys it owns. ValidateProfile and
// ValidateBus return errors with the key path, so `drover config check` can
// point at the file and line.
package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Capability names what a plugin can do.
type Capability string

// Capabilities a plugin may declare in Describe.
const (
	CapRead         Capability = "read"
	CapWrite        Capability = "write"
	CapIdentify     Capability = "identify"
	CapScan         Capability = "scan"
	CapReboot       Capability = "reboot"
	CapFactoryReset Capability = "factory_reset"
	CapFlash        Capability = "flash"
)

// Description is what Describe returns.
type Description struct {
	Name         string       // "modbus"
	Version      string       // plugin build version
	Capabilities []Capability // what it can do
	BusKeys      []string     // keys it accepts in a bus entry (besides name, plugin)
	ProfileKeys  []string     // top-level keys it accepts in a device profile
}

// FieldError is one configuration problem, located by its key path
// (e.g. "points[2].type") inside the JSON object that was validated.
type FieldError struct {
	Path    string
	Message string
}

// BusConfig opens one bus: a serial line, a TCP endpoint.
type BusConfig struct {
	Name   string          // bus name from gateway.yaml
	Config json.RawMessage // the bus entry as a JSON object (mode, port, baud, address, timeout, ...)
}

// DeviceConfig attaches one field device to an open bus.
type DeviceConfig struct {
	ID      string          // device id (also its hub identity)
	Bus     string          // bus name
	Address int             // unit id / node address; 0 when the protocol has none
	Profile json.RawMessage // the device profile as a JSON object
	Options json.RawMessage // per-device overrides from gateway.yaml (may be null)
}

// Value is a point value. Exactly one field is set; Kind says which.
type Value struct {
	Kind   ValueKind
	Bool   bool
	Int    int64
	Uint   uint64
	Float  float64
	String string
}

// Text renders v for messages: strings quoted, "no value" for KindNone.
func (v Value) Text() string {
	switch v.Kind {
	case KindBool:
		return fmt.Sprint(v.Bool)
	case KindInt:
		return fmt.Sprint(v.Int)
	case KindUint:
		return fmt.Sprint(v.Uint)
	case KindFloat:
		return fmt.Sprint(v.Float)
	case KindString:
		return fmt.Sprintf("%q", v.String)
	}
	return "no value"
}

// ValueKind tags a Value.
type ValueKind int

// Value kinds.
const (
	KindNone ValueKind = iota
	KindBool
	KindInt
	KindUint
	KindFloat
	KindString
)

// Quality says whether a reading can be trusted.
type Quality int

// Qualities of a point reading.
const (
	QualityGood    Quality = iota
	QualityBad             // the device answered with an error for this point
	QualityTimeout         // the device did not answer
)

// PointValue is one reading.
type PointValue struct {
	Point   string
	Value   Value
	Quality Quality
	Error   string // why, when Quality != QualityGood
	Time    time.Time
}

// PointWrite is one value to write.
type PointWrite struct {
	Point string
	Value Value
}

// WriteResult is the outcome of one PointWrite.
type WriteResult struct {
	Point    string
	OK       bool
	Error    string
	ReadBack *Value // set when the profile asks for read-back verification
}

// Identity is what Identify returns.
type Identity struct {
	Manufacturer    string
	Model           string
	Serial          string
	FirmwareVersion string
	Extra           map[string]string
}

// ScanRequest asks a plugin to probe an address range on a bus.
type ScanRequest struct {
	Bus      string
	From, To int
	Interval time.Duration // pause between probes (politeness)
	Timeout  time.Duration // per-probe timeout
}

// ScanEvent reports one probed address.
type ScanEvent struct {
	Address  int
	Found    bool
	Identity *Identity // when the device answered an identification request
	Error    string
}

// ManageOptions modify Reboot and FactoryReset.
type ManageOptions struct {
	Force bool // skip the profile's in-use rule
}

// FlashRequest asks a plugin to flash a firmware image into a device.
type FlashRequest struct {
	DeviceID     string
	ImagePath    string          // local file on the gateway
	Manifest     json.RawMessage // firmware manifest (version, sha256, ...)
	ResumeOffset int64           // bytes already confirmed by the device in an earlier attempt
}

// Flash phases, as FlashEvent.Phase: every plugin reports these, so the
// gateway's firmware job drives them alike (docs/firmware.md).
const (
	PhaseUploading  = "uploading"   // image bytes go to the device (Done/Total)
	PhaseVerifying  = "verifying"   // the device checks what it received
	PhaseApplying   = "applying"    // the device is told to take the new image
	PhaseRebooting  = "rebooting"   // the device restarts into it
	PhaseConfirming = "confirming"  // the plugin checks the device runs it, and confirms it
	PhaseDone       = "done"        // the device runs the new image, confirmed
	PhaseRolledBack = "rolled-back" // the new image did not stay: the old one runs again
)

// FlashEvent is one progress report of Flash.
type FlashEvent struct {
	Phase   string // one of the Phase constants
	Done    int64
	Total   int64
	Message string
}

// Plugin is what the gateway calls. Every method blocks until done or ctx ends.
// Errors carry a Code (see errors.go) across the process boundary.
type Plugin interface {
	Describe(ctx context.Context) (Description, error)
	ValidateBus(ctx context.Context, bus json.RawMessage) ([]FieldError, error)
	ValidateProfile(ctx context.Context, profile json.RawMessage) ([]FieldError, error)
	OpenBus(ctx context.Context, bus BusConfig) error
	CloseBus(ctx context.Context, name string) error
	Attach(ctx context.Context, dev DeviceConfig) error
	Detach(ctx context.Context, deviceID string) error
	Read(ctx context.Context, deviceID string, points []string) ([]PointValue, error)
	Write(ctx context.Context, deviceID string, values []PointWrite) ([]WriteResult, error)
	Identify(ctx context.Context, deviceID string) (Identity, error)
	Scan(ctx context.Context, req ScanRequest, progress func(ScanEvent)) error
	Reboot(ctx context.Context, deviceID string, opts ManageOptions) error
	FactoryReset(ctx context.Context, deviceID string, opts ManageOptions) error
	Flash(ctx context.Context, req FlashRequest, progress func(FlashEvent)) error
}
