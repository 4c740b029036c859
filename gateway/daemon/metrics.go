package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/metrics"
	"github.com/drover-iot/drover/plugins/host"
)

// metricsSource gives the metrics package one snapshot per scrape, read from
// the same parts the local API's status reads.
type metricsSource struct{ d *Daemon }

var _ metrics.Source = metricsSource{}

// MetricsSnapshot implements metrics.Source.
func (m metricsSource) MetricsSnapshot(ctx context.Context) (metrics.Snapshot, error) {
	d := m.d
	d.mu.Lock()
	cfg := d.cfg
	gw := d.gw
	d.mu.Unlock()
	var s metrics.Snapshot
	stats := d.bridges.Stats()
	// Shortest configured poll interval per bus, from the devices' profiles.
	interval := map[string]time.Duration{}
	for i := range cfg.Devices {
		dev := &cfg.Devices[i]
		spec := specFor(cfg, dev)
		for _, p := range spec.Points {
			if cur, ok := interval[dev.Bus]; !ok || p.Poll < cur {
				interval[dev.Bus] = p.Poll
			}
		}
		if len(spec.Points) == 0 {
			if _, ok := interval[dev.Bus]; !ok {
				interval[dev.Bus] = config.PointPoll(dev, nil)
			}
		}
		ds := stats.Devices[dev.ID]
		s.Devices = append(s.Devices, metrics.Device{ID: dev.ID, Bus: dev.Bus, Online: ds.State == bridges.StateOnline})
	}
	for _, b := range cfg.Buses {
		mb := metrics.Bus{Name: b.Name, Breakers: map[string]int{}}
		if bs, ok := stats.Buses[b.Name]; ok {
			mb.Transactions, mb.Timeouts, mb.Errors, mb.FastFails, mb.Queue = bs.Transactions, bs.Timeouts, bs.Errors, bs.FastFails, bs.QueueDepth
			for _, br := range bs.Breakers {
				mb.Breakers[br.State.String()]++
			}
		}
		for _, ds := range stats.Devices {
			if ds.Bus == b.Name && ds.LastCycle > mb.PollCycle {
				mb.PollCycle = ds.LastCycle
			}
		}
		mb.PollInterval = interval[b.Name]
		s.Buses = append(s.Buses, mb)
	}
	if d.box != nil {
		os, err := d.box.Stats(ctx)
		if err != nil {
			return s, fmt.Errorf("read outbox stats: %w", err)
		}
		s.Outbox = &metrics.Outbox{Depth: os.Depth, Bytes: os.Bytes, MaxBytes: os.MaxBytes, Dropped: map[string]int64{
			"full": os.DroppedFull, "ttl": os.DroppedTTL, "corrupt": os.DroppedCorrupt, "rejected": os.DroppedRejected}}
	}
	if d.jobs != nil {
		counts, err := d.jobs.Counts(ctx)
		if err != nil {
			return s, fmt.Errorf("count jobs: %w", err)
		}
		s.Jobs = make(map[string]int, len(counts))
		for st, n := range counts {
			s.Jobs[string(st)] = n
		}
	}
	s.UplinkConfigured = gw != nil && gw.client != nil
	if s.UplinkConfigured {
		s.UplinkConnected = gw.client.Stats().Connected
	}
	for _, p := range d.host.Status() {
		s.Plugins = append(s.Plugins, metrics.Plugin{Name: p.Name, Up: p.State == host.StateUp, Restarts: p.Restarts})
	}
	return s, nil
}
