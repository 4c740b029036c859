package config

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/drover-iot/drover/plugins"
)

// PluginValidator is what ValidateWithPlugins needs from a plugin: the two
// validation calls of the plugin contract. A plugins.Plugin satisfies it.
type PluginValidator interface {
	ValidateBus(ctx context.Context, bus json.RawMessage) ([]plugins.FieldError, error)
	ValidateProfile(ctx context.Context, profile json.RawMessage) ([]plugins.FieldError, error)
}

// ValidateWithPlugins hands every bus entry and every loaded profile to the
// plugin it names and reports the plugin's field errors at the file and line
// of the key they name, as a *LoadError. A bus or profile whose plugin is not
// in validators is a problem too. A failing call (plugin crashed, ctx ended)
// is returned as a plain error.
func (c *Config) ValidateWithPlugins(ctx context.Context, validators map[string]PluginValidator) error {
	ps := &problems{}
	if err := c.pluginProblems(ctx, validators, ps); err != nil {
		return err
	}
	return ps.err()
}

func (c *Config) pluginProblems(ctx context.Context, validators map[string]PluginValidator, ps *problems) error {
	have := make([]string, 0, len(validators))
	for n := range validators {
		have = append(have, n)
	}
	sort.Strings(have)
	for i := range c.Buses {
		b := &c.Buses[i]
		path := indexPath("buses", i)
		if b.Plugin == "" {
			continue // reported by Validate
		}
		v := validators[b.Plugin]
		if v == nil {
			ps.add(b.at(path, "plugin"), "no plugin %q%s", b.Plugin, knownList("plugins", b.Plugin, have))
			continue
		}
		raw, err := b.JSON()
		if err != nil {
			return fmt.Errorf("encode bus %q: %w", b.Name, err)
		}
		fes, err := v.ValidateBus(ctx, raw)
		if err != nil {
			return fmt.Errorf("validate bus %q with plugin %q: %w", b.Name, b.Plugin, err)
		}
		for _, fe := range fes {
			ps.add(fieldPos(&b.source, path, fe.Path), "%s", fe.Message)
		}
	}
	for _, name := range sortedProfileNames(c.Profiles) {
		p := c.Profiles[name]
		if p.Plugin == "" {
			continue
		}
		v := validators[p.Plugin]
		if v == nil {
			ps.add(p.at("", "plugin"), "no plugin %q%s", p.Plugin, knownList("plugins", p.Plugin, have))
			continue
		}
		raw, err := p.JSON()
		if err != nil {
			return fmt.Errorf("encode profile %q: %w", p.Name, err)
		}
		fes, err := v.ValidateProfile(ctx, raw)
		if err != nil {
			return fmt.Errorf("validate profile %q with plugin %q: %w", p.Name, p.Plugin, err)
		}
		for _, fe := range fes {
			at := fieldPos(&p.source, "", fe.Path)
			if at.file == "" {
				at.file = p.File
			}
			ps.add(at, "%s", fe.Message)
		}
	}
	return nil
}

// fieldPos maps a plugin's key path inside the JSON object it validated to
// the file position of that key (or of its nearest existing parent).
func fieldPos(s *source, fallback, path string) pos {
	path = normalizePath(path)
	if s.src == nil {
		return pos{path: appendPath(fallback, path)}
	}
	if path == "" {
		return s.src.pos
	}
	return s.src.lookup(path)
}

// normalizePath accepts the spellings a plugin may use for a key path —
// "points[3].type", "points.3.type", "/points/3/type" (JSON pointer) — and
// returns the first.
func normalizePath(p string) string {
	p = strings.TrimSpace(p)
	var segs []string
	if strings.HasPrefix(p, "/") {
		for _, seg := range strings.Split(p[1:], "/") {
			segs = append(segs, strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~"))
		}
	} else {
		segs = splitPath(strings.TrimPrefix(strings.TrimPrefix(p, "$"), "."))
	}
	var out string
	for _, seg := range segs {
		if seg == "" {
			continue
		}
		if _, err := strconv.Atoi(seg); err == nil {
			seg = "[" + seg + "]"
		}
		out = joinPath(out, seg)
	}
	return out
}

// JSON returns the bus entry as the JSON object a plugin receives in
// ValidateBus and OpenBus: the keys of gateway.yaml, defaults applied,
// durations as strings ("500ms"), plugin-specific keys as written.
func (b *Bus) JSON() (json.RawMessage, error) {
	return marshalValue(reflect.ValueOf(b).Elem())
}

// JSON returns the profile as the JSON object a plugin receives in
// ValidateProfile and Attach, with the keys of the profile file.
func (p *Profile) JSON() (json.RawMessage, error) {
	return marshalValue(reflect.ValueOf(p).Elem())
}

// DeviceConfig builds what Attach needs for device id.
func (c *Config) DeviceConfig(id string) (plugins.DeviceConfig, error) {
	d := c.Device(id)
	if d == nil {
		return plugins.DeviceConfig{}, fmt.Errorf("device config: unknown device %q", id)
	}
	p := c.Profiles[d.Profile]
	if p == nil {
		return plugins.DeviceConfig{}, fmt.Errorf("device config %q: profile %q not loaded", id, d.Profile)
	}
	prof, err := p.JSON()
	if err != nil {
		return plugins.DeviceConfig{}, fmt.Errorf("device config %q: %w", id, err)
	}
	var opts json.RawMessage
	if len(d.Options) > 0 {
		if opts, err = json.Marshal(d.Options); err != nil {
			return plugins.DeviceConfig{}, fmt.Errorf("device config %q: options: %w", id, err)
		}
	}
	return plugins.DeviceConfig{ID: d.ID, Bus: d.Bus, Address: d.UnitAddress(), Profile: prof, Options: opts}, nil
}

func marshalValue(v reflect.Value) (json.RawMessage, error) {
	e := encode(v)
	if e == nil {
		e = map[string]any{}
	}
	return json.Marshal(e)
}
