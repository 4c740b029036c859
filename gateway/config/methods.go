package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Method names with a fixed meaning in a profile's methods.
var (
	// PluginMethods are run by the plugin: their action (for Modbus a
	// register write) is the plugin's to define and validate.
	PluginMethods = []string{"reboot", "factoryReset"}
	// BuiltinMethods are served by the gateway for every device and cannot
	// be redefined by a profile.
	BuiltinMethods = []string{"read", "write", "identify", "firmwareUpdate"}
)

// Keys of a custom method.
const (
	methodPointsKey     = "points"
	methodDisruptiveKey = "disruptive"
)

var customMethodKeys = []string{methodPointsKey, methodDisruptiveKey}

// CustomMethod is a profile method the gateway runs itself, protocol
// neutral, as one write of fixed point values: every method of a profile
// but PluginMethods is one.
//
//	methods:
//	  resetCounters: { points: { counter_reset: true }, disruptive: false }
type CustomMethod struct {
	// Points are the values written, by point name: bool, int64, uint64,
	// float64 or string, as decoded from YAML.
	Points map[string]any
	// Disruptive methods wait for a maintenance window and the in-use
	// rule, unless invoked with {"force": true}.
	Disruptive bool
}

// IsCustomMethod reports whether a profile method named name is a custom
// method (run by the gateway) rather than a plugin method.
func IsCustomMethod(name string) bool {
	return !slices.Contains(PluginMethods, name) && !slices.Contains(BuiltinMethods, name)
}

// CustomMethods returns the profile's custom methods by name. A method
// that does not decode is left out: validation reported it.
func (p *Profile) CustomMethods() map[string]CustomMethod {
	out := map[string]CustomMethod{}
	for name, raw := range p.Methods {
		m, ok := raw.(map[string]any)
		if !ok || !IsCustomMethod(name) {
			continue
		}
		pts, ok := m[methodPointsKey].(map[string]any)
		if !ok || len(pts) == 0 {
			continue
		}
		d, _ := m[methodDisruptiveKey].(bool)
		out[name] = CustomMethod{Points: pts, Disruptive: d}
	}
	return out
}

// validateMethods checks the names of all methods and the whole of every
// custom method; the actions of PluginMethods are the plugin's. points
// holds the profile's points by name, pointNames their names in order.
func (p *Profile) validateMethods(ps *problems, points map[string]*Point, pointNames []string) {
	for _, name := range sortedKeys(p.Methods) {
		path := joinPath("methods", name)
		mat := p.at("", path)
		if name == "" || strings.ContainsAny(name, "/+# \t") {
			ps.add(mat, "method name %q cannot contain '/', '+', '#' or spaces (it is part of an MQTT topic)", name)
		}
		m, ok := p.Methods[name].(map[string]any)
		switch {
		case !ok && IsCustomMethod(name):
			ps.add(mat, "want a mapping: points: {point: value, ...}, disruptive: true|false")
		case !ok:
			ps.add(mat, "want a mapping describing the action (its keys are the plugin's)")
		case slices.Contains(BuiltinMethods, name):
			ps.add(mat, "%q is a built-in method of every device and cannot be redefined", name)
		case IsCustomMethod(name):
			p.validateCustomMethod(ps, path, m, points, pointNames)
		}
	}
}

// validateCustomMethod checks one custom method at path (methods.<name>).
func (p *Profile) validateCustomMethod(ps *problems, path string, m map[string]any, points map[string]*Point, pointNames []string) {
	at := func(keys ...string) pos {
		k := path
		for _, s := range keys {
			k = joinPath(k, s)
		}
		return p.at("", k)
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(customMethodKeys, k) {
			ps.add(at(k), "unknown key %q%s: a method other than %s is written by the gateway (keys: %s)",
				k, didYouMean(k, customMethodKeys), strings.Join(PluginMethods, " and "), strings.Join(customMethodKeys, ", "))
		}
	}
	if v, ok := m[methodDisruptiveKey]; ok {
		if _, isBool := v.(bool); !isBool {
			ps.add(at(methodDisruptiveKey), "want true or false")
		}
	}
	raw, ok := m[methodPointsKey]
	if !ok {
		ps.add(at(), "required: points: {point: value, ...}, the values the method writes")
		return
	}
	pts, ok := raw.(map[string]any)
	if !ok {
		ps.add(at(methodPointsKey), "want a mapping of point name to value")
		return
	}
	if len(pts) == 0 {
		ps.add(at(methodPointsKey), "no points: the method would write nothing")
	}
	for _, name := range sortedKeys(pts) {
		pat := at(methodPointsKey, name)
		pt := points[name]
		v := pts[name]
		switch {
		case pt == nil:
			ps.add(pat, "unknown point %q%s", name, knownList("points", name, pointNames))
		case !pt.Writable:
			ps.add(pat, "point %q is not writable (add writable: true to it)", name)
		case v == nil:
			ps.add(pat, "want a value for point %q of type %s", name, pt.Type)
		case !valueFits(pt.Type, v):
			ps.add(pat, "%s does not fit point %q of type %s", describeValue(v), name, pt.Type)
		}
	}
}

// describeValue renders a decoded YAML value for a message: strings
// quoted, so "1" and 1 read differently.
func describeValue(v any) string {
	switch t := v.(type) {
	case string:
		return strconv.Quote(t)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprint(v)
}
