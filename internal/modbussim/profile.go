package modbussim

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Table is a Modbus data table.
type Table string

// The four Modbus data tables, spelled as in device profiles.
const (
	Coil     Table = "coil"
	Discrete Table = "discrete"
	Input    Table = "input"
	Holding  Table = "holding"
)

// isBit reports whether the table holds single bits.
func (t Table) isBit() bool { return t == Coil || t == Discrete }

// Value types of a point, as in device profiles.
const (
	TypeBool    = "bool"
	TypeInt16   = "int16"
	TypeUint16  = "uint16"
	TypeInt32   = "int32"
	TypeUint32  = "uint32"
	TypeInt64   = "int64"
	TypeUint64  = "uint64"
	TypeFloat32 = "float32"
	TypeFloat64 = "float64"
	TypeString  = "string"
)

// Simulation kinds of a point's sim block.
const (
	KindConstant   = "constant"
	KindSine       = "sine"
	KindCounter    = "counter"
	KindRandomWalk = "random_walk"
)

// Defaults applied by the profile decoder.
const (
	DefaultRebootSilence = 3 * time.Second
	defaultSinePeriod    = time.Minute
	defaultStepPeriod    = time.Second
)

// Profile is a simulator profile: a device profile plus sim blocks.
type Profile struct {
	File     string        // path it was loaded from, for messages
	Name     string        // profile name
	Points   []Point       // in file order
	Methods  Methods       // management registers
	Firmware *FirmwareSpec // nil: the unit cannot be flashed
	Sim      SimConfig
}

// Point is one named value of the device.
type Point struct {
	Name      string
	Table     Table
	Address   uint16
	Type      string   // one of the Type* constants
	ByteOrder string   // ABCD (default), DCBA, BADC or CDAB
	Scale     float64  // engineering = raw × Scale + Offset; default 1
	Offset    float64  // see Scale
	Bit       int      // 0–15: a bool stored in one bit of a register; -1 otherwise
	Length    int      // registers, for strings
	Sim       Behavior // how the value moves
	Line      int      // line in the profile file
}

// Registers returns how many registers (or bits) the point occupies.
func (p *Point) Registers() int {
	if p.Table.isBit() {
		return 1
	}
	switch p.Type {
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	case TypeString:
		return p.Length
	}
	return 1
}

// Behavior is a point's sim block: how its value moves with time.
//
//   - constant: Value.
//   - sine: between Min and Max, one cycle per Period (default 1m), starting
//     at the midpoint and rising at the sim's start.
//   - counter: Value + Step (default 1) per Period (default 1s) since the
//     unit booted; wraps to Min when it passes Max (if Max > Min).
//   - random_walk: starts at Value, moves by a uniform step in [-Step, Step]
//     (default 1) each Period (default 1s), clamped to [Min, Max] if Max > Min.
type Behavior struct {
	Kind   string
	Value  float64
	Text   string // value of a string point
	Min    float64
	Max    float64
	Period time.Duration
	Step   float64
}

// Methods holds the management registers of the profile.
type Methods struct {
	Reboot       *MethodWrite // nil when the profile has none
	FactoryReset *MethodWrite
}

// MethodWrite is a register write that triggers a management action.
type MethodWrite struct {
	Table   Table // holding or coil
	Address uint16
	Value   uint16 // for a coil, 1 = on
}

// SimConfig is the top-level sim block.
type SimConfig struct {
	RebootSilence time.Duration // how long a rebooting unit stays silent
	Identity      Identity      // FC 43/14 objects
	Firmware      FirmwareSim   // behaviour of a flash (with a firmware section)
}

// Identity holds the Read Device Identification objects.
type Identity struct {
	Vendor      string // 0x00 VendorName
	Product     string // 0x01 ProductCode
	Revision    string // 0x02 MajorMinorRevision
	URL         string // 0x03 VendorUrl
	ProductName string // 0x04 ProductName
	Model       string // 0x05 ModelName
	Application string // 0x06 UserApplicationName
}

// ProfileError is a problem in a profile file, located by line and key.
type ProfileError struct {
	File string
	Line int
	Key  string // key path, e.g. points[2].sim.kind
	Msg  string
}

// Error implements error as "file:line: key: message".
func (e *ProfileError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

// ErrProfile is wrapped by every profile decoding error.
var ErrProfile = errors.New("invalid simulator profile")

// Is makes errors.Is(err, ErrProfile) true for a *ProfileError.
func (e *ProfileError) Is(target error) bool { return target == ErrProfile }

// LoadProfile reads and decodes the simulator profile at path.
func LoadProfile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read simulator profile: %w", err)
	}
	return ParseProfile(path, b)
}

