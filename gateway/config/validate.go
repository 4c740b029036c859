package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zone names must resolve on gateways without /usr/share/zoneinfo

	"github.com/drover-iot/drover/firmware"
)

// Validate checks a defaulted configuration and its profiles. It also
// compiles the maintenance windows (cron and time zone). Load, Merge and
// Check call it; call it yourself only for a Config built in code.
func (c *Config) Validate() error {
	var ps problems
	c.validate(&ps)
	return ps.err()
}

// Limits checked by Validate.
const (
	maxDeviceIDLen   = 128 // IoT Hub device id limit
	minPoll          = 10 * time.Millisecond
	maxBusTimeout    = 5 * time.Minute
	maxRetries       = 10
	maxKeepalive     = 1177 * time.Second // hub disconnects at 1.5× keep-alive, capped at 1767 s
	minOutboxBytes   = Size(64 << 10)
	maxMemoryBytes   = Size(64 << 20)
	maxSpillAfter    = time.Minute
	maxBatchEvery    = 10 * time.Second
	minFirmwareCache = Size(1 << 20)
)

// Modbus modes.
var modbusModes = []string{"rtu", "ascii", "tcp"}

// Serial line settings.
var (
	// bauds are the rates Linux termios (and so the serial libraries) can set.
	bauds = []int{50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
		57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000,
		2500000, 3000000, 3500000, 4000000}
	parities     = []string{"none", "even", "odd"}
	logLevels    = []string{"debug", "info", "warn", "error"}
	onFulls      = []string{OnFullDropOldest, OnFullRejectNew}
	durabilities = []string{DurabilitySpill, DurabilityBatched, DurabilityEveryMessage}
)

func (c *Config) validate(ps *problems) {
	c.fillSources()
	c.validateGateway(ps)
	c.validateUpstream(ps)
	c.validatePlugins(ps)
	busIdx := c.validateBuses(ps)
	c.validateDevices(ps, busIdx)
	c.validateMaintenance(ps)
	c.validateOutbox(ps)
	c.validateFirmware(ps)
	for _, name := range sortedProfileNames(c.Profiles) {
		c.Profiles[name].validate(ps)
	}
}

// fillSources gives sections missing from the file an empty source at the
// top of the file, so problems about them (gateway.id: required) still name
// the file and a line.
func (c *Config) fillSources() {
	if c.src == nil {
		return
	}
	fill := func(s *source, parent pos, key string) {
		if s.src == nil {
			at := parent.child(key)
			if at.line == 0 {
				at.line = 1
			}
			s.src = &node{kind: mapNode, pos: at}
		}
	}
	top := c.src.pos
	fill(&c.Gateway.source, top, "gateway")
	fill(&c.Upstream.source, top, "upstream")
	fill(&c.Plugins.source, top, "plugins")
	fill(&c.Plugins.RestartBackoff.source, c.Plugins.src.pos, "restart_backoff")
	fill(&c.Maintenance.source, top, "maintenance")
	fill(&c.Outbox.source, top, "outbox")
	fill(&c.Firmware.source, top, "firmware")
}

func (c *Config) validateGateway(ps *problems) {
	g := &c.Gateway
	at := func(k string) pos { return g.at("gateway", k) }
	if g.ID == "" {
		ps.add(at("id"), "required: the gateway's own device id in the hub")
	} else if msg := checkDeviceID(g.ID); msg != "" {
		ps.add(at("id"), "%s", msg)
	}
	if g.DataDir == "" {
		ps.add(at("data_dir"), "must not be empty")
	}
	if msg := checkListen(g.LocalAPI); msg != "" {
		ps.add(at("local_api"), "%s", msg)
	} else if !loopbackListen(g.LocalAPI) && g.LocalAPITokenFile == "" {
		ps.add(at("local_api"), "%s is reachable from the network: set local_api_token_file too, or listen on 127.0.0.1 or a unix socket", g.LocalAPI)
	}
	if !slices.Contains(logLevels, g.LogLevel) {
		ps.add(at("log_level"), "unknown level %q (use %s)", g.LogLevel, strings.Join(logLevels, " | "))
	}
}

