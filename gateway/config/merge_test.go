package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T) *Config {
	t.Helper()
	c, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name    string
		overlay string
		check   func(t *testing.T, c *Config)
		wantErr string // substring of the listing; empty: must succeed
	}{
		{name: "empty object", overlay: `{}`, check: func(t *testing.T, c *Config) {
			if len(c.Devices) != 3 || len(c.Buses) != 3 {
				t.Errorf("changed: %d devices, %d buses", len(c.Devices), len(c.Buses))
			}
		}},
		{name: "null overlay", overlay: `null`, check: func(t *testing.T, c *Config) {}},
		{name: "scalar replaces", overlay: `{"gateway":{"log_level":"debug"},"outbox":{"ttl":"1h"}}`, check: func(t *testing.T, c *Config) {
			if c.Gateway.LogLevel != "debug" || c.Outbox.TTL != time.Hour || c.Gateway.ID != "gw-test" {
				t.Errorf("gateway = %+v, outbox.ttl = %s", c.Gateway, c.Outbox.TTL)
			}
		}},
		{name: "device merged by id", overlay: `{"devices":[{"id":"pump-1","poll":"2s","tags":{"line":"B"}}]}`, check: func(t *testing.T, c *Config) {
			d := c.Device("pump-1")
			if d.Poll != 2*time.Second || d.Bus != "line1" || *d.Address != 3 || d.Tags["line"] != "B" {
				t.Errorf("pump-1 = %+v", d)
			}
			if c.Devices[0].ID != "pump-1" {
				t.Errorf("order changed: %s first", c.Devices[0].ID)
			}
		}},
		{name: "device added", overlay: `{"devices":[{"id":"pump-3","bus":"line1","address":9,"profile":"pump"}]}`, check: func(t *testing.T, c *Config) {
			if d := c.Device("pump-3"); d == nil || len(c.Devices) != 4 {
				t.Errorf("pump-3 not appended: %d devices", len(c.Devices))
			}
		}},
		{name: "device deleted", overlay: `{"devices":[{"id":"pump-2","$delete":true}]}`, check: func(t *testing.T, c *Config) {
			if c.Device("pump-2") != nil || len(c.Devices) != 2 {
				t.Errorf("pump-2 not deleted")
			}
		}},
		{name: "bus merged by name", overlay: `{"buses":[{"name":"line1","timeout":"250ms","baud":9600}]}`, check: func(t *testing.T, c *Config) {
			b := c.Bus("line1")
			if b.Timeout != 250*time.Millisecond || b.Baud != 9600 || b.Port != "/dev/ttyUSB0" {
				t.Errorf("line1 = %+v", b)
			}
		}},
		{name: "null resets to default", overlay: `{"devices":[{"id":"pump-1","address":null}]}`, wantErr: `testdata/good.yaml:17: devices[0].address: required on rtu bus "line1"`},
		{name: "windows replaced", overlay: `{"maintenance":{"windows":[{"cron":"0 3 * * *","duration":"1h","timezone":"UTC"}]}}`, check: func(t *testing.T, c *Config) {
			if len(c.Maintenance.Windows) != 1 || c.Maintenance.Windows[0].Schedule() == nil {
				t.Errorf("windows = %+v", c.Maintenance.Windows)
			}
		}},
		{name: "unknown bus in overlay", overlay: `{"devices":[{"id":"a","bus":"line1","address":4,"profile":"pump"},{"id":"b","bus":"line1","address":5,"profile":"pump"},{"id":"c","bus":"nope","profile":"pump"}]}`,
			wantErr: `desired.config.devices[2].bus: unknown bus "nope"`},
		{name: "unknown key in overlay", overlay: `{"outbox":{"on_ful":"reject_new"}}`, wantErr: `desired.config.outbox.on_ful: unknown key (did you mean "on_full"?)`},
		{name: "bad duration in overlay", overlay: `{"buses":[{"name":"lan","timeout":"5 s"}]}`, wantErr: `desired.config.buses[0].timeout: bad duration "5 s"`},
		{name: "local only", overlay: `{"gateway":{"id":"other"},"upstream":{"address":"evil:8883"}}`, wantErr: "desired.config.gateway.id: cannot be set remotely"},
		{name: "delete unknown", overlay: `{"devices":[{"id":"ghost","$delete":true}]}`, wantErr: `desired.config.devices[0].id: no entry with id "ghost" to delete`},
		{name: "entry without id", overlay: `{"devices":[{"bus":"line1"}]}`, wantErr: "desired.config.devices[0].id: required: entries are merged by id"},
		{name: "not an object", overlay: `[1,2]`, wantErr: "desired.config: want a JSON object"},
		{name: "bad json", overlay: `{"gateway":`, wantErr: "desired.config: invalid JSON"},
		{name: "duplicate json key", overlay: `{"outbox":{},"outbox":{}}`, wantErr: "duplicate key desired.config.outbox"},
		{name: "base error kept with file line", overlay: `{"buses":[{"name":"line1","$delete":true}]}`, wantErr: `testdata/good.yaml:18: devices[0].bus: unknown bus "line1"`},
		{name: "new profile from disk", overlay: `{"devices":[{"id":"mcu-1","$delete":true},{"id":"mcu-2","bus":"uart","profile":"mcu"}]}`, check: func(t *testing.T, c *Config) {
			if c.Profiles["mcu"] == nil || c.Device("mcu-2") == nil {
				t.Error("mcu-2 missing")
			}
		}},
		{name: "missing profile in overlay", overlay: `{"devices":[{"id":"pump-1","profile":"nope"}]}`, wantErr: `desired.config.devices[0].profile: unknown profile "nope"`},
		{name: "firmware cache set remotely", overlay: `{"firmware":{"cache_max":"64MiB"}}`, check: func(t *testing.T, c *Config) {
			if c.Firmware.CacheMax != 64<<20 {
				t.Errorf("cache_max = %d", c.Firmware.CacheMax)
			}
		}},
		{name: "firmware cache too small remotely", overlay: `{"firmware":{"cache_max":1024}}`, wantErr: "desired.config.firmware.cache_max: 1024 bytes is too small (at least 1MiB)"},
		{name: "trusted keys are local only", overlay: `{"firmware":{"trusted_keys":["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]}}`, wantErr: "desired.config.firmware.trusted_keys: cannot be set remotely"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := mustLoad(t)
			before := Hash(base)
			c, err := Merge(base, json.RawMessage(tt.overlay))
			if Hash(base) != before {
				t.Fatal("Merge modified base")
			}
			if tt.wantErr != "" {
				var le *LoadError
				if !errors.As(err, &le) {
					t.Fatalf("Merge(%s) = %v, want a *LoadError", tt.overlay, err)
				}
				if !strings.Contains(le.Error(), tt.wantErr) {
					t.Fatalf("Merge(%s):\n%s\nwant %q", tt.overlay, le.Error(), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Merge(%s): %v", tt.overlay, err)
			}
			tt.check(t, c)
		})
	}
}

