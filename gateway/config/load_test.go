package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	c, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.File != "testdata/good.yaml" {
		t.Errorf("File = %q", c.File)
	}
	if got := len(c.Profiles); got != 2 {
		t.Errorf("loaded %d profiles, want 2 (pump, mcu)", got)
	}
	if p := c.Profiles["pump"]; p == nil || p.File != "testdata/profiles/pump.yaml" || len(p.Points) != 2 {
		t.Errorf("profile pump = %+v", p)
	}
	if d := c.Device("pump-2"); d == nil || d.Address == nil || *d.Address != 0 {
		t.Errorf("pump-2 address 0 must stay set: %+v", d)
	}
	if d := c.Device("mcu-1"); d == nil || d.Address != nil || d.UnitAddress() != 0 {
		t.Errorf("mcu-1 must have no address: %+v", d)
	}
	if c.Bus("nope") != nil || c.Device("nope") != nil {
		t.Error("lookup of unknown names must return nil")
	}
}

func TestDefaults(t *testing.T) {
	c, ps := loadString(t, `
gateway: { id: gw }
buses:
  - { name: rtu, plugin: modbus, mode: rtu, port: /dev/ttyUSB0 }
  - { name: ascii, plugin: modbus, mode: ascii, port: /dev/ttyUSB1 }
  - { name: tcp, plugin: modbus, mode: tcp, address: "127.0.0.1:502" }
  - { name: uart, plugin: serial, port: /dev/ttyS1 }
  - { name: other, plugin: acme, port: /dev/ttyS2 }
  - { name: zero, plugin: modbus, mode: tcp, address: "127.0.0.1:503", retries: 0 }
maintenance:
  windows: [ { cron: "0 2 * * *", duration: 1h } ]
`, nil)
	if len(ps) > 0 {
		t.Fatalf("problems:\n%s", problemsText(ps))
	}
	one := 1
	zero := 0
	wantBus := map[string]Bus{
		"rtu":   {Baud: 19200, DataBits: 8, Parity: "even", StopBits: 1, Timeout: time.Second, Retries: &one},
		"ascii": {Baud: 19200, DataBits: 7, Parity: "even", StopBits: 1, Timeout: time.Second, Retries: &one},
		"tcp":   {Timeout: time.Second, Retries: &one},
		"uart":  {Baud: 115200, DataBits: 8, Parity: "none", StopBits: 1, Timeout: time.Second, Retries: &one},
		"other": {Baud: 19200, DataBits: 8, Parity: "none", StopBits: 1, Timeout: time.Second, Retries: &one},
		"zero":  {Timeout: time.Second, Retries: &zero},
	}
	for name, w := range wantBus {
		b := c.Bus(name)
		got := []any{b.Baud, b.DataBits, b.Parity, b.StopBits, b.Timeout, *b.Retries}
		want := []any{w.Baud, w.DataBits, w.Parity, w.StopBits, w.Timeout, *w.Retries}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("bus %s: baud, data_bits, parity, stop_bits, timeout, retries = %v, want %v", name, got, want)
		}
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"gateway.data_dir", c.Gateway.DataDir, "/var/lib/drover"},
		{"gateway.local_api", c.Gateway.LocalAPI, "127.0.0.1:7080"},
		{"gateway.log_level", c.Gateway.LogLevel, "info"},
		{"upstream.keepalive", c.Upstream.Keepalive, 60 * time.Second},
		{"upstream.token_ttl", c.Upstream.TokenTTL, time.Hour},
		{"plugins.dir", c.Plugins.Dir, "/usr/lib/drover/plugins"},
		{"plugins.start_timeout", c.Plugins.StartTimeout, 10 * time.Second},
		{"plugins.restart_backoff.min", c.Plugins.RestartBackoff.Min, time.Second},
		{"plugins.restart_backoff.max", c.Plugins.RestartBackoff.Max, time.Minute},
		{"profiles_dir", c.ProfilesDir, "profiles"},
		{"maintenance.windows[0].timezone", c.Maintenance.Windows[0].Timezone, "Local"},
		{"outbox.max_bytes", c.Outbox.MaxBytes, Size(128 << 20)},
		{"outbox.ttl", c.Outbox.TTL, 72 * time.Hour},
		{"outbox.on_full", c.Outbox.OnFull, "drop_oldest"},
		{"outbox.durability", c.Outbox.Durability, "spill"},
		{"outbox.spill_after", c.Outbox.SpillAfter, 2 * time.Second},
		{"outbox.memory_bytes", c.Outbox.MemoryBytes, Size(4 << 20)},
		{"outbox.batch_every", c.Outbox.BatchEvery, 200 * time.Millisecond},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.key, ck.got, ck.want)
		}
	}
}