// checkListen checks a local API address: host:port or unix:/path.
func checkListen(addr string) string {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return "unix: needs a socket path, e.g. unix:/run/drover.sock"
		}
		return ""
	}
	if _, _, err := splitHostPort(addr, true); err != nil {
		return fmt.Sprintf("bad address %q: %v (use host:port or unix:/path)", addr, err)
	}
	return ""
}

func loopbackListen(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return true
	}
	host, _, err := splitHostPort(addr, true)
	if err != nil {
		return true // reported elsewhere
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitHostPort splits and checks host:port. An empty host is allowed only
// when emptyHost is true (listen on all interfaces).
func splitHostPort(addr string, emptyHost bool) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if !strings.Contains(addr, ":") {
			return "", 0, fmt.Errorf("missing :port")
		}
		return "", 0, fmt.Errorf("want host:port")
	}
	if host == "" && !emptyHost {
		return "", 0, fmt.Errorf("missing host")
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return "", 0, fmt.Errorf("bad host %q", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, n, nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// checkDeviceID checks an IoT Hub device id: at most 128 ASCII letters,
// digits and - . % _ * ? ! ( ) , = @ $ '. The hub also allows + and #, but
// they are MQTT wildcards and cannot appear in a topic name
// [MQTT-3.3.2-2], so a device with one could never publish.
func checkDeviceID(id string) string {
	if len(id) > maxDeviceIDLen {
		return fmt.Sprintf("device id is %d characters long; the hub allows at most %d", len(id), maxDeviceIDLen)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-.%_*?!(),=@$'", r):
		case r == '+' || r == '#':
			return fmt.Sprintf("device id %q contains %q, an MQTT wildcard that cannot appear in a topic", id, r)
		default:
			return fmt.Sprintf("device id %q contains %q (allowed: letters, digits and - . %% _ * ? ! ( ) , = @ $ ')", id, r)
		}
	}
	return ""
}

// checkTwinKey checks a name used as a twin property key (points, tags):
// no '.', '$', spaces or control characters, at most 128 bytes here.
func checkTwinKey(what, key string) string {
	if key == "" {
		return what + " must not be empty"
	}
	if len(key) > 128 {
		return fmt.Sprintf("%s %q is longer than 128 bytes", what, key)
	}
	for _, r := range key {
		if r == '.' || r == '$' || r == ' ' || r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return fmt.Sprintf("%s %q contains %q; twin property names cannot contain '.', '$', spaces or control characters", what, key, r)
		}
	}
	return ""
}

// checkName checks a bus, plugin or profile name: letters, digits, - _ .,
// not starting with a dot (profile names become file names).
func checkName(what, name string) string {
	if name == "" {
		return what + " must not be empty"
	}
	if name[0] == '.' {
		return fmt.Sprintf("%s %q must not start with '.'", what, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("%s %q contains %q (use letters, digits, - _ .)", what, name, r)
		}
	}
	return ""
}

// upstreamSet reports whether the gateway has an uplink configured; without
// one it runs offline.
func (c *Config) upstreamSet() bool {
	u := &c.Upstream
	return u.ConnectionStringFile != "" || u.Address != "" || u.CAFile != "" || u.ChildrenKeyFile != ""
}

func (c *Config) validateUpstream(ps *problems) {
	u := &c.Upstream
	at := func(k string) pos { return u.at("upstream", k) }
	if c.upstreamSet() && u.ConnectionStringFile == "" {
		ps.add(at("connection_string_file"), "required when upstream is set (a file holding HostName=…;DeviceId=…;SharedAccessKey=…)")
	}
	if u.Address != "" {
		if _, _, err := splitHostPort(u.Address, false); err != nil {
			ps.add(at("address"), "bad address %q: %v", u.Address, err)
		}
	}
	if u.HTTPSAddress != "" {
		if _, _, err := splitHostPort(u.HTTPSAddress, false); err != nil {
			ps.add(at("https_address"), "bad address %q: %v", u.HTTPSAddress, err)
		}
	}
	if u.Keepalive < 5*time.Second || u.Keepalive > maxKeepalive {
		ps.add(at("keepalive"), "%s out of range 5s..%s (the hub caps keep-alive)", formatDuration(u.Keepalive), formatDuration(maxKeepalive))
	}
	if u.TokenTTL < time.Minute {
		ps.add(at("token_ttl"), "%s is too short (at least 1m)", formatDuration(u.TokenTTL))
	}
}

