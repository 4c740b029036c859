// Package daemon is the gateway process behind `drover run`: it loads the
// configuration, supervises the protocol plugins, opens buses and attaches
// devices, runs the bridges, keeps one upstream connection per identity (the
// gateway and each bridged device), applies remote configuration overlays,
// and serves the technician's local API.
package daemon

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/bridges"
	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/gateway/localapi"
	"github.com/drover-iot/drover/gateway/metrics"
	"github.com/drover-iot/drover/gateway/outbox"
	"github.com/drover-iot/drover/gateway/twincache"
	"github.com/drover-iot/drover/gateway/upstream"
	"github.com/drover-iot/drover/internal/certpool"
	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/host"
)

// Options configure a Daemon.
type Options struct {
	ConfigPath string
	Version    string
	Logger     *slog.Logger
	Now        func() time.Time
	// ReportInterval is how often the gateway refreshes its own reported
	// status (uptime, plugins, buses); default 30s.
	ReportInterval time.Duration
}

// Daemon is a running gateway.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	started time.Time
	wear    *wearMeter

	base *config.Config // the technician's file

	host    *host.Host
	plugin  func(name string) (plugins.Plugin, error) // a plugin by name: the host's handle
	bridges *bridges.Bridges
	api     *localapi.Server
	uplinks *upstream.Group // every identity's client: the first back after an outage wakes the rest

	db      *sql.DB         // data_dir/gateway.db: outbox and twin cache
	box     *outbox.Outbox  // nil without upstream
	drainer *outbox.Drainer // nil without upstream
	cache   *twincache.Cache
	jobs    *jobs.Queue
	fw      *fwUpdater

	// upstream settings (zero when the gateway runs without uplink)
	hostName, address, gwKey, childrenKey string
	tlsCfg                                *tls.Config

	reconcileMu sync.Mutex // one configuration change at a time

	mu       sync.Mutex
	cfg      *config.Config // effective: base + accepted overlay
	overlay  map[string]any // last accepted overlay
	children map[string]*child
	gw       *link
	runCtx   context.Context
	wg       sync.WaitGroup
	devState map[string]map[string]any // device id -> reported.connection as last reported
	ready    chan struct{}             // closed once the local API listens
	// gwWindows are the gateway-wide maintenance windows from the gateway's
	// desired.maintenance; nil when it sets none (YAML applies).
	gwWindows []config.Window

	tuneJobs   func(*jobs.Options)                   // test hook: adjusts the job queue's options
	reportHook func(id string, patch map[string]any) // test hook: sees every bridge report
}

type child struct {
	link   *link
	cancel context.CancelFunc
	done   chan struct{}
}