// ParseProfile decodes a simulator profile. file names the source in errors.
// Keys the simulator does not need (poll, unit, deadband, writable, verify,
// quirks, in_use, …) are tolerated; unknown keys inside any sim block are
// errors.
func ParseProfile(file string, data []byte) (*Profile, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ProfileError{File: file, Line: yamlErrLine(err), Key: "(document)", Msg: err.Error()}
	}
	d := &decoder{file: file}
	p := &Profile{File: file, Sim: SimConfig{RebootSilence: DefaultRebootSilence,
		Firmware: FirmwareSim{BootTime: DefaultFirmwareBoot}}}
	if len(doc.Content) == 0 {
		return nil, d.errf(&doc, "(document)", "empty profile")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, d.errf(root, "(document)", "want a mapping at the top level")
	}
	var pointsNode *yaml.Node
	for _, kv := range pairs(root) {
		k, v := kv[0].Value, kv[1]
		switch k {
		case "name":
			p.Name = d.str(v, k)
		case "points":
			pointsNode = v
			d.points(p, v)
		case "methods":
			d.methods(p, v)
		case "firmware":
			d.firmware(p, v)
		case "sim":
			d.simConfig(p, v)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if pointsNode == nil || len(p.Points) == 0 {
		return nil, d.errf(root, "points", "profile has no points")
	}
	if err := d.overlaps(p); err != nil {
		return nil, err
	}
	if err := d.firmwareChecks(p, root); err != nil {
		return nil, err
	}
	return p, nil
}

// yamlErrLine digs the line out of a yaml.v3 syntax error ("yaml: line N: …").
func yamlErrLine(err error) int {
	var n int
	if _, e := fmt.Sscanf(err.Error(), "yaml: line %d:", &n); e == nil {
		return n
	}
	return 0
}

// decoder walks yaml nodes and keeps the first error.
type decoder struct {
	file string
	err  error
}

func (d *decoder) errf(n *yaml.Node, key, format string, args ...any) error {
	e := &ProfileError{File: d.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)}
	if d.err == nil {
		d.err = e
	}
	return e
}

// pairs returns the key/value node pairs of a mapping.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
	}
	return out
}

func (d *decoder) mapping(n *yaml.Node, key string) bool {
	if n.Kind != yaml.MappingNode {
		d.errf(n, key, "want a mapping")
		return false
	}
	return true
}

func (d *decoder) str(n *yaml.Node, key string) string {
	if n.Kind != yaml.ScalarNode {
		d.errf(n, key, "want a string")
		return ""
	}
	return n.Value
}

func (d *decoder) float(n *yaml.Node, key string) float64 {
	var f float64
	if n.Kind != yaml.ScalarNode || n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.errf(n, key, "want a number, got %q", n.Value)
	}
	return f
}

func (d *decoder) uint16v(n *yaml.Node, key string) uint16 {
	var i int64
	if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil {
		if n.Kind == yaml.ScalarNode && (n.Value == "true" || n.Value == "false") {
			if n.Value == "true" {
				return 1
			}
			return 0
		}
		d.errf(n, key, "want an integer, got %q", n.Value)
		return 0
	}
	if i < 0 || i > math.MaxUint16 {
		d.errf(n, key, "%d is out of range 0..65535", i)
		return 0
	}
	return uint16(i)
}

func (d *decoder) duration(n *yaml.Node, key string) time.Duration {
	dur, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || dur < 0 {
		d.errf(n, key, "want a non-negative duration like 500ms or 3s, got %q", n.Value)
	}
	return dur
}

func (d *decoder) table(n *yaml.Node, key string) Table {
	t := Table(d.str(n, key))
	switch t {
	case Coil, Discrete, Input, Holding:
		return t
	}
	d.errf(n, key, "table %q: want coil, discrete, input or holding", n.Value)
	return t
}