func (c *Config) validatePlugins(ps *problems) {
	p := &c.Plugins
	if p.StartTimeout <= 0 {
		ps.add(p.at("plugins", "start_timeout"), "must be positive")
	}
	b := &p.RestartBackoff
	at := func(k string) pos { return b.at("plugins.restart_backoff", k) }
	if b.Min <= 0 {
		ps.add(at("min"), "must be positive")
	}
	if b.Max < b.Min {
		ps.add(at("max"), "%s is less than min %s", formatDuration(b.Max), formatDuration(b.Min))
	}
}

// validateBuses checks the buses and returns their index by name.
func (c *Config) validateBuses(ps *problems) map[string]*Bus {
	idx := map[string]*Bus{}
	seenAt := map[string]pos{}
	endpoints := map[string]*Bus{}
	for i := range c.Buses {
		b := &c.Buses[i]
		path := indexPath("buses", i)
		at := func(k string) pos { return b.at(path, k) }
		if msg := checkName("bus name", b.Name); msg != "" {
			ps.add(at("name"), "%s", msg)
		} else if first, dup := idx[b.Name]; dup {
			ps.add(at("name"), "duplicate bus name %q (first at line %d)", b.Name, seenAt[first.Name].line)
		} else {
			idx[b.Name] = b
			seenAt[b.Name] = at("name")
		}
		if msg := checkName("plugin", b.Plugin); msg != "" {
			ps.add(at("plugin"), "%s", msg)
		}
		b.validate(ps, at)
		// One master per line: a port or endpoint belongs to one bus.
		for _, ep := range []string{b.Port, b.Address} {
			if ep == "" {
				continue
			}
			if other, dup := endpoints[ep]; dup {
				key := "port"
				if ep == b.Address {
					key = "address"
				}
				ps.add(at(key), "%s is already used by bus %q (line %d); one line or endpoint is one bus: put all its devices on that bus",
					ep, other.Name, other.at("", key).line)
				continue
			}
			endpoints[ep] = b
		}
	}
	return idx
}

func (b *Bus) validate(ps *problems, at func(string) pos) {
	set := func(k string) bool { return b.src != nil && b.src.get(k) != nil }
	switch b.Plugin {
	case "modbus":
		switch {
		case b.Mode == "":
			ps.add(at("mode"), "required for a modbus bus (%s)", strings.Join(modbusModes, " | "))
		case !slices.Contains(modbusModes, b.Mode):
			ps.add(at("mode"), "unknown mode %q (use %s)%s", b.Mode, strings.Join(modbusModes, " | "), didYouMean(b.Mode, modbusModes))
		case b.Mode == "rtu" || b.Mode == "ascii":
			if b.Port == "" {
				ps.add(at("port"), "required for a %s bus (the serial device, e.g. /dev/ttyUSB0)", b.Mode)
			}
			if b.Address != "" {
				ps.add(at("address"), "a %s bus has no network address; set port (or use mode tcp)", b.Mode)
			}
			if b.Mode == "rtu" && b.DataBits != 8 {
				ps.add(at("data_bits"), "Modbus RTU needs 8 data bits")
			}
		default: // tcp
			if b.Address == "" {
				ps.add(at("address"), "required for a %s bus (host:port, e.g. 10.0.0.5:502)", b.Mode)
			} else if _, _, err := splitHostPort(b.Address, false); err != nil {
				ps.add(at("address"), "bad address %q: %v (e.g. 10.0.0.5:502)", b.Address, err)
			}
			if b.Port != "" {
				ps.add(at("port"), "port is the serial device; a %s bus takes address: host:port", b.Mode)
			}
			for _, k := range []string{"baud", "data_bits", "parity", "stop_bits"} {
				if set(k) {
					ps.add(at(k), "serial line setting on a %s bus (remove it)", b.Mode)
				}
			}
		}
	case "serial":
		if b.Port == "" {
			ps.add(at("port"), "required for a serial bus (e.g. /dev/ttyS1)")
		}
		if b.Address != "" {
			ps.add(at("address"), "a serial bus has no network address; set port")
		}
	}
	if b.serialLine() {
		if !slices.Contains(bauds, b.Baud) {
			ps.add(at("baud"), "unsupported baud rate %d (use e.g. 9600, 19200, 38400, 57600, 115200)", b.Baud)
		}
		if b.DataBits < 5 || b.DataBits > 8 {
			ps.add(at("data_bits"), "%d out of range 5..8", b.DataBits)
		}
		if !slices.Contains(parities, b.Parity) {
			ps.add(at("parity"), "unknown parity %q (use none | even | odd)", b.Parity)
		}
		if b.StopBits != 1 && b.StopBits != 2 {
			ps.add(at("stop_bits"), "%d is not 1 or 2", b.StopBits)
		}
	}
	if b.Timeout <= 0 || b.Timeout > maxBusTimeout {
		ps.add(at("timeout"), "%s out of range (0, %s]", formatDuration(b.Timeout), formatDuration(maxBusTimeout))
	}
	if b.Retries != nil && (*b.Retries < 0 || *b.Retries > maxRetries) {
		ps.add(at("retries"), "%d out of range 0..%d", *b.Retries, maxRetries)
	}
}