// New loads the configuration (every error with file and line) and reads
// the upstream credentials. It starts nothing.
func New(o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.ReportInterval <= 0 {
		o.ReportInterval = 30 * time.Second
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	d := &Daemon{opts: o, log: o.Logger, now: o.Now, base: cfg, cfg: cfg, children: map[string]*child{}, devState: map[string]map[string]any{}, ready: make(chan struct{}),
		uplinks: upstream.NewGroup()}
	if err := d.readUpstream(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Daemon) readUpstream() error {
	u := d.base.Upstream
	if u.ConnectionStringFile == "" {
		d.log.Warn("no upstream configured: running offline, local API only")
		return nil
	}
	b, err := os.ReadFile(u.ConnectionStringFile)
	if err != nil {
		return fmt.Errorf("read upstream connection string: %w", err)
	}
	cs, err := sas.ParseConnectionString(string(b))
	if err != nil {
		return fmt.Errorf("upstream connection string in %s: %w", u.ConnectionStringFile, err)
	}
	if cs.DeviceID != "" && cs.DeviceID != d.base.Gateway.ID {
		return fmt.Errorf("upstream connection string in %s is for device %q, but gateway.id is %q", u.ConnectionStringFile, cs.DeviceID, d.base.Gateway.ID)
	}
	d.hostName, d.gwKey, d.address = cs.HostName, cs.Key, u.Address
	if d.address == "" && cs.GatewayHostName != "" {
		d.address = cs.GatewayHostName
	}
	d.tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	if u.CAFile != "" {
		pool, err := certpool.Load(u.CAFile)
		if err != nil {
			return fmt.Errorf("upstream ca_file: %w", err)
		}
		d.tlsCfg.RootCAs = pool
	}
	if u.ChildrenKeyFile != "" {
		k, err := os.ReadFile(u.ChildrenKeyFile)
		if err != nil {
			return fmt.Errorf("read children key: %w", err)
		}
		d.childrenKey = strings.TrimSpace(string(k))
		if _, err := sas.DeriveKey(d.childrenKey, "probe"); err != nil {
			return fmt.Errorf("children key in %s: %w", u.ChildrenKeyFile, err)
		}
	} else {
		d.log.Warn("no upstream.children_key_file: bridged devices are served locally but not connected to the hub")
	}
	return nil
}

func (d *Daemon) pluginNames(c *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	for _, b := range c.Buses {
		if !seen[b.Plugin] {
			seen[b.Plugin] = true
			out = append(out, b.Plugin)
		}
	}
	return out
}

// Run serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.started = d.now()
	d.wear = newWearMeter()
	if _, err := d.wear.sample(d.started); err != nil {
		d.log.Debug("disk wear unavailable", "error", err)
	}
	cfg := d.cfg
	if err := os.MkdirAll(cfg.Gateway.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data_dir: %w", err)
	}
	if err := d.openState(cfg); err != nil {
		return err
	}
	defer d.closeState()
	if err := d.openFirmware(cfg); err != nil {
		return err
	}
	h, err := host.New(host.Options{Dir: cfg.Plugins.Dir, Plugins: d.pluginNames(cfg), Logger: d.log.With("component", "plugins"),
		StartTimeout: cfg.Plugins.StartTimeout, BackoffMin: cfg.Plugins.RestartBackoff.Min, BackoffMax: cfg.Plugins.RestartBackoff.Max})
	if err != nil {
		return fmt.Errorf("plugin host: %w", err)
	}
	d.host = h
	d.plugin = func(name string) (plugins.Plugin, error) { return h.Plugin(name) }
	d.bridges = bridges.New(d.bridgeOptions(d.plugin))
	h.OnState(func(ev host.Event) {
		d.log.Info("plugin state", "plugin", ev.Plugin, "state", ev.State.String(), "error", ev.Err)
		// Once the gateway stops, plugins stop because of it: that says
		// nothing about the devices, and a "plugin-down" reported now would
		// sit in the outbox and reach the hub stale after the next start.
		if up, ok := pluginUp(ev.State); ok && ctx.Err() == nil {
			d.bridges.PluginState(ev.Plugin, up)
		}
	})
	d.runCtx = ctx
	errs := make(chan error, 8)
	// The plugin host outlives everything that calls plugins (bridges, jobs,
	// methods): it stops last, after they all returned.
	hostCtx, stopHost := context.WithCancel(context.WithoutCancel(ctx))
	hostDone := make(chan struct{})
	go func() { defer close(hostDone); errs <- wrap("plugin host", h.Run(hostCtx)) }()
	d.wg.Add(1)
	go func() { defer d.wg.Done(); errs <- wrap("bridges", d.bridges.Run(ctx)) }()
	defer func() {
		cancel()
		d.wg.Wait()
		stopHost()
		<-hostDone
	}()

	if err := d.waitPlugins(ctx, cfg); err != nil {
		return err
	}
	if err := d.validateWithPlugins(ctx, cfg); err != nil {
		return err
	}
	// The queue takes jobs before it runs: a device's desired config may
	// arrive (and become a job) as soon as the device is added.
	if err := d.openJobs(ctx); err != nil {
		return err
	}
	// What the gateway's desired properties set up before a restart comes
	// back from the twin cache first: the overlay decides which devices run.
	restored := d.restoreGatewayDesired(ctx)
	d.mu.Lock()
	cfg = d.cfg
	d.mu.Unlock()

	for i := range cfg.Buses {
		if err := d.openBus(ctx, &cfg.Buses[i]); err != nil {
			d.log.Error("open bus", "bus", cfg.Buses[i].Name, "error", err)
		}
	}
	for i := range cfg.Devices {
		if err := d.addDevice(ctx, cfg, &cfg.Devices[i]); err != nil {
			d.log.Error("add device", "device", cfg.Devices[i].ID, "error", err)
		}
	}

	d.wg.Add(1)
	go func() { defer d.wg.Done(); errs <- wrap("job queue", d.jobs.Run(ctx)) }()

	// The gateway's own identity, once the devices are in place: its desired
	// configuration overlay may change them.
	d.gw = d.newLink(cfg.Gateway.ID)
	d.gw.onDesired = d.onGatewayDesired
	d.gw.onMethod = d.gatewayMethod
	if restored != nil {
		d.gw.Report(restored)
	}
	if d.gwKey != "" {
		c, err := d.newClient(cfg.Gateway.ID, d.gwKey, d.gw)
		if err != nil {
			return err
		}
		d.gw.client = c
	}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.gw.run(ctx) }()
	if d.drainer != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); errs <- wrap("outbox drainer", d.drainer.Run(ctx)) }()
	}

	token, err := d.apiToken(cfg)
	if err != nil {
		return err
	}
	api, err := localapi.New(localapi.Options{Addr: cfg.Gateway.LocalAPI, Backend: backend{d}, Token: token, Logger: d.log.With("component", "localapi"), Now: d.now,
		Metrics: metrics.NewHandler(metricsSource{d}, d.log.With("component", "metrics"))})
	if err != nil {
		return err
	}
	d.api = api
	d.wg.Add(1)
	go func() { defer d.wg.Done(); errs <- wrap("local api", api.Run(ctx)) }()
	go func() {
		select {
		case <-api.Ready():
			close(d.ready)
		case <-ctx.Done():
		}
	}()

	d.reportGateway()
	tick := time.NewTicker(d.opts.ReportInterval)
	defer tick.Stop()
	d.log.Info("gateway running", "gateway", cfg.Gateway.ID, "devices", len(cfg.Devices), "buses", len(cfg.Buses), "local_api", cfg.Gateway.LocalAPI)
	for {
		select {
		case <-ctx.Done():
			d.stopChildren()
			return nil
		case err := <-errs:
			if err != nil {
				d.stopChildren()
				return err
			}
		case <-tick.C:
			d.reportGateway()
		}
	}
}