func (d *decoder) points(p *Profile, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		d.errf(n, "points", "want a list")
		return
	}
	names := map[string]int{}
	for i, pn := range n.Content {
		key := fmt.Sprintf("points[%d]", i)
		if !d.mapping(pn, key) {
			return
		}
		pt := Point{Line: pn.Line, Scale: 1, ByteOrder: "ABCD", Bit: -1}
		var simNode *yaml.Node
		seen := map[string]bool{}
		for _, kv := range pairs(pn) {
			k, v := kv[0].Value, kv[1]
			kk := key + "." + k
			seen[k] = true
			switch k {
			case "name":
				pt.Name = d.str(v, kk)
			case "table":
				pt.Table = d.table(v, kk)
			case "address":
				pt.Address = d.uint16v(v, kk)
			case "type":
				pt.Type = d.str(v, kk)
			case "byte_order":
				pt.ByteOrder = strings.ToUpper(d.str(v, kk))
				switch pt.ByteOrder {
				case "ABCD", "DCBA", "BADC", "CDAB":
				default:
					d.errf(v, kk, "byte_order %q: want ABCD, DCBA, BADC or CDAB", v.Value)
				}
			case "scale":
				pt.Scale = d.float(v, kk)
				if pt.Scale == 0 {
					d.errf(v, kk, "scale must not be 0")
				}
			case "offset":
				pt.Offset = d.float(v, kk)
			case "bit":
				pt.Bit = int(d.uint16v(v, kk))
				if pt.Bit > 15 {
					d.errf(v, kk, "bit %d out of range 0..15", pt.Bit)
				}
			case "length":
				pt.Length = int(d.uint16v(v, kk))
			case "sim":
				simNode = v
			}
		}
		for _, req := range []string{"name", "table", "address", "type"} {
			if !seen[req] {
				d.errf(pn, key+"."+req, "missing")
			}
		}
		if d.err != nil {
			return
		}
		if j, dup := names[pt.Name]; dup {
			d.errf(pn, key+".name", "point %q already defined by points[%d]", pt.Name, j)
			return
		}
		names[pt.Name] = i
		switch pt.Type {
		case TypeBool, TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64, TypeFloat32, TypeFloat64:
		case TypeString:
			if pt.Length < 1 || pt.Length > 125 {
				d.errf(pn, key+".length", "a string point needs length 1..125 (registers)")
			}
		default:
			d.errf(pn, key+".type", "type %q: want bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string", pt.Type)
		}
		if pt.Table.isBit() && pt.Type != TypeBool {
			d.errf(pn, key+".type", "a %s point must be bool", pt.Table)
		}
		if pt.Bit >= 0 && (pt.Table.isBit() || pt.Type != TypeBool) {
			d.errf(pn, key+".bit", "bit is only for bool points in input or holding registers")
		}
		if int(pt.Address)+pt.Registers() > 65536 {
			d.errf(pn, key+".address", "point runs past address 65535")
		}
		pt.Sim = d.behavior(pt, simNode, key+".sim")
		if d.err != nil {
			return
		}
		p.Points = append(p.Points, pt)
	}
}

// behavior decodes a point's sim block strictly and applies its defaults.
func (d *decoder) behavior(pt Point, n *yaml.Node, key string) Behavior {
	b := Behavior{Kind: KindConstant}
	if pt.Name == "uptime" {
		b.Kind = KindCounter
	}
	if n != nil {
		if !d.mapping(n, key) {
			return b
		}
		for _, kv := range pairs(n) {
			k, v := kv[0].Value, kv[1]
			kk := key + "." + k
			switch k {
			case "kind":
				b.Kind = d.str(v, kk)
				switch b.Kind {
				case KindConstant, KindSine, KindCounter, KindRandomWalk:
				default:
					d.errf(v, kk, "kind %q: want constant, sine, counter or random_walk", b.Kind)
				}
			case "value":
				if pt.Type == TypeString {
					b.Text = d.str(v, kk)
				} else if pt.Type == TypeBool && (v.Value == "true" || v.Value == "false") {
					if v.Value == "true" {
						b.Value = 1
					}
				} else {
					b.Value = d.float(v, kk)
				}
			case "min":
				b.Min = d.float(v, kk)
			case "max":
				b.Max = d.float(v, kk)
			case "period":
				b.Period = d.duration(v, kk)
			case "step":
				b.Step = d.float(v, kk)
			default:
				d.errf(kv[0], kk, "unknown key in sim block (want kind, value, min, max, period, step)")
			}
		}
		if b.Min > b.Max {
			d.errf(n, key, "min %v is greater than max %v", b.Min, b.Max)
		}
		if pt.Type == TypeString && b.Kind != KindConstant {
			d.errf(n, key+".kind", "a string point can only be constant")
		}
	}
	switch b.Kind {
	case KindSine:
		if b.Period == 0 {
			b.Period = defaultSinePeriod
		}
	case KindCounter, KindRandomWalk:
		if b.Period == 0 {
			b.Period = defaultStepPeriod
		}
		if b.Step == 0 {
			b.Step = 1
		}
	}
	return b
}