// addressRange returns the valid device addresses on bus b, and whether a
// device must (or must not) have one.
func (b *Bus) addressRange() (lo, hi int, need, forbid bool) {
	switch b.Plugin {
	case "modbus":
		if b.Mode == "tcp" {
			return 0, 255, true, false // unit id; 255 or 0 address the TCP device itself
		}
		return 1, 247, true, false // serial line unit ids; 0 is broadcast (Modbus over Serial Line V1.02, 2.2)
	case "serial":
		return 0, 0, false, true
	}
	return 0, 1<<31 - 1, false, false
}

func (c *Config) validateDevices(ps *problems, buses map[string]*Bus) {
	ids := map[string]pos{}
	type busAddr struct {
		bus  string
		addr int
	}
	addrs := map[busAddr]*Device{}
	perBus := map[string]*Device{}
	busNames := make([]string, 0, len(buses))
	for n := range buses {
		busNames = append(busNames, n)
	}
	profNames := sortedProfileNames(c.Profiles)
	for i := range c.Devices {
		d := &c.Devices[i]
		path := indexPath("devices", i)
		at := func(k string) pos { return d.at(path, k) }
		switch {
		case d.ID == "":
			ps.add(at("id"), "required")
		case checkDeviceID(d.ID) != "":
			ps.add(at("id"), "%s", checkDeviceID(d.ID))
		case d.ID == c.Gateway.ID:
			ps.add(at("id"), "%q is the gateway's own id", d.ID)
		default:
			if first, dup := ids[d.ID]; dup {
				ps.add(at("id"), "duplicate device id %q (first at line %d)", d.ID, first.line)
			} else {
				ids[d.ID] = at("id")
			}
		}
		b := buses[d.Bus]
		switch {
		case d.Bus == "":
			ps.add(at("bus"), "required")
		case b == nil:
			ps.add(at("bus"), "unknown bus %q%s", d.Bus, knownList("buses", d.Bus, busNames))
		}
		var prof *Profile
		switch {
		case d.Profile == "":
			ps.add(at("profile"), "required")
		case c.Profiles[d.Profile] == nil:
			if !c.reported[d.Profile] { // the loader has already said why the file is missing
				ps.add(at("profile"), "unknown profile %q%s", d.Profile, knownList("profiles", d.Profile, profNames))
			}
		default:
			prof = c.Profiles[d.Profile]
		}
		if prof != nil && b != nil && prof.Plugin != "" && b.Plugin != "" && prof.Plugin != b.Plugin {
			ps.add(at("profile"), "profile %q is for plugin %q but bus %q uses plugin %q", prof.Name, prof.Plugin, b.Name, b.Plugin)
		}
		if d.Poll != 0 && d.Poll < minPoll {
			ps.add(at("poll"), "%s is shorter than the minimum %s", formatDuration(d.Poll), formatDuration(minPoll))
		}
		for _, k := range sortedKeys(d.Tags) {
			if msg := checkTwinKey("tag", k); msg != "" {
				ps.add(d.at(path, joinPath("tags", k)), "%s", msg)
			}
		}
		if b == nil {
			continue
		}
		lo, hi, need, forbid := b.addressRange()
		switch {
		case forbid && d.Address != nil:
			ps.add(at("address"), "a device on %s bus %q takes no address (remove it)", b.Plugin, b.Name)
		case need && d.Address == nil:
			ps.add(at("address"), "required on %s bus %q (unit id %d..%d)", b.Mode, b.Name, lo, hi)
		case d.Address != nil && (*d.Address < lo || *d.Address > hi):
			what := "address"
			if b.Plugin == "modbus" {
				what = "Modbus " + b.Mode + " unit id"
			}
			ps.add(at("address"), "%s %d out of range %d..%d", what, *d.Address, lo, hi)
		case d.Address != nil:
			k := busAddr{b.Name, *d.Address}
			if other, dup := addrs[k]; dup {
				ps.add(at("address"), "address %d on bus %q is already used by device %q (line %d)",
					*d.Address, b.Name, other.ID, other.at("", "address").line)
			} else {
				addrs[k] = d
			}
		}
		if b.Plugin == "serial" {
			if other, dup := perBus[b.Name]; dup {
				ps.add(at("bus"), "serial bus %q already has device %q (line %d); a serial line is point-to-point",
					b.Name, other.ID, other.at("", "bus").line)
			} else {
				perBus[b.Name] = d
			}
		}
	}
}