func TestPluginsDirNextToBinary(t *testing.T) {
	dir := t.TempDir()
	old := executable
	t.Cleanup(func() { executable = old })
	executable = func() (string, error) { return dir + "/drover", nil }
	if got := defaultPluginsDir(); got != DefaultPluginsDir {
		t.Errorf("without plugins next to the binary: %q", got)
	}
	if err := writeFile(dir+"/drover-plugin-modbus", ""); err != nil {
		t.Fatal(err)
	}
	if got := defaultPluginsDir(); got != dir {
		t.Errorf("with a plugin next to the binary: %q, want %q", got, dir)
	}
}

func TestRelativePaths(t *testing.T) {
	fsys := memFiles{"site/gw.yaml": "gateway: { id: gw, data_dir: state }\nupstream: { connection_string_file: gw.connstr }\n"}
	c, ps := load(fsys, "site/gw.yaml")
	if len(ps.list) > 0 {
		t.Fatalf("problems: %v", ps.list)
	}
	if c.Gateway.DataDir != "site/state" || c.Upstream.ConnectionStringFile != "site/gw.connstr" || c.ProfilesDir != "site/profiles" {
		t.Errorf("paths not relative to the file: %q %q %q", c.Gateway.DataDir, c.Upstream.ConnectionStringFile, c.ProfilesDir)
	}
}

