package bridges

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// MinPoll is the shortest poll interval a point may have.
const MinPoll = 10 * time.Millisecond

// DeviceSpec describes one bridged field device. The gateway builds it from
// gateway.yaml and the device profile.
type DeviceSpec struct {
	ID           string               // device id, also its hub identity
	Bus          string               // bus name; devices with the same Bus share one scheduler
	Points       []PointSpec          // what to poll
	DefaultPoll  time.Duration        // for points without Poll; 0 = Options.DefaultPoll
	InUse        *InUseRule           // checked before reboot/factoryReset unless forced; nil = none
	Capabilities []plugins.Capability // from Describe; nil = ask the plugin in Add
	// Methods are the device's custom methods by name: each writes fixed
	// point values (the profile's methods other than reboot and
	// factoryReset).
	Methods map[string]MethodSpec
}

// MethodSpec is a custom method: one plugin Write of fixed values,
// answered like the write method.
type MethodSpec struct {
	Points map[string]any // point -> value (bool, number or string, as decoded from YAML or JSON)
	// Disruptive methods check the in-use rule first, unless forced.
	Disruptive bool
}

// writes returns the method's writes in point-name order; Add validated
// the values.
func (m MethodSpec) writes() []plugins.PointWrite {
	out := make([]plugins.PointWrite, 0, len(m.Points))
	for _, name := range slices.Sorted(maps.Keys(m.Points)) {
		v, _ := valueFromJSON(m.Points[name])
		out = append(out, plugins.PointWrite{Point: name, Value: v})
	}
	return out
}

// builtinMethods are served for every device; a custom method cannot take
// their names.
var builtinMethods = []string{MethodRead, MethodWrite, MethodIdentify, MethodReboot, MethodFactoryReset}

// PointSpec is one point of a device.
type PointSpec struct {
	Name     string
	Poll     time.Duration // 0 = the device default
	Writable bool          // desired.config and the write method may set it
	// Deadband suppresses numeric changes of at most this much against the
	// last published value; 0 publishes any change. Bools and strings are
	// published on any change.
	Deadband float64
}

// InUseRule says when a device is in use: when Point reads Equals (a bool,
// number or string, as decoded from YAML or JSON).
type InUseRule struct {
	Point  string
	Equals any
}

// validate checks a spec; it is called by Add.
func (s *DeviceSpec) validate() error {
	var errs []error
	if s.ID == "" {
		errs = append(errs, errors.New("id is empty"))
	}
	if s.Bus == "" {
		errs = append(errs, errors.New("bus is empty"))
	}
	if s.DefaultPoll < 0 || (s.DefaultPoll > 0 && s.DefaultPoll < MinPoll) {
		errs = append(errs, fmt.Errorf("default poll %v: must be 0 or at least %v", s.DefaultPoll, MinPoll))
	}
	seen := make(map[string]bool, len(s.Points))
	for i, p := range s.Points {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("points[%d]: name is empty", i))
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("points[%d]: duplicate name %q", i, p.Name))
		}
		seen[p.Name] = true
		if p.Poll < 0 || (p.Poll > 0 && p.Poll < MinPoll) {
			errs = append(errs, fmt.Errorf("points[%d] %s: poll %v: must be 0 or at least %v", i, p.Name, p.Poll, MinPoll))
		}
		if p.Deadband < 0 || math.IsNaN(p.Deadband) || math.IsInf(p.Deadband, 0) {
			errs = append(errs, fmt.Errorf("points[%d] %s: deadband %v: must be a finite number >= 0", i, p.Name, p.Deadband))
		}
	}
	errs = append(errs, s.validateMethods(seen)...)
	if r := s.InUse; r != nil {
		if !seen[r.Point] {
			errs = append(errs, fmt.Errorf("in_use: point %q is not a point of the device", r.Point))
		}
		if _, err := valueFromJSON(r.Equals); err != nil {
			errs = append(errs, fmt.Errorf("in_use: equals: %w", err))
		}
	}
	return errors.Join(errs...)
}

// validateMethods checks the custom methods against the points; named
// holds the valid point names.
func (s *DeviceSpec) validateMethods(named map[string]bool) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.Methods)) {
		m := s.Methods[name]
		switch {
		case name == "":
			errs = append(errs, errors.New("methods: a method name is empty"))
		case slices.Contains(builtinMethods, name):
			errs = append(errs, fmt.Errorf("methods: %s is a built-in method", name))
		case len(m.Points) == 0:
			errs = append(errs, fmt.Errorf("methods: %s writes no points", name))
		}
		for _, pt := range slices.Sorted(maps.Keys(m.Points)) {
			if !named[pt] {
				errs = append(errs, fmt.Errorf("methods: %s: point %q is not a point of the device", name, pt))
				continue
			}
			if !s.writable(pt) {
				errs = append(errs, fmt.Errorf("methods: %s: point %q is not writable", name, pt))
			}
			if _, err := valueFromJSON(m.Points[pt]); err != nil {
				errs = append(errs, fmt.Errorf("methods: %s: point %q: %w", name, pt, err))
			}
		}
	}
	return errs
}

func (s *DeviceSpec) writable(point string) bool {
	for _, p := range s.Points {
		if p.Name == point {
			return p.Writable
		}
	}
	return false
}
