package serial

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

// Source is where a point's value comes from.
type Source string

// Point sources.
const (
	SourceStat    Source = "stat"    // a field of a statistics group (SMP group 2)
	SourceSetting Source = "setting" // a setting (SMP group 3): read, and write when writable
	SourceOS      Source = "os"      // OS group information
)

// OS items a point may read.
const (
	OSDateTime   = "datetime"   // the device clock, as it formats it
	OSInfo       = "info"       // OS/application info (format key: the letters to ask for)
	OSBootloader = "bootloader" // the bootloader's name
	OSBufSize    = "buf_size"   // the SMP buffer the device reports (params)
)

var osItems = []string{OSDateTime, OSInfo, OSBootloader, OSBufSize}

// Type is a point's value type; for settings it is also the encoding of
// the stored bytes.
type Type string

// Point types (the gateway's common set).
var types = []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}

// Point is one named value of the device.
type Point struct {
	Name      string
	Source    Source
	Group     string // stat: group name
	Field     string // stat: field name
	Setting   string // setting: its name, "subtree/key"
	OS        string // os: one of osItems
	Format    string // os info: format letters
	Type      Type
	BigEndian bool // setting: multi-byte values stored big-endian (default little, as MCUs store them)
	Writable  bool
	Poll      time.Duration
}

// IdentifySpec fills what SMP cannot tell: literal manufacturer and model,
// and a point holding the serial number.
type IdentifySpec struct {
	Manufacturer string
	Model        string
	SerialPoint  string
}

// Profile is a decoded device profile.
type Profile struct {
	Name     string
	Points   []Point
	Identify IdentifySpec
	Save     bool // settings save after a write (persist)
	Commit   bool // settings commit after a write (apply)
}

// Point returns the point called name.
func (p *Profile) Point(name string) (*Point, bool) {
	for i := range p.Points {
		if p.Points[i].Name == name {
			return &p.Points[i], true
		}
	}
	return nil, false
}

var (
	profileKeys  = []string{"name", "plugin", "description", "points", "methods", "in_use", "identify", "settings", "sim"}
	pointKeys    = []string{"name", "description", "type", "unit", "poll", "writable", "deadband", "stat", "field", "setting", "byte_order", "os", "format"}
	identifyKeys = []string{"manufacturer", "model", "serial_point"}
	settingsKeys = []string{"save", "commit"}
	builtinOps   = []string{"reboot", "factoryReset"}
)