func TestMergeCodeBuiltBase(t *testing.T) {
	base := &Config{Gateway: Gateway{ID: "gw"}}
	applyDefaults(base)
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := Merge(base, json.RawMessage(`{"gateway":{"log_level":"warn"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.LogLevel != "warn" || c.Gateway.ID != "gw" {
		t.Errorf("gateway = %+v", c.Gateway)
	}
}

func TestHash(t *testing.T) {
	a, b := mustLoad(t), mustLoad(t)
	if Hash(a) != Hash(b) {
		t.Fatal("same file, different hash")
	}
	if len(Hash(a)) != 64 {
		t.Errorf("hash %q is not hex sha256", Hash(a))
	}
	// Writing a default explicitly, or reordering keys, keeps the hash.
	same, err := Merge(a, json.RawMessage(`{"outbox":{"on_full":"drop_oldest","ttl":"72h"},"gateway":{"log_level":"info"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if Hash(same) != Hash(a) {
		t.Error("explicit defaults changed the hash")
	}
	changed, err := Merge(a, json.RawMessage(`{"outbox":{"ttl":"71h"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if Hash(changed) == Hash(a) {
		t.Error("a change kept the hash")
	}
	// A profile change changes the hash.
	p := *a.Profiles["pump"]
	p.Points = append([]Point(nil), p.Points...)
	p.Points[0].Unit = "degF"
	a.Profiles["pump"] = &p
	if Hash(a) == Hash(b) {
		t.Error("a profile change kept the hash")
	}
}

func TestDiff(t *testing.T) {
	base := mustLoad(t)
	eff, err := Merge(base, json.RawMessage(`{
		"gateway": {"log_level": "debug"},
		"buses": [{"name": "line1", "timeout": "250ms"}],
		"devices": [{"id": "pump-2", "$delete": true}, {"id": "pump-9", "bus": "line1", "address": 9, "profile": "pump"}]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got := Diff(base, eff)
	want := []Change{
		{Path: `buses["line1"].timeout`, From: "1s", To: "250ms"},
		{Path: `devices["pump-2"]`, From: map[string]any{"id": "pump-2", "bus": "lan", "address": int64(0), "profile": "pump"}},
		{Path: `devices["pump-9"]`, To: map[string]any{"id": "pump-9", "bus": "line1", "address": int64(9), "profile": "pump"}},
		{Path: "gateway.log_level", From: "info", To: "debug"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff =\n%#v\nwant\n%#v", got, want)
	}
	if d := Diff(base, base); len(d) != 0 {
		t.Errorf("Diff(base, base) = %v", d)
	}
}

// FuzzMerge feeds garbage overlays: no panics, and problems never claim a
// file for overlay paths.
func FuzzMerge(f *testing.F) {
	for _, s := range []string{`{}`, `null`, `{"devices":[{"id":"pump-1","$delete":true}]}`, `{"buses":[{"name":"x"}]}`,
		`{"devices":[{"id":1}]}`, `{"devices":{"id":"x"}}`, `{"outbox":null}`, `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]`} {
		f.Add(s)
	}
	base, err := Load("testdata/good.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, overlay string) {
		_, err := Merge(base, json.RawMessage(overlay))
		var le *LoadError
		if errors.As(err, &le) {
			for _, p := range le.Problems {
				if strings.HasPrefix(p.Path, OverlayPath) && p.File != "" {
					t.Fatalf("overlay problem with a file: %+v", p)
				}
			}
		}
	})
}