func wrap(what string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// APIReady is closed once the local API listens.
func (d *Daemon) APIReady() <-chan struct{} { return d.ready }

func (d *Daemon) apiToken(cfg *config.Config) (string, error) {
	if cfg.Gateway.LocalAPITokenFile != "" {
		return localapi.EnsureTokenFile(cfg.Gateway.LocalAPITokenFile)
	}
	return localapi.EnsureToken(cfg.Gateway.DataDir)
}

func (d *Daemon) waitPlugins(ctx context.Context, cfg *config.Config) error {
	for _, name := range d.pluginNames(cfg) {
		p, err := d.host.Plugin(name)
		if err != nil {
			return fmt.Errorf("plugin %s: %w", name, err)
		}
		wctx, cancel := context.WithTimeout(ctx, cfg.Plugins.StartTimeout+5*time.Second)
		err = p.WaitUp(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("plugin %s did not start: %w", name, err)
		}
	}
	return nil
}

func (d *Daemon) validators(cfg *config.Config) map[string]config.PluginValidator {
	v := map[string]config.PluginValidator{}
	for _, name := range d.pluginNames(cfg) {
		if p, err := d.plugin(name); err == nil {
			v[name] = p
		}
	}
	return v
}

func (d *Daemon) validateWithPlugins(ctx context.Context, cfg *config.Config) error {
	return cfg.ValidateWithPlugins(ctx, d.validators(cfg))
}

func (d *Daemon) newClient(id, key string, l *link) (*upstream.Client, error) {
	u := d.base.Upstream
	// A bridged device's methods go through its bus one at a time anyway,
	// so a child runs one method call at a time.
	return upstream.New(upstream.Options{DeviceID: id, HostName: d.hostName, Address: d.address, Key: key, TLS: d.tlsCfg,
		TokenTTL: u.TokenTTL, KeepAlive: u.Keepalive, Version: d.opts.Version, Logger: d.log.With("component", "upstream"), Now: d.now, Handler: l,
		MethodWorkers: 1, Group: d.uplinks})
}

func (d *Daemon) openBus(ctx context.Context, b *config.Bus) error {
	p, err := d.plugin(b.Plugin)
	if err != nil {
		return err
	}
	raw, err := b.JSON()
	if err != nil {
		return err
	}
	return p.OpenBus(ctx, plugins.BusConfig{Name: b.Name, Config: raw})
}

func (d *Daemon) closeBus(ctx context.Context, b *config.Bus) {
	if p, err := d.plugin(b.Plugin); err == nil {
		if err := p.CloseBus(ctx, b.Name); err != nil {
			d.log.Warn("close bus", "bus", b.Name, "error", err)
		}
	}
}

// addDevice attaches a device to its plugin, starts bridging it and connects its identity upstream.
func (d *Daemon) addDevice(ctx context.Context, cfg *config.Config, dev *config.Device) error {
	p, pluginName, err := d.attach(ctx, cfg, dev)
	if err != nil {
		return err
	}
	l := d.newLink(dev.ID)
	id := dev.ID
	l.onDesired = func(desired map[string]any, version int64) { d.deviceDesired(id, l, desired, version) }
	l.onMethod = func(ctx context.Context, name string, payload json.RawMessage) (int, any) {
		return d.deviceMethod(ctx, id, name, payload, jobs.SourceHubMethod)
	}
	if d.childrenKey != "" {
		key, err := sas.DeriveKey(d.childrenKey, dev.ID)
		if err != nil {
			return err
		}
		if l.client, err = d.newClient(dev.ID, key, l); err != nil {
			return err
		}
	}
	d.restoreDeviceWindows(ctx, id, l)
	cctx, cancel := context.WithCancel(d.runCtx)
	c := &child{link: l, cancel: cancel, done: make(chan struct{})}
	d.mu.Lock()
	d.children[dev.ID] = c
	d.mu.Unlock()
	d.wg.Add(1)
	go func() { defer d.wg.Done(); defer close(c.done); l.run(cctx) }()
	if err := d.bridges.Add(ctx, specFor(cfg, dev), pluginName); err != nil {
		d.removeChild(dev.ID)
		_ = p.Detach(ctx, dev.ID)
		return fmt.Errorf("bridge %s: %w", dev.ID, err)
	}
	return nil
}

// attach hands dev to the plugin of its bus and returns that plugin.
func (d *Daemon) attach(ctx context.Context, cfg *config.Config, dev *config.Device) (plugins.Plugin, string, error) {
	bus := cfg.Bus(dev.Bus)
	if bus == nil {
		return nil, "", fmt.Errorf("device %s: unknown bus %s", dev.ID, dev.Bus)
	}
	p, err := d.plugin(bus.Plugin)
	if err != nil {
		return nil, "", err
	}
	dc, err := cfg.DeviceConfig(dev.ID)
	if err != nil {
		return nil, "", err
	}
	if err := p.Attach(ctx, dc); err != nil {
		return nil, "", fmt.Errorf("attach %s: %w", dev.ID, err)
	}
	return p, bus.Plugin, nil
}

func (d *Daemon) removeDevice(ctx context.Context, cfg *config.Config, dev *config.Device) {
	d.detachDevice(ctx, cfg, dev)
	d.removeChild(dev.ID)
}

// detachDevice stops dev's bridge and detaches it from its plugin; its
// uplink stays.
func (d *Daemon) detachDevice(ctx context.Context, cfg *config.Config, dev *config.Device) {
	d.bridges.Remove(dev.ID)
	if bus := cfg.Bus(dev.Bus); bus != nil {
		if p, err := d.plugin(bus.Plugin); err == nil {
			if err := p.Detach(ctx, dev.ID); err != nil {
				d.log.Warn("detach", "device", dev.ID, "error", err)
			}
		}
	}
}

// reattachDevice gives a device whose link is up a new field side: attach
// with cfg's entry and start its bridge. The uplink is not touched, so the
// hub sees no disconnect for a configuration change.
func (d *Daemon) reattachDevice(ctx context.Context, cfg *config.Config, dev *config.Device) error {
	p, pluginName, err := d.attach(ctx, cfg, dev)
	if err != nil {
		return err
	}
	if err := d.bridges.Add(ctx, specFor(cfg, dev), pluginName); err != nil {
		_ = p.Detach(ctx, dev.ID)
		return fmt.Errorf("bridge %s: %w", dev.ID, err)
	}
	return nil
}

func (d *Daemon) removeChild(id string) {
	d.mu.Lock()
	c := d.children[id]
	delete(d.children, id)
	d.mu.Unlock()
	if c != nil {
		c.cancel()
		<-c.done
	}
}

func (d *Daemon) stopChildren() {
	d.mu.Lock()
	ids := make([]string, 0, len(d.children))
	for id := range d.children {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		d.removeChild(id)
	}
}

func (d *Daemon) childLink(id string) *link {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.children[id]; c != nil {
		return c.link
	}
	return nil
}

// specFor turns a configured device and its profile into a bridge spec.
func specFor(cfg *config.Config, dev *config.Device) bridges.DeviceSpec {
	spec := bridges.DeviceSpec{ID: dev.ID, Bus: dev.Bus, DefaultPoll: dev.Poll}
	prof := cfg.Profiles[dev.Profile]
	if prof == nil {
		return spec
	}
	for i := range prof.Points {
		p := &prof.Points[i]
		spec.Points = append(spec.Points, bridges.PointSpec{Name: p.Name, Poll: config.PointPoll(dev, p), Writable: p.Writable, Deadband: p.Deadband})
	}
	if prof.InUse != nil {
		spec.InUse = &bridges.InUseRule{Point: prof.InUse.Point, Equals: prof.InUse.Equals}
	}
	for name, m := range prof.CustomMethods() {
		if spec.Methods == nil {
			spec.Methods = map[string]bridges.MethodSpec{}
		}
		spec.Methods[name] = bridges.MethodSpec{Points: m.Points, Disruptive: m.Disruptive}
	}
	return spec
}

// deviceDesired hands a device's desired properties on: desired.config to
// its bridge (which hands versions with writes back as config jobs) and
// desired.maintenance to the job queue as the device's own windows.
func (d *Daemon) deviceDesired(id string, l *link, desired map[string]any, version int64) {
	cfgDoc, _ := desired["config"].(map[string]any)
	if cfgDoc == nil {
		cfgDoc = map[string]any{}
	}
	if err := d.bridges.Desired(id, cfgDoc, version); err != nil {
		d.log.Warn("apply desired", "device", id, "error", err)
	}
	d.deviceWindows(id, l, desired)
	if fw, ok := desired["firmware"]; ok {
		d.desiredFirmware(id, l, fw)
	}
}

// deviceWindows takes a device's desired.maintenance (absent: none) as its
// maintenance windows.
func (d *Daemon) deviceWindows(id string, l *link, desired map[string]any) {
	if d.jobs == nil {
		return
	}
	var ws []config.Window
	if m, ok := desired["maintenance"]; ok {
		raw, _ := json.Marshal(m)
		var err error
		if ws, err = jobs.ParseMaintenance(raw); err != nil {
			d.log.Warn("desired.maintenance rejected", "device", id, "error", err)
			l.Report(map[string]any{"maintenance": map[string]any{"status": "rejected", "error": err.Error()}})
			return
		}
	}
	if err := d.jobs.SetWindows(id, ws); err != nil {
		d.log.Warn("set maintenance windows", "device", id, "error", err)
	}
}

// bridgeOptions are the bridges' options over the plugins resolved by
// plugin: reports go to the devices' links, desired config versions
// become jobs.
func (d *Daemon) bridgeOptions(plugin func(string) (plugins.Plugin, error)) bridges.Options {
	return bridges.Options{
		Plugins: plugin, Sink: sink{d}, Logger: d.log.With("component", "bridges"), DefaultPoll: config.DefaultPoll,
		SubmitConfig: d.submitConfig,
	}
}

// pluginUp maps a plugin state to what the bridges are told: up, down, or
// nothing (ok false). Starting follows a down already told (or precedes
// the first attach); stopped means the gateway is stopping it.
func pluginUp(s host.State) (up, ok bool) {
	switch s {
	case host.StateUp:
		return true, true
	case host.StateDown:
		return false, true
	}
	return false, false
}

// sink routes what the bridges learn to each device's upstream link.
type sink struct{ d *Daemon }

func (s sink) Reported(id string, patch map[string]any) {
	if h := s.d.reportHook; h != nil {
		h(id, patch)
	}
	if c, ok := patch["connection"].(map[string]any); ok {
		s.d.mu.Lock()
		st := s.d.devState[id]
		if st == nil {
			st = map[string]any{}
			s.d.devState[id] = st
		}
		mergeInto(st, c)
		s.d.mu.Unlock()
		if c["state"] == bridges.StateOnline && s.d.jobs != nil {
			s.d.jobs.Poke() // jobs waiting for the device may run now
		}
	}
	patch = s.d.firmwareFromIdentity(id, patch)
	if l := s.d.childLink(id); l != nil {
		l.Report(patch)
	}
}

func (s sink) Telemetry(id string, values map[string]any, at time.Time) {
	if l := s.d.childLink(id); l != nil {
		l.Telemetry(values, at)
	}
}

// spillCacheFlush is how often the twin cache writes reported changes under
// spill durability.
const spillCacheFlush = 30 * time.Second

// openState opens the gateway's database: the twin cache always, the outbox
// and its drainer when there is an upstream to forward to.
func (d *Daemon) openState(cfg *config.Config) error {
	path := filepath.Join(cfg.Gateway.DataDir, "gateway.db")
	db, err := sql.Open("sqlite3", outbox.DSN(path, outbox.SyncFull))
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: the outbox, twin cache and job queue share the file;
	// more connections only wait in SQLite's busy handler, each holding an OS
	// thread (measured: 220+ threads and +55 MB RSS with 250 devices).
	db.SetMaxOpenConns(1)
	d.db = db
	durability, err := outbox.ParseDurability(cfg.Outbox.Durability)
	if err != nil {
		return fmt.Errorf("outbox.durability: %w", err)
	}
	// The twin cache's reported section follows the outbox's durability:
	// merged in memory and written in one transaction per period.
	var cacheFlush time.Duration
	switch durability {
	case outbox.Spill:
		cacheFlush = spillCacheFlush
	case outbox.Batched:
		cacheFlush = cfg.Outbox.BatchEvery
	}
	if d.cache, err = twincache.New(db, twincache.Options{FlushEvery: cacheFlush, Logger: d.log.With("component", "twincache"), Now: d.now}); err != nil {
		return fmt.Errorf("twin cache in %s: %w", path, err)
	}
	if d.gwKey == "" {
		return nil
	}
	policy, err := outbox.ParsePolicy(cfg.Outbox.OnFull)
	if err != nil {
		return fmt.Errorf("outbox.on_full: %w", err)
	}
	d.box, err = outbox.New(db, outbox.Options{MaxBytes: int64(cfg.Outbox.MaxBytes), TTL: cfg.Outbox.TTL, OnFull: policy,
		Durability: durability, SpillAfter: cfg.Outbox.SpillAfter, MemoryBytes: int64(cfg.Outbox.MemoryBytes), BatchEvery: cfg.Outbox.BatchEvery,
		HeldFile: filepath.Join(cfg.Gateway.DataDir, "outbox.held"), SpillDir: filepath.Join(cfg.Gateway.DataDir, "outbox-spill"),
		// Test instrumentation: the soak reads back every spilled message.
		SpillRetireDir: os.Getenv("DROVER_TEST_SPILL_RETIRE"),
		Logger:         d.log.With("component", "outbox"), Now: d.now})
	if err != nil {
		return fmt.Errorf("outbox in %s: %w", path, err)
	}
	d.drainer, err = outbox.NewDrainer(d.box, outbox.DrainerOptions{
		Telemetry: d.sendTelemetry, Reported: d.sendReported, Ready: d.identityConnected,
		Logger: d.log.With("component", "drainer"),
	})
	if err != nil {
		return fmt.Errorf("outbox drainer: %w", err)
	}
	return nil
}

// closeState runs after every goroutine has stopped.
func (d *Daemon) closeState() {
	d.wg.Wait()
	if d.box != nil {
		if err := d.box.Close(); err != nil {
			d.log.Warn("close outbox", "error", err)
		}
	}
	if d.cache != nil {
		if err := d.cache.Close(); err != nil {
			d.log.Warn("close twin cache", "error", err)
		}
	}
	if d.db != nil {
		_ = d.db.Close()
	}
}

func (d *Daemon) newLink(id string) *link {
	l := &link{id: id, log: d.log.With("device", id), box: d.box, cache: d.cache, now: d.now, wake: func() {}}
	if d.drainer != nil {
		l.wake = d.drainer.Wake
	}
	return l
}

// linkFor finds the link of an identity: the gateway's or a child's.
func (d *Daemon) linkFor(id string) *link {
	if d.gw != nil && d.gw.id == id {
		return d.gw
	}
	return d.childLink(id)
}

func (d *Daemon) identityConnected(id string) bool {
	l := d.linkFor(id)
	return l != nil && l.client != nil && l.client.Connected()
}

func (d *Daemon) sendTelemetry(ctx context.Context, e outbox.Entry) error {
	l := d.linkFor(e.Identity)
	if l == nil || l.client == nil {
		return fmt.Errorf("%w: %s is no longer bridged", outbox.ErrUndeliverable, e.Identity)
	}
	return l.client.SendTelemetry(ctx, e.Body, e.WireProps())
}

func (d *Daemon) sendReported(ctx context.Context, e outbox.Entry) error {
	l := d.linkFor(e.Identity)
	if l == nil || l.client == nil {
		return fmt.Errorf("%w: %s is no longer bridged", outbox.ErrUndeliverable, e.Identity)
	}
	var patch map[string]any
	if err := json.Unmarshal(e.Body, &patch); err != nil {
		return fmt.Errorf("%w: reported patch of %s: %v", outbox.ErrUndeliverable, e.Identity, err)
	}
	if _, err := l.client.PatchReported(ctx, patch); err != nil {
		var se *upstream.StatusError
		if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 {
			return fmt.Errorf("%w: %v", outbox.ErrUndeliverable, err)
		}
		return err
	}
	return nil
}