// ParseProfile decodes and validates a profile; it returns the profile
// only when there is no problem.
func ParseProfile(raw json.RawMessage) (*Profile, []plugins.FieldError) {
	var errs []plugins.FieldError
	p := decodeProfile(raw, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// ValidateProfile returns every problem of a profile with its key path
// (e.g. "points[2].stat").
func ValidateProfile(raw json.RawMessage) []plugins.FieldError {
	var errs []plugins.FieldError
	decodeProfile(raw, &errs)
	return errs
}

func decodeProfile(raw json.RawMessage, errs *[]plugins.FieldError) *Profile {
	p := &Profile{}
	f := jsonfields.Open(raw, "", errs)
	f.Skip("description", "sim") // sim: the simulator's block
	f.Str("name", &p.Name)
	var plugin string
	if f.Str("plugin", &plugin) && plugin != pluginName {
		f.Add("plugin", "profile is for plugin %q, not %q", plugin, pluginName)
	}
	if v, ok := f.Raw("points"); ok {
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			f.Add("points", "want a list")
		}
		names := map[string]int{}
		for i, it := range items {
			path := fmt.Sprintf("points[%d]", i)
			pt := decodePoint(it, path, errs)
			if pt.Name != "" {
				if j, dup := names[pt.Name]; dup {
					*errs = append(*errs, plugins.FieldError{Path: path + ".name", Message: fmt.Sprintf("duplicate point name %q (also points[%d])", pt.Name, j)})
				}
				names[pt.Name] = i
			}
			p.Points = append(p.Points, pt)
		}
	}
	if v, ok := f.Raw("methods"); ok {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil {
			f.Add("methods", "want a map of method names")
		}
		for _, name := range builtinOps {
			if mv, ok := m[name]; ok && !jsonfields.IsNull(mv) {
				var body map[string]json.RawMessage
				if json.Unmarshal(mv, &body) != nil || len(body) > 0 {
					f.Add("methods."+name, "the serial plugin's %s is an SMP command: give it as {} (no action to describe)", name)
				}
			}
		}
		// Other names are custom methods: the gateway checks them.
	}
	if v, ok := f.Raw("in_use"); ok {
		u := jsonfields.Open(v, "in_use", errs)
		var pt string
		if u.Str("point", &pt) {
			if _, ok := p.Point(pt); !ok {
				u.Add("point", "no point %q in this profile", pt)
			}
		}
		u.Skip("equals")
		u.Done([]string{"point", "equals"})
	}
	if v, ok := f.Raw("identify"); ok {
		id := jsonfields.Open(v, "identify", errs)
		id.Str("manufacturer", &p.Identify.Manufacturer)
		id.Str("model", &p.Identify.Model)
		if id.Str("serial_point", &p.Identify.SerialPoint) {
			if _, ok := p.Point(p.Identify.SerialPoint); !ok {
				id.Add("serial_point", "no point %q in this profile", p.Identify.SerialPoint)
			}
		}
		id.Done(identifyKeys)
	}
	if v, ok := f.Raw("settings"); ok {
		s := jsonfields.Open(v, "settings", errs)
		s.Bool("save", &p.Save)
		s.Bool("commit", &p.Commit)
		s.Done(settingsKeys)
	}
	f.Done(profileKeys)
	return p
}

func decodePoint(raw json.RawMessage, path string, errs *[]plugins.FieldError) Point {
	pt := Point{}
	f := jsonfields.Open(raw, path, errs)
	f.Skip("description", "unit", "deadband")
	if !f.Str("name", &pt.Name) || pt.Name == "" {
		if f.OK() {
			f.Add("name", "missing")
		}
	}
	var typ string
	hasType := f.OneOf("type", &typ, types...)
	pt.Type = Type(typ)
	f.Duration("poll", &pt.Poll)
	f.Bool("writable", &pt.Writable)
	var sources []string
	for _, k := range []string{"stat", "setting", "os"} {
		if f.Has(k) {
			sources = append(sources, k)
		}
	}
	switch {
	case !f.OK():
		return pt
	case len(sources) == 0:
		f.Add("", "say where the value comes from: stat (with field), setting, or os (%s)", strings.Join(osItems, " | "))
	case len(sources) > 1:
		f.Add(sources[1], "a point has one source; it already has %s", sources[0])
	}
	f.Str("stat", &pt.Group)
	f.Str("field", &pt.Field)
	f.Str("setting", &pt.Setting)
	f.OneOf("os", &pt.OS, osItems...)
	f.Str("format", &pt.Format)
	var order string
	if f.OneOf("byte_order", &order, "little", "big") {
		pt.BigEndian = order == "big"
	}
	if len(sources) != 1 {
		return pt
	}
	pt.Source = Source(sources[0])
	notFor := func(keys ...string) {
		for _, k := range keys {
			if f.Has(k) {
				f.Add(k, "not used by a %s point", pt.Source)
			}
		}
	}
	switch pt.Source {
	case SourceStat:
		notFor("byte_order", "format")
		if pt.Group == "" {
			f.Add("stat", "want the statistics group's name")
		}
		if pt.Field == "" {
			f.Add("field", "missing: the field of statistics group %q to read", pt.Group)
		}
		if !hasType {
			pt.Type = "uint64"
		}
	case SourceSetting:
		notFor("field", "format")
		if pt.Setting == "" {
			f.Add("setting", "want the setting's name, e.g. \"app/interval\"")
		}
		if !hasType && !f.Has("type") {
			f.Add("type", "missing: the setting's stored encoding (%s)", strings.Join(types, ", "))
		}
		if pt.Type == "bool" || pt.Type == "string" {
			notFor("byte_order")
		}
	case SourceOS:
		notFor("field", "byte_order")
		if pt.Format != "" && pt.OS != OSInfo {
			f.Add("format", "only for os: info")
		}
		want := Type("string")
		if pt.OS == OSBufSize {
			want = "uint32"
		}
		if !hasType {
			pt.Type = want
		} else if (want == "string") != (pt.Type == "string") {
			f.Add("type", "os %s is a %s", pt.OS, want)
		}
	}
	if pt.Writable && pt.Source != SourceSetting {
		f.Add("writable", "only setting points can be written (this is a %s point)", pt.Source)
	}
	f.Done(pointKeys)
	return pt
}

func (t Type) isNumeric() bool { return t != "bool" && t != "string" && t != "" }

func (t Type) valid() bool { return slices.Contains(types, string(t)) }
