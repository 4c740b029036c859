package bridges

import (
	"time"

	"github.com/drover-iot/drover/bridges/bus"
)

// Stats is a snapshot of every bus and device, for the gateway's own twin
// and metrics.
type Stats struct {
	Buses   map[string]bus.Stats   `json:"buses"`
	Devices map[string]DeviceStats `json:"devices"`
}

// DeviceStats describes one device's bridge.
type DeviceStats struct {
	Bus         string        `json:"bus"`
	Plugin      string        `json:"plugin"`
	State       string        `json:"state"`       // connection state; "" before the first poll
	Polls       uint64        `json:"polls"`       // poll cycles done
	Changes     uint64        `json:"changes"`     // point changes published
	Errors      uint64        `json:"errors"`      // poll cycles that failed (no answer, back-off, plugin error)
	PointErrors uint64        `json:"pointErrors"` // single points read with bad quality
	LastCycle   time.Duration `json:"lastCycle"`   // duration of the last poll cycle, queueing included
	LastSeen    time.Time     `json:"lastSeen,omitzero"`
	LastError   string        `json:"lastError,omitempty"`
}

// Stats returns a snapshot.
func (b *Bridges) Stats() Stats {
	b.mu.Lock()
	st := Stats{Buses: make(map[string]bus.Stats, len(b.buses)), Devices: make(map[string]DeviceStats, len(b.devices))}
	scheds := make([]*bus.Scheduler, 0, len(b.buses))
	for _, s := range b.buses {
		scheds = append(scheds, s)
	}
	devs := make([]*device, 0, len(b.devices))
	for _, d := range b.devices {
		devs = append(devs, d)
	}
	b.mu.Unlock()
	for _, s := range scheds {
		st.Buses[s.Name()] = s.Stats()
	}
	for _, d := range devs {
		d.mu.Lock()
		ds := d.stats
		ds.LastSeen = d.conn.answered
		d.mu.Unlock()
		st.Devices[d.spec.ID] = ds
	}
	return st
}
