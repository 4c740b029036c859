package localapi

import (
	"context"
	"encoding/json"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Backend is what the local API needs from the gateway daemon. Every method
// blocks until done or ctx ends (ctx ends when the client goes away or the
// server shuts down). Errors should carry a plugins.Code (plugins.Errorf)
// so the API can answer with the right status: plugins.CodeNotFound for an
// unknown device, bus or point, plugins.CodeBusy or CodeInUse when the bus or
// device refuses, plugins.CodeUnavailable when its plugin is down,
// plugins.CodeTimeout when the device did not answer. An error without a
// code is an internal error (500).
type Backend interface {
	// Status describes the gateway as a whole.
	Status(ctx context.Context) (Status, error)
	// Devices lists every field device behind the gateway.
	Devices(ctx context.Context) ([]DeviceInfo, error)
	// Twin returns the cached twin (tags, desired and reported properties)
	// of a field device or of the gateway itself (its own id).
	Twin(ctx context.Context, id string) (map[string]any, error)
	// Read reads points of a device now, from the device. An empty points
	// list means every point of its profile.
	Read(ctx context.Context, id string, points []string) ([]plugins.PointValue, error)
	// Write writes point values to a device. Values are the decoded JSON:
	// json.Number, bool or string (never null, objects or arrays).
	Write(ctx context.Context, id string, values map[string]any) ([]plugins.WriteResult, error)
	// Invoke runs a direct method on a device (or the gateway) as if it had
	// come from the hub, and returns the method's status and response.
	// payload is JSON, "null" when the request had no body.
	Invoke(ctx context.Context, id, method string, payload json.RawMessage) (status int, response any, err error)
	// Scan probes the addresses from..to (inclusive) of a bus and calls
	// progress once per probed address, never after Scan returns. Both from
	// and to are 0 when the caller named no range: the backend then scans the
	// protocol's default range. force overrides the refusal to scan a bus that
	// is being polled.
	Scan(ctx context.Context, bus string, from, to int, force bool, progress func(plugins.ScanEvent)) error
}

// JobLister is an optional Backend feature: a Backend that also implements
// it serves GET /v1/jobs. device is "" for every device.
type JobLister interface {
	Jobs(ctx context.Context, device string) ([]JobInfo, error)
}

// JobGetter is an optional Backend feature: a Backend that also implements
// it serves GET /v1/jobs/{id}. An unknown id is an error with
// plugins.CodeNotFound.
type JobGetter interface {
	Job(ctx context.Context, id string) (JobDetail, error)
}

// JobDetail is the answer of GET /v1/jobs/{id}: the list's fields and what
// only one job's view needs.
type JobDetail struct {
	JobInfo
	Payload     json.RawMessage `json:"payload,omitempty"` // what the job was asked to do
	Result      json.RawMessage `json:"result,omitempty"`  // what the device answered
	Error       string          `json:"error,omitempty"`   // why it failed, or the last error of a waiting job
	Message     string          `json:"message,omitempty"` // the latest progress message
	Bus         string          `json:"bus,omitempty"`
	Disruptive  bool            `json:"disruptive,omitempty"`
	Force       bool            `json:"force,omitempty"`
	MaxAttempts int             `json:"maxAttempts,omitempty"`
	NotBefore   time.Time       `json:"notBefore,omitzero"` // not started again before (back-off)
	Deadline    time.Time       `json:"deadline,omitzero"`
	Started     time.Time       `json:"started,omitzero"` // last attempt
	Ended       time.Time       `json:"ended,omitzero"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	GatewayID  string         `json:"gatewayId"`
	Version    string         `json:"version"`
	Time       time.Time      `json:"time"` // the gateway's clock when the status was taken; set by the server
	Uptime     Duration       `json:"uptime"`
	Upstream   UpstreamStatus `json:"upstream"`
	Plugins    []PluginStatus `json:"plugins"`
	Buses      []BusStatus    `json:"buses"`
	Devices    int            `json:"devices"`
	ConfigHash string         `json:"configHash,omitempty"`
	Outbox     *OutboxStatus  `json:"outbox,omitempty"` // nil when the gateway keeps no outbox
	Disk       *DiskStatus    `json:"disk,omitempty"`   // nil where /proc/self/io is not readable
}

// DiskStatus is the gateway process's disk writes: flash wear.
type DiskStatus struct {
	WrittenBytes int64 `json:"writtenBytes"` // since the process started
	BytesPerHour int64 `json:"bytesPerHour"` // over the last hour (the uptime, when shorter)
}

// UpstreamStatus describes the link to the hub.
type UpstreamStatus struct {
	Configured bool      `json:"configured"` // false: the gateway runs without uplink by design
	Connected  bool      `json:"connected"`
	Hub        string    `json:"hub,omitempty"`  // host name of the hub
	Since      time.Time `json:"since,omitzero"` // when Connected last changed
	LastError  string    `json:"lastError,omitempty"`
}

// PluginStatus describes one protocol plugin process.
type PluginStatus struct {
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	State     string `json:"state"` // e.g. starting, up, down, restarting
	Restarts  int    `json:"restarts"`
	LastError string `json:"lastError,omitempty"`
}

// BusStatus describes one bus and its scheduler counters.
type BusStatus struct {
	Name         string `json:"name"`
	Plugin       string `json:"plugin,omitempty"`
	State        string `json:"state"` // e.g. open, closed, plugin-down
	Transactions uint64 `json:"transactions"`
	Timeouts     uint64 `json:"timeouts"`
	Errors       uint64 `json:"errors"`
	Queue        int    `json:"queue"` // transactions waiting now
}

// OutboxStatus describes what waits for the uplink.
type OutboxStatus struct {
	Depth   int    `json:"depth"`   // messages and patches waiting
	Bytes   int64  `json:"bytes"`   // their size on disk
	Dropped uint64 `json:"dropped"` // dropped because the outbox was full or too old

	Durability   string `json:"durability,omitempty"`   // spill | batched | every_message
	InMemory     int    `json:"inMemory,omitempty"`     // of Depth, held in memory (spill)
	InSpillLog   int64  `json:"inSpillLog,omitempty"`   // of Depth, in the spill log on disk (spill)
	LostInMemory int64  `json:"lostInMemory,omitempty"` // held in memory when an earlier run crashed
}

// DeviceInfo describes one field device.
type DeviceInfo struct {
	ID        string    `json:"id"`
	Bus       string    `json:"bus"`
	Address   int       `json:"address"` // 0 when the protocol has none
	Profile   string    `json:"profile"`
	State     string    `json:"state"` // reported connection.state: connected, timeout, plugin-down, ...
	LastSeen  time.Time `json:"lastSeen,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// DeviceList is the answer of GET /v1/devices.
type DeviceList struct {
	Time    time.Time    `json:"time"` // the gateway's clock, to age LastSeen against
	Devices []DeviceInfo `json:"devices"`
}

// JobInfo is one job of the device job queue.
type JobInfo struct {
	ID       string    `json:"id"`
	Device   string    `json:"device"`
	Kind     string    `json:"kind"`             // config, write, reboot, factoryReset, method:<name> ...
	Source   string    `json:"source,omitempty"` // who asked: desired, hub-method, technician
	State    string    `json:"state"`            // queued, waiting, running, succeeded, failed, cancelled
	Reason   string    `json:"reason,omitempty"` // why it waits or failed
	Attempts int       `json:"attempts"`
	Progress int       `json:"progress,omitempty"` // percent, for long jobs
	Created  time.Time `json:"created,omitzero"`
	Updated  time.Time `json:"updated,omitzero"`
}

// JobList is the answer of GET /v1/jobs.
type JobList struct {
	Time time.Time `json:"time"`
	Jobs []JobInfo `json:"jobs"`
}