// TestProblems runs inline files through the loader: each case names the
// problem (substring) and the line it must be reported on.
func TestProblems(t *testing.T) {
	const head = "gateway: { id: gw }\n" // line 1
	tests := []struct {
		name  string
		yaml  string
		want  string
		line  int
		extra memFiles
	}{
		{"string for int", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, stop_bits: one } ]", `buses[0].stop_bits: want an integer, got "one"`, 2, nil},
		{"quoted int", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, baud: \"9600\" } ]", `want an integer, got "9600"`, 2, nil},
		{"list for mapping", head + "outbox: [1, 2]", "outbox: want a mapping of keys to values, got a list", 2, nil},
		{"mapping for list", head + "devices: { id: x }", "devices: want a list, got a mapping", 2, nil},
		{"mapping for string", head + "profiles_dir: { a: b }", "profiles_dir: want a single value, got a mapping", 2, nil},
		{"yes is not a bool", profileCase, `points[0].writable: want true or false, got "yes"`, 3, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\npoints: [ { name: a, type: int16, writable: yes } ]\n"}},
		{"int overflow", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, baud: 99999999999999999999 } ]", "want an integer", 2, nil},
		{"bare number duration", head + "outbox: { ttl: 60 }", "outbox.ttl: bad duration 60: a duration needs a unit", 2, nil},
		{"negative duration", head + "plugins: { start_timeout: -1s }", "plugins.start_timeout: must be positive", 2, nil},
		{"backoff inverted", head + "plugins:\n  restart_backoff: { min: 1m, max: 1s }", "plugins.restart_backoff.max: 1s is less than min 1m", 3, nil},
		{"unknown key lists valid keys", head + "outbox: { size: 1 }", "outbox.size: unknown key (valid keys: batch_every, durability, max_bytes, memory_bytes, on_full, spill_after, ttl)", 2, nil},
		{"gateway id missing", "gateway: { log_level: info }", "gateway.id: required", 1, nil},
		{"gateway section missing", "buses: []", "gateway.id: required", 1, nil},
		{"gateway id too long", "gateway: { id: " + strings.Repeat("a", 129) + " }", "129 characters long", 1, nil},
		{"device id is gateway id", head + "buses: [ { name: b, plugin: modbus, mode: tcp, address: 'h:1' } ]\ndevices: [ { id: gw, bus: b, address: 1, profile: pump } ]", `devices[0].id: "gw" is the gateway's own id`, 3, nil},
		{"public local api needs token", "gateway: { id: gw, local_api: 0.0.0.0:7080 }", "reachable from the network", 1, nil},
		{"public local api with token", "gateway: { id: gw, local_api: ':7080', local_api_token_file: /etc/t }", "", 0, nil},
		{"unix local api", "gateway: { id: gw, local_api: 'unix:/run/drover.sock' }", "", 0, nil},
		{"bad local api", "gateway: { id: gw, local_api: 'localhost' }", "gateway.local_api: bad address", 1, nil},
		{"upstream needs connstr", head + "upstream: { ca_file: /x }", "upstream.connection_string_file: required", 2, nil},
		{"keepalive cap", head + "upstream: { connection_string_file: /x, keepalive: 30m }", "out of range 5s..19m37s", 2, nil},
		{"token ttl", head + "upstream: { connection_string_file: /x, token_ttl: 10s }", "upstream.token_ttl: 10s is too short", 2, nil},
		{"modbus needs mode", head + "buses: [ { name: b, plugin: modbus, port: /dev/x } ]", "buses[0].mode: required for a modbus bus", 2, nil},
		{"modbus bad mode", head + "buses: [ { name: b, plugin: modbus, mode: rut, port: /dev/x } ]", `unknown mode "rut"`, 2, nil},
		{"rtu needs 8 bits", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, data_bits: 7 } ]", "Modbus RTU needs 8 data bits", 2, nil},
		{"rtu with address", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, address: 'h:1' } ]", "buses[0].address: a rtu bus has no network address", 2, nil},
		{"tcp with baud", head + "buses: [ { name: b, plugin: modbus, mode: tcp, address: 'h:502', baud: 9600 } ]", "buses[0].baud: serial line setting on a tcp bus", 2, nil},
		{"tcp bad port", head + "buses: [ { name: b, plugin: modbus, mode: tcp, address: 'h:99999' } ]", `bad port "99999"`, 2, nil},
		{"odd baud", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, baud: 14400 } ]", "unsupported baud rate 14400", 2, nil},
		{"stop bits", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, stop_bits: 3 } ]", "3 is not 1 or 2", 2, nil},
		{"timeout too long", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, timeout: 1h } ]", "1h out of range", 2, nil},
		{"serial needs port", head + "buses: [ { name: b, plugin: serial } ]", "buses[0].port: required for a serial bus", 2, nil},
		{"bus name charset", head + "buses: [ { name: 'a b', plugin: acme } ]", `bus name "a b" contains ' '`, 2, nil},
		{"plugin missing", head + "buses: [ { name: b } ]", "buses[0].plugin: plugin must not be empty", 2, nil},
		{"bus typo suggests", head + "buses: [ { name: b, plugin: modbus, mode: rtu, prot: /dev/x } ]", `buses[0].prot: unknown key (did you mean "port"?)`, 2, nil},
		{"plugin key passes", head + "buses: [ { name: b, plugin: modbus, mode: rtu, port: /dev/x, inter_frame_delay: 5ms } ]", "", 0, nil},
		{"tcp address needed", head + "buses: [ { name: b, plugin: modbus, mode: tcp, address: 'h:502' } ]\ndevices: [ { id: d, bus: b, profile: pump } ]", "devices[0].address: required on tcp bus", 3, nil},
		{"tcp unit 255", head + "buses: [ { name: b, plugin: modbus, mode: tcp, address: 'h:502' } ]\ndevices: [ { id: d, bus: b, address: 255, profile: pump } ]", "", 0, nil},
		{"tcp unit 256", head + "buses: [ { name: b, plugin: modbus, mode: tcp, address: 'h:502' } ]\ndevices: [ { id: d, bus: b, address: 256, profile: pump } ]", "unit id 256 out of range 0..255", 3, nil},
		{"serial point to point", head + "buses: [ { name: u, plugin: serial, port: /dev/x } ]\ndevices:\n  - { id: a, bus: u, profile: mcu }\n  - { id: b, bus: u, profile: mcu }", `serial bus "u" already has device "a" (line 4)`, 5, nil},
		{"device poll too short", head + "buses: [ { name: u, plugin: serial, port: /dev/x } ]\ndevices: [ { id: a, bus: u, profile: mcu, poll: 1ms } ]", "devices[0].poll: 1ms is shorter than the minimum 10ms", 3, nil},
		{"device fields required", head + "devices: [ { tags: {} } ]", "devices[0].id: required", 2, nil},
		{"profile path traversal", head + "buses: [ { name: u, plugin: serial, port: /dev/x } ]\ndevices: [ { id: a, bus: u, profile: ../../etc/passwd } ]", "profile name \"../../etc/passwd\" must not start with '.'", 3, nil},
		{"missing profile twice", head + "buses: [ { name: u, plugin: acme } ]\ndevices:\n  - { id: a, bus: u, profile: gone }\n  - { id: b, bus: u, profile: gone }", `devices[1].profile: unknown profile "gone" (see above)`, 5, nil},
		{"cron missing", head + "maintenance: { windows: [ { duration: 1h } ] }", "maintenance.windows[0].cron: required", 2, nil},
		{"window duration", head + "maintenance: { windows: [ { cron: '@daily' } ] }", "maintenance.windows[0].duration: required", 2, nil},
		{"outbox size units", head + "outbox: { max_bytes: 1GiB }", "", 0, nil},
		{"outbox too small", head + "outbox: { max_bytes: 100 }", "100 bytes is too small", 2, nil},
		{"trusted key", head + "firmware: { trusted_keys: [ 'bm9wZQ==' ] }", "firmware.trusted_keys[0]: not a base64 ed25519 public key", 2, nil},
		{"merge keys", "defaults: &d { plugin: modbus, mode: rtu }\n" + head + "buses: [ { <<: *d, name: b, port: /dev/x } ]", "defaults: unknown key", 1, nil},
		{"merge key usable", head + "x-bus: &d { plugin: modbus }\n", `x-bus: unknown key`, 2, nil},
		{"two documents", head + "---\ngateway: { id: other }", "more than one YAML document", 2, nil},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", "too large", 0, nil},
		{"scalar document", "just text", "the top level must be a mapping", 1, nil},
		{"profile given as gateway", "name: p\nplugin: modbus\npoints: []", "looks like a device profile", 1, nil},
		{"missing file", "", "", 0, nil},
		// Profile-level (generic) checks, through a device that uses the profile.
		{"point type required", profileCase, "points[0].type: required", 4, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\npoints:\n  - { name: a }\n"}},
		{"deadband on bool", profileCase, "points[0].deadband: a deadband needs a numeric point, not bool", 4, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\npoints:\n  - { name: a, type: bool, deadband: 1 }\n"}},
		{"point name with dollar", profileCase, `point name "$a" contains '$'`, 4, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\npoints:\n  - { name: $a, type: bool }\n"}},
		{"in_use equals type", profileCase, `in_use.equals: 1 does not fit point "a" of type bool`, 5, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\npoints:\n  - { name: a, type: bool }\nin_use: { point: a, equals: 1 }\n"}},
		{"in_use equals missing", profileCase, "in_use.equals: required", 5, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\npoints:\n  - { name: a, type: bool }\nin_use: { point: a }\n"}},
		{"method name", profileCase, `methods["re boot"]: method name "re boot" cannot contain`, 4, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\nmethods:\n  're boot': {}\n"}},
		{"profile key typo", profileCase, `pionts: unknown key (did you mean "points"?)`, 3, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\npionts: []\n"}},
		{"profile is a list", profileCase, "a profile must be a mapping", 1, memFiles{"profiles/p.yaml": "- name: p\n"}},
		{"profile is gateway", profileCase, "this is a gateway file", 1, memFiles{"profiles/p.yaml": "gateway: {id: x}\n"}},
		{"profile yml extension", profileCase, "", 0, memFiles{"profiles/p.yml": "name: p\nplugin: acme\n"}},
		{"profile plugin key passes", profileCase, "", 0, memFiles{"profiles/p.yaml": "name: p\nplugin: acme\nregisters_base: 1\npoints: [ { name: a, type: int16, table: holding } ]\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ps := loadString(t, tt.yaml, tt.extra)
			if tt.name == "missing file" {
				_, lp := load(memFiles{}, "nope.yaml")
				if len(lp.list) != 1 || !strings.Contains(lp.list[0].Message, "cannot read") {
					t.Fatalf("missing file: %v", lp.list)
				}
				return
			}
			if tt.want == "" {
				if len(ps) > 0 {
					t.Fatalf("want no problems, got:\n%s", problemsText(ps))
				}
				if c == nil {
					t.Fatal("no config")
				}
				return
			}
			for _, p := range ps {
				if strings.Contains(p.String(), tt.want) {
					if tt.line != 0 && p.Line != tt.line {
						t.Errorf("%q reported on line %d, want %d", tt.want, p.Line, tt.line)
					}
					return
				}
			}
			t.Errorf("input:\n%s\nno problem contains %q; got:\n%s", tt.yaml, tt.want, problemsText(ps))
		})
	}
}

// profileCase is a gateway file whose one device uses profile "p".
const profileCase = `gateway: { id: gw }
buses: [ { name: b, plugin: acme } ]
devices: [ { id: d, bus: b, profile: p } ]
`

func TestProblemFormat(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "configs/gateway/plant.yaml", Line: 23, Column: 14, Path: "buses[1].timeout", Message: `bad duration "5 s" (use e.g. 500ms, 5s)`},
			`configs/gateway/plant.yaml:23: buses[1].timeout: bad duration "5 s" (use e.g. 500ms, 5s)`},
		{Problem{Path: "desired.config.devices[2].bus", Message: `unknown bus "x"`}, `desired.config.devices[2].bus: unknown bus "x"`},
		{Problem{File: "a.yaml", Message: "cannot read: no such file"}, "a.yaml: cannot read: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	err := &LoadError{Problems: []Problem{tests[0].p, tests[1].p}}
	if got := err.Error(); got != tests[0].want+"\n"+tests[1].want {
		t.Errorf("LoadError.Error() = %q", got)
	}
	var le *LoadError
	if _, lerr := Load("testdata/bad/typo-key.yaml"); !errors.As(lerr, &le) || len(le.Problems) == 0 {
		t.Errorf("Load error is not a *LoadError: %v", lerr)
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		err  bool
	}{
		{"1024", 1024, false}, {"64MiB", 64 << 20, false}, {"1GB", 1e9, false}, {"1.5KiB", 1536, false},
		{"10 MB", 10e6, false}, {"-1", 0, true}, {"lots", 0, true}, {"1e30GiB", 0, true}, {"NaN", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v", tt.in, got, err)
			}
		})
	}
	if s := Size(128 << 20).String(); s != "128MiB" {
		t.Errorf("String = %q", s)
	}
}

func TestPointPoll(t *testing.T) {
	tests := []struct {
		name string
		d    *Device
		p    *Point
		want time.Duration
	}{
		{"point wins", &Device{Poll: 2 * time.Second}, &Point{Poll: time.Second}, time.Second},
		{"device next", &Device{Poll: 2 * time.Second}, &Point{}, 2 * time.Second},
		{"default", &Device{}, &Point{}, DefaultPoll},
		{"nil", nil, nil, DefaultPoll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PointPoll(tt.d, tt.p); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// FuzzLoad feeds garbage YAML to the loader: no panics, and every problem
// names the file.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"gateway: { id: gw }\n",
		profileCase,
		"gateway:\n\tid: x\n",
		"a: &a [*a]\n",
		"<<: 1\n",
		"gateway: { id: gw }\nbuses: [ { <<: [ {plugin: modbus}, 3 ] } ]\n",
		"devices: [ { id: [1], address: -9999999999999999999999 } ]\n",
		"{\"gateway\": {\"id\": 5}}",
		"? [a]\n: b\n",
		"maintenance: { windows: [ { cron: '*/0 * * * *', timezone: '../../etc' } ] }",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		fsys := memFiles{"gw.yaml": text}
		for k, v := range testProfiles {
			fsys[k] = v
		}
		_, ps := load(fsys, "gw.yaml")
		for _, p := range ps.sorted() {
			if p.File != "gw.yaml" && !strings.HasPrefix(p.File, "profiles/") {
				t.Fatalf("problem without the file: %+v", p)
			}
		}
	})
}