func knownList(what, name string, known []string) string {
	if hint := didYouMean(name, known); hint != "" {
		return hint
	}
	if len(known) == 0 {
		return " (no " + what + " defined)"
	}
	ks := slices.Clone(known)
	slices.Sort(ks)
	if len(ks) > 8 {
		ks = append(ks[:8], "…")
	}
	return " (known " + what + ": " + strings.Join(ks, ", ") + ")"
}

func (c *Config) validateMaintenance(ps *problems) {
	for i := range c.Maintenance.Windows {
		w := &c.Maintenance.Windows[i]
		path := indexPath("maintenance.windows", i)
		at := func(k string) pos { return w.at(path, k) }
		w.sched, w.loc = nil, nil
		if w.Cron == "" {
			ps.add(at("cron"), `required (e.g. "0 2 * * *" for every night at 02:00)`)
		} else if s, err := ParseCron(w.Cron); err != nil {
			ps.add(at("cron"), "bad cron %q: %v", w.Cron, err)
		} else {
			w.sched = s
		}
		if w.Duration <= 0 {
			ps.add(at("duration"), "required and positive (e.g. 2h)")
		}
		loc, err := time.LoadLocation(w.Timezone)
		if err != nil || w.Timezone == "" {
			ps.add(at("timezone"), "unknown time zone %q (use an IANA name like Europe/Berlin, or UTC, or Local)", w.Timezone)
			w.sched = nil
		} else {
			w.loc = loc
		}
	}
}

func (c *Config) validateOutbox(ps *problems) {
	o := &c.Outbox
	at := func(k string) pos { return o.at("outbox", k) }
	if o.MaxBytes < minOutboxBytes {
		ps.add(at("max_bytes"), "%d bytes is too small (at least %s)", o.MaxBytes, minOutboxBytes)
	}
	if o.TTL <= 0 {
		ps.add(at("ttl"), "must be positive")
	}
	if !slices.Contains(onFulls, o.OnFull) {
		ps.add(at("on_full"), "unknown policy %q (use drop_oldest | reject_new)%s", o.OnFull, didYouMean(o.OnFull, onFulls))
	}
	if !slices.Contains(durabilities, o.Durability) {
		ps.add(at("durability"), "unknown mode %q (use spill | batched | every_message)%s", o.Durability, didYouMean(o.Durability, durabilities))
	}
	if o.SpillAfter <= 0 || o.SpillAfter > maxSpillAfter {
		ps.add(at("spill_after"), "%s is out of range (more than 0, at most %s: it bounds what a power cut loses)", o.SpillAfter, maxSpillAfter)
	}
	if o.BatchEvery <= 0 || o.BatchEvery > maxBatchEvery {
		ps.add(at("batch_every"), "%s is out of range (more than 0, at most %s: producers wait for it)", o.BatchEvery, maxBatchEvery)
	}
	if o.MemoryBytes < minOutboxBytes {
		ps.add(at("memory_bytes"), "%d bytes is too small (at least %s)", o.MemoryBytes, minOutboxBytes)
	} else if o.MemoryBytes > maxMemoryBytes {
		ps.add(at("memory_bytes"), "%d bytes is too large (at most %s: the gateway's memory is small)", o.MemoryBytes, maxMemoryBytes)
	}
}