func (d *decoder) methods(p *Profile, n *yaml.Node) {
	if !d.mapping(n, "methods") {
		return
	}
	for _, kv := range pairs(n) {
		name, v := kv[0].Value, kv[1]
		var dst **MethodWrite
		switch name {
		case "reboot":
			dst = &p.Methods.Reboot
		case "factoryReset":
			dst = &p.Methods.FactoryReset
		default:
			continue // other methods are the gateway's business
		}
		key := "methods." + name
		if !d.mapping(v, key) {
			return
		}
		for _, mkv := range pairs(v) {
			if mkv[0].Value != "write" {
				continue
			}
			wkey := key + ".write"
			w := mkv[1]
			if !d.mapping(w, wkey) {
				return
			}
			mw := &MethodWrite{Table: Holding, Value: 1}
			for _, wkv := range pairs(w) {
				k, wv := wkv[0].Value, wkv[1]
				switch k {
				case "table":
					mw.Table = d.table(wv, wkey+".table")
					if mw.Table != Holding && mw.Table != Coil {
						d.errf(wv, wkey+".table", "a method writes a holding register or a coil")
					}
				case "address":
					mw.Address = d.uint16v(wv, wkey+".address")
				case "value":
					mw.Value = d.uint16v(wv, wkey+".value")
				}
			}
			*dst = mw
		}
	}
}

func (d *decoder) simConfig(p *Profile, n *yaml.Node) {
	if !d.mapping(n, "sim") {
		return
	}
	for _, kv := range pairs(n) {
		k, v := kv[0].Value, kv[1]
		switch k {
		case "reboot_silence":
			p.Sim.RebootSilence = d.duration(v, "sim.reboot_silence")
		case "identity":
			if !d.mapping(v, "sim.identity") {
				return
			}
			id := &p.Sim.Identity
			for _, ikv := range pairs(v) {
				ik := "sim.identity." + ikv[0].Value
				fields := map[string]*string{
					"vendor": &id.Vendor, "product": &id.Product, "revision": &id.Revision,
					"url": &id.URL, "product_name": &id.ProductName, "model": &id.Model,
					"application": &id.Application,
				}
				f, ok := fields[ikv[0].Value]
				if !ok {
					d.errf(ikv[0], ik, "unknown key (want vendor, product, revision, url, product_name, model, application)")
					continue
				}
				*f = d.str(ikv[1], ik)
			}
		case "firmware":
			d.firmwareSim(p, v)
		default:
			d.errf(kv[0], "sim."+k, "unknown key in sim block (want reboot_silence, identity, firmware)")
		}
	}
}

// overlaps rejects two points sharing a register (or bit) of the same table;
// bool points may share a register when their bits differ.
func (d *decoder) overlaps(p *Profile) error {
	for i := range p.Points {
		a := &p.Points[i]
		for j := range i {
			b := &p.Points[j]
			if a.Table != b.Table {
				continue
			}
			if a.Bit >= 0 && b.Bit >= 0 && a.Bit != b.Bit {
				continue // different bits of one register
			}
			if int(a.Address) < int(b.Address)+b.Registers() && int(b.Address) < int(a.Address)+a.Registers() {
				return &ProfileError{File: d.file, Line: a.Line, Key: fmt.Sprintf("points[%d].address", i),
					Msg: fmt.Sprintf("point %q overlaps point %q (line %d) in table %s", a.Name, b.Name, b.Line, a.Table)}
			}
		}
	}
	return nil
}

// DeviceProfileYAML returns the simulator profile data with every sim block
// removed: the device profile the gateway loads for the same device (its
// validator rejects the sim keys). Comments and order are kept.
func DeviceProfileYAML(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("strip sim blocks: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("strip sim blocks: want a mapping at the top level")
	}
	root := doc.Content[0]
	dropKey(root, "sim")
	for _, kv := range pairs(root) {
		if kv[0].Value == "points" && kv[1].Kind == yaml.SequenceNode {
			for _, pt := range kv[1].Content {
				if pt.Kind == yaml.MappingNode {
					dropKey(pt, "sim")
				}
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("strip sim blocks: %w", err)
	}
	return out, nil
}

func dropKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			i -= 2
		}
	}
}