func (c *Config) validateFirmware(ps *problems) {
	f := &c.Firmware
	at := func(k string) pos { return f.at("firmware", k) }
	seen := map[string]int{}
	for i, k := range f.TrustedKeys {
		pub, err := firmware.ParsePublicKey(k)
		if err != nil {
			ps.add(at(indexPath("trusted_keys", i)), "not a base64 ed25519 public key (want 32 bytes)")
			continue
		}
		id := firmware.KeyID(pub)
		if j, dup := seen[id]; dup {
			ps.add(at(indexPath("trusted_keys", i)), "the same key as trusted_keys[%d] (key id %s)", j, id)
			continue
		}
		seen[id] = i
	}
	if f.CacheMax < minFirmwareCache {
		ps.add(at("cache_max"), "%d bytes is too small (at least %s)", f.CacheMax, minFirmwareCache)
	}
}

func sortedProfileNames(m map[string]*Profile) []string {
	ns := make([]string, 0, len(m))
	for n := range m {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// validate checks the generic part of a profile: names, types, poll,
// deadband, methods (all of a custom method) and the in-use rule.
// Protocol keys are the plugin's.
func (p *Profile) validate(ps *problems) {
	at := func(k string) pos { return p.at("", k) }
	if msg := checkName("profile name", p.Name); msg != "" {
		ps.add(at("name"), "%s", msg)
	}
	if msg := checkName("plugin", p.Plugin); msg != "" {
		ps.add(at("plugin"), "%s", msg)
	}
	names := map[string]*Point{}
	var pointNames []string
	for i := range p.Points {
		pt := &p.Points[i]
		path := indexPath("points", i)
		pat := func(k string) pos { return pt.at(path, k) }
		if msg := checkTwinKey("point name", pt.Name); msg != "" {
			ps.add(pat("name"), "%s", msg)
		} else if first, dup := names[pt.Name]; dup {
			ps.add(pat("name"), "duplicate point name %q (first at line %d)", pt.Name, first.at("", "name").line)
		} else {
			names[pt.Name] = pt
			pointNames = append(pointNames, pt.Name)
		}
		switch {
		case pt.Type == "":
			ps.add(pat("type"), "required (%s)", strings.Join(PointTypes, " | "))
		case !slices.Contains(PointTypes, pt.Type):
			ps.add(pat("type"), "unknown point type %q (use %s)%s", pt.Type, strings.Join(PointTypes, " | "), didYouMean(pt.Type, PointTypes))
		}
		if pt.Poll != 0 && pt.Poll < minPoll {
			ps.add(pat("poll"), "%s is shorter than the minimum %s", formatDuration(pt.Poll), formatDuration(minPoll))
		}
		if pt.Deadband < 0 {
			ps.add(pat("deadband"), "must not be negative")
		} else if pt.Deadband > 0 && (pt.Type == "bool" || pt.Type == "string") {
			ps.add(pat("deadband"), "a deadband needs a numeric point, not %s", pt.Type)
		}
	}
	p.validateMethods(ps, names, pointNames)
	if u := p.InUse; u != nil {
		uat := func(k string) pos { return u.at("in_use", k) }
		pt := names[u.Point]
		switch {
		case u.Point == "":
			ps.add(uat("point"), "required: the point that says the device is in use")
		case pt == nil:
			ps.add(uat("point"), "unknown point %q%s", u.Point, knownList("points", u.Point, pointNames))
		}
		switch {
		case u.Equals == nil:
			ps.add(uat("equals"), "required: the value that means in use")
		case pt != nil && !valueFits(pt.Type, u.Equals):
			ps.add(uat("equals"), "%v does not fit point %q of type %s", u.Equals, pt.Name, pt.Type)
		}
	}
}

// valueFits reports whether a decoded YAML value suits a point type.
func valueFits(typ string, v any) bool {
	switch v.(type) {
	case bool:
		return typ == "bool"
	case string:
		return typ == "string"
	case int64, uint64:
		return typ != "bool" && typ != "string"
	case float64:
		return typ == "float32" || typ == "float64"
	}
	return false
}
