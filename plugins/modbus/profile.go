package modbus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/internal/jsonfields"
)

// Table is one of the four Modbus data tables.
type Table string

// The Modbus data tables, spelled as in device profiles.
const (
	TableCoil     Table = "coil"     // read/write bits, FC 1/5/15
	TableDiscrete Table = "discrete" // read-only bits, FC 2
	TableInput    Table = "input"    // read-only registers, FC 4
	TableHolding  Table = "holding"  // read/write registers, FC 3/6/16
)

var tables = []Table{TableCoil, TableDiscrete, TableInput, TableHolding}

// IsBit reports whether the table holds single bits rather than registers.
func (t Table) IsBit() bool { return t == TableCoil || t == TableDiscrete }

// Writable reports whether the master may write the table.
func (t Table) Writable() bool { return t == TableCoil || t == TableHolding }

func (t Table) order() int { return slices.Index(tables, t) }

// Type is the value type of a point.
type Type string

// Point value types.
const (
	TypeBool    Type = "bool"
	TypeInt16   Type = "int16"
	TypeUint16  Type = "uint16"
	TypeInt32   Type = "int32"
	TypeUint32  Type = "uint32"
	TypeInt64   Type = "int64"
	TypeUint64  Type = "uint64"
	TypeFloat32 Type = "float32"
	TypeFloat64 Type = "float64"
	TypeString  Type = "string"
)

var types = []Type{TypeBool, TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64,
	TypeFloat32, TypeFloat64, TypeString}

// Registers is the number of registers a value of type t occupies (strings:
// 0, their length is per point).
func (t Type) Registers() int {
	switch t {
	case TypeBool, TypeInt16, TypeUint16:
		return 1
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	}
	return 0
}

// ByteOrder is how a multi-byte value is laid out in registers, naming the
// bytes of the big-endian value A (most significant) to D: ABCD is big-endian
// registers in big-endian order; CDAB swaps the registers (low register
// first); BADC swaps the bytes in each register; DCBA does both. For 64-bit
// values the register order is reversed as a whole.
type ByteOrder string

// Byte orders.
const (
	OrderABCD ByteOrder = "ABCD"
	OrderDCBA ByteOrder = "DCBA"
	OrderBADC ByteOrder = "BADC"
	OrderCDAB ByteOrder = "CDAB"
)

var byteOrders = []ByteOrder{OrderABCD, OrderDCBA, OrderBADC, OrderCDAB}

// Spec limits (Modbus Application Protocol V1.1b3, 6.1-6.4, 6.11, 6.12).
const (
	MaxReadRegisters  = 125  // FC 3/4
	MaxReadBits       = 2000 // FC 1/2
	MaxWriteRegisters = 123  // FC 16
	MaxWriteBits      = 1968 // FC 15
	maxAddress        = 65535
	// DefaultMaxFill is how many unused registers a block read may span.
	DefaultMaxFill = 50
)

// Point is one named value of a device.
type Point struct {
	Name        string
	Description string
	Table       Table
	Address     int // zero-based, 0..65535
	Type        Type
	Bit         int // bit 0..15 of a register for a bool in input/holding; -1 otherwise
	Length      int // registers, for strings
	ByteOrder   ByteOrder
	Scale       float64 // reading: raw*Scale+Offset; default 1
	Offset      float64
	Unit        string
	Poll        time.Duration
	Writable    bool
	Deadband    float64
	Verify      bool // read back after a write
}

// Span returns the first address and the number of registers (or bits) the
// point occupies in its table.
func (p *Point) Span() (start, count int) {
	if p.Table.IsBit() || p.Bit >= 0 {
		return p.Address, 1
	}
	if p.Type == TypeString {
		return p.Address, p.Length
	}
	return p.Address, p.Type.Registers()
}

// scaled reports whether the point converts raw values with scale/offset.
func (p *Point) scaled() bool { return p.Scale != 1 || p.Offset != 0 }

// Range is an inclusive address range of one table.
type Range struct {
	Table    Table
	From, To int
}

// Quirks are per-device workarounds that constrain request planning.
type Quirks struct {
	MaxRegistersPerRead  int           // ≤ 125; default 125
	MaxBitsPerRead       int           // ≤ 2000; default 2000
	MaxFill              int           // unused registers a block may span; default 50, 0 = contiguous only
	OneRequestPerPoint   bool          // never coalesce
	DelayBetweenRequests time.Duration // pause between transactions to this device
	Forbidden            []Range       // never read or write these addresses
	NoFC43               bool          // device does not support Read Device Identification
}

// DefaultQuirks returns the quirks of a well-behaved device.
func DefaultQuirks() Quirks {
	return Quirks{MaxRegistersPerRead: MaxReadRegisters, MaxBitsPerRead: MaxReadBits, MaxFill: DefaultMaxFill}
}

// forbids reports whether [start, end) of table t touches a forbidden range.
func (q *Quirks) forbids(t Table, start, end int) bool {
	for _, r := range q.Forbidden {
		if r.Table == t && start <= r.To && r.From < end {
			return true
		}
	}
	return false
}

// MethodWrite is the register or coil write that triggers a management
// method (reboot, factory reset).
type MethodWrite struct {
	Table   Table
	Address int
	Value   uint16 // coil: 0 or 1
}

// InUse is the profile's "in use" rule: disruptive methods are refused while
// Point reads Equals, unless forced.
type InUse struct {
	Point  string
	Equals plugins.Value
}

// IdentifySpec says how Identify learns the device's identity. FC 43/14 is
// tried unless disabled; points named here take precedence; literals fill
// whatever is still empty.
type IdentifySpec struct {
	FC43              bool
	Manufacturer      string
	Model             string
	ManufacturerPoint string
	ModelPoint        string
	SerialPoint       string
	FirmwarePoint     string
}

// Profile is a decoded device profile.
type Profile struct {
	Name        string
	Plugin      string
	Description string
	Points      []Point
	Methods     map[string]MethodWrite // "reboot", "factoryReset"
	InUse       *InUse
	Identify    IdentifySpec
	Quirks      Quirks
	Firmware    *FirmwareSpec // nil: the device cannot be flashed
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

// Method names a profile may define.
const (
	MethodReboot       = "reboot"
	MethodFactoryReset = "factoryReset"
)

var (
	profileKeys  = []string{"name", "plugin", "description", "points", "methods", "in_use", "identify", "quirks", "firmware"}
	pointKeys    = []string{"name", "description", "table", "address", "type", "bit", "length", "byte_order", "scale", "offset", "unit", "poll", "writable", "deadband", "verify"}
	methodNames  = []string{MethodReboot, MethodFactoryReset}
	methodKeys   = []string{"write"}
	writeKeys    = []string{"table", "address", "value"}
	inUseKeys    = []string{"point", "equals"}
	identifyKeys = []string{"fc43", "manufacturer", "model", "manufacturer_point", "model_point", "serial_point", "firmware_point"}
	quirkKeys    = []string{"max_registers_per_read", "max_bits_per_read", "max_fill", "one_request_per_point", "delay_between_requests", "forbidden", "no_fc43"}
	rangeKeys    = []string{"table", "from", "to"}
)

// simKey is the simulator's block (internal/modbussim reads device profiles
// extended with it); the driver tolerates and ignores it.
const simKey = "sim"

// ParseProfile decodes, defaults and validates a device profile. It returns
// the profile only when there are no field errors.
func ParseProfile(raw json.RawMessage) (*Profile, []plugins.FieldError) {
	var errs []plugins.FieldError
	p := decodeProfile(raw, &errs)
	if len(errs) == 0 {
		validateProfile(p, &errs)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// ValidateProfile returns every problem of a device profile, each with its
// key path (e.g. "points[3].type"); nil means valid.
func ValidateProfile(raw json.RawMessage) []plugins.FieldError {
	var errs []plugins.FieldError
	p := decodeProfile(raw, &errs)
	validateProfile(p, &errs)
	return errs
}

func decodeProfile(raw json.RawMessage, errs *[]plugins.FieldError) *Profile {
	p := &Profile{Methods: map[string]MethodWrite{}, Quirks: DefaultQuirks()}
	o := jsonfields.Open(raw, "", errs)
	o.Skip(simKey)
	o.Str("name", &p.Name)
	o.Str("plugin", &p.Plugin)
	o.Str("description", &p.Description)
	if items, ok := o.List("points"); ok {
		for i, it := range items {
			p.Points = append(p.Points, decodePoint(it, fmt.Sprintf("points[%d]", i), errs))
		}
	}
	if v, ok := o.Raw("methods"); ok {
		decodeMethods(v, p, errs)
	}
	if v, ok := o.Raw("in_use"); ok {
		u := jsonfields.Open(v, "in_use", errs)
		p.InUse = &InUse{}
		u.Str("point", &p.InUse.Point)
		if ev, ok := u.Raw("equals"); ok {
			val, err := scalarValue(ev)
			if err != nil {
				u.AddAt("in_use.equals", "%v", err)
			}
			p.InUse.Equals = val
		}
		u.Done(inUseKeys)
	}
	p.Identify.FC43 = true
	if v, ok := o.Raw("identify"); ok {
		id := jsonfields.Open(v, "identify", errs)
		id.Bool("fc43", &p.Identify.FC43)
		id.Str("manufacturer", &p.Identify.Manufacturer)
		id.Str("model", &p.Identify.Model)
		id.Str("manufacturer_point", &p.Identify.ManufacturerPoint)
		id.Str("model_point", &p.Identify.ModelPoint)
		id.Str("serial_point", &p.Identify.SerialPoint)
		id.Str("firmware_point", &p.Identify.FirmwarePoint)
		id.Done(identifyKeys)
	}
	if v, ok := o.Raw("quirks"); ok {
		DecodeQuirks(v, "quirks", &p.Quirks, errs)
	}
	if v, ok := o.Raw("firmware"); ok {
		p.Firmware = decodeFirmware(v, errs)
	}
	o.Done(profileKeys)
	return p
}

// DecodeQuirks decodes a quirks object at path over q: keys present replace
// q's values, so per-device overrides can be layered on a profile's quirks.
func DecodeQuirks(raw json.RawMessage, path string, q *Quirks, errs *[]plugins.FieldError) {
	o := jsonfields.Open(raw, path, errs)
	o.Int("max_registers_per_read", &q.MaxRegistersPerRead)
	o.Int("max_bits_per_read", &q.MaxBitsPerRead)
	o.Int("max_fill", &q.MaxFill)
	o.Bool("one_request_per_point", &q.OneRequestPerPoint)
	o.Duration("delay_between_requests", &q.DelayBetweenRequests)
	o.Bool("no_fc43", &q.NoFC43)
	if items, ok := o.List("forbidden"); ok {
		q.Forbidden = nil
		for i, it := range items {
			rp := fmt.Sprintf("%s.forbidden[%d]", path, i)
			ro := jsonfields.Open(it, rp, errs)
			var r Range
			var t string
			if ro.Str("table", &t) {
				r.Table = Table(t)
			} else if ro.OK() {
				ro.AddAt(rp+".table", "missing (want one of %s)", oneOf(tables))
			}
			if !ro.Int("from", &r.From) && ro.OK() {
				ro.AddAt(rp+".from", "missing")
			}
			r.To = r.From
			ro.Int("to", &r.To)
			ro.Done(rangeKeys)
			q.Forbidden = append(q.Forbidden, r)
		}
	}
	o.Done(quirkKeys)
	validateQuirks(q, path, errs)
}

func decodePoint(raw json.RawMessage, path string, errs *[]plugins.FieldError) Point {
	pt := Point{Bit: -1, Scale: 1, ByteOrder: OrderABCD}
	o := jsonfields.Open(raw, path, errs)
	o.Skip(simKey)
	var s string
	o.Str("name", &pt.Name)
	o.Str("description", &pt.Description)
	if o.Str("table", &s) {
		pt.Table = Table(s)
	}
	pt.Address = -1
	o.Int("address", &pt.Address)
	if o.Str("type", &s) {
		pt.Type = Type(s)
	}
	if o.Int("bit", &pt.Bit) && pt.Bit < 0 {
		o.AddAt(path+".bit", "%d out of range 0..15", pt.Bit)
		pt.Bit = -1
	}
	o.Int("length", &pt.Length)
	if o.Str("byte_order", &s) {
		pt.ByteOrder = ByteOrder(s)
	}
	if o.Number("scale", &pt.Scale) && pt.Scale == 0 {
		o.AddAt(path+".scale", "must not be 0")
	}
	o.Number("offset", &pt.Offset)
	o.Str("unit", &pt.Unit)
	o.Duration("poll", &pt.Poll)
	o.Bool("writable", &pt.Writable)
	if o.Number("deadband", &pt.Deadband) && pt.Deadband < 0 {
		o.AddAt(path+".deadband", "must not be negative")
	}
	o.Bool("verify", &pt.Verify)
	o.Done(pointKeys)
	return pt
}

// decodeMethods decodes reboot and factoryReset, the methods the plugin
// runs. Every other method is the gateway's (a custom method it runs as a
// write of points, validated by the gateway), so the plugin ignores it.
func decodeMethods(raw json.RawMessage, p *Profile, errs *[]plugins.FieldError) {
	o := jsonfields.Open(raw, "methods", errs)
	for _, name := range o.Keys() {
		if !slices.Contains(methodNames, name) {
			o.Skip(name)
		}
	}
	for _, name := range methodNames {
		v, ok := o.Raw(name)
		if !ok {
			continue
		}
		path := "methods." + name
		mo := jsonfields.Open(v, path, errs)
		wv, ok := mo.Raw("write")
		if !ok && mo.OK() {
			mo.AddAt(path+".write", "missing")
		}
		mo.Done(methodKeys)
		if !ok {
			continue
		}
		wp := path + ".write"
		wo := jsonfields.Open(wv, wp, errs)
		var w MethodWrite
		var s string
		if wo.Str("table", &s) {
			w.Table = Table(s)
			if !w.Table.Writable() {
				wo.AddAt(wp+".table", "unknown or read-only table %q (want coil or holding)", s)
			}
		} else if wo.OK() {
			wo.AddAt(wp+".table", "missing (want coil or holding)")
		}
		w.Address = -1
		if !wo.Int("address", &w.Address) && wo.OK() {
			wo.AddAt(wp+".address", "missing")
		} else if w.Address < 0 || w.Address > maxAddress {
			wo.AddAt(wp+".address", "%d out of range 0..65535", w.Address)
		}
		if vv, ok := wo.Raw("value"); ok {
			val, err := methodValue(vv, w.Table)
			if err != nil {
				wo.AddAt(wp+".value", "%v", err)
			}
			w.Value = val
		} else if wo.OK() {
			wo.AddAt(wp+".value", "missing")
		}
		wo.Done(writeKeys)
		p.Methods[name] = w
	}
	o.Done(methodNames)
}

// methodValue decodes a method's write value: a register value (-32768..65535)
// for holding, true/false or 0/1 for a coil.
func methodValue(raw json.RawMessage, t Table) (uint16, error) {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		if t == TableHolding {
			return 0, fmt.Errorf("want a register value for table holding, got %v", b)
		}
		if b {
			return 1, nil
		}
		return 0, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil || n != math.Trunc(n) {
		return 0, fmt.Errorf("want an integer, got %s", jsonfields.Short(raw))
	}
	if t == TableCoil {
		if n != 0 && n != 1 {
			return 0, fmt.Errorf("coil value %v out of range (want 0, 1, true or false)", n)
		}
		return uint16(n), nil
	}
	if n < math.MinInt16 || n > math.MaxUint16 {
		return 0, fmt.Errorf("register value %v out of range -32768..65535", n)
	}
	return uint16(int32(n)), nil
}

// scalarValue decodes a JSON scalar into a plugins.Value.
func scalarValue(raw json.RawMessage) (plugins.Value, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return plugins.Value{}, fmt.Errorf("want a scalar")
	}
	switch x := v.(type) {
	case bool:
		return plugins.Value{Kind: plugins.KindBool, Bool: x}, nil
	case string:
		return plugins.Value{Kind: plugins.KindString, String: x}, nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return plugins.Value{Kind: plugins.KindInt, Int: i}, nil
		}
		f, err := x.Float64()
		if err != nil {
			return plugins.Value{}, fmt.Errorf("bad number %s", x)
		}
		return plugins.Value{Kind: plugins.KindFloat, Float: f}, nil
	}
	return plugins.Value{}, fmt.Errorf("want a boolean, number or string, got %s", jsonfields.Short(raw))
}

func validateQuirks(q *Quirks, path string, errs *[]plugins.FieldError) {
	add := func(k, f string, a ...any) {
		*errs = append(*errs, plugins.FieldError{Path: jsonfields.Join(path, k), Message: fmt.Sprintf(f, a...)})
	}
	if q.MaxRegistersPerRead < 1 || q.MaxRegistersPerRead > MaxReadRegisters {
		add("max_registers_per_read", "%d out of range 1..%d", q.MaxRegistersPerRead, MaxReadRegisters)
	}
	if q.MaxBitsPerRead < 1 || q.MaxBitsPerRead > MaxReadBits {
		add("max_bits_per_read", "%d out of range 1..%d", q.MaxBitsPerRead, MaxReadBits)
	}
	if q.MaxFill < 0 || q.MaxFill > MaxReadRegisters {
		add("max_fill", "%d out of range 0..%d", q.MaxFill, MaxReadRegisters)
	}
	for i, r := range q.Forbidden {
		rp := fmt.Sprintf("forbidden[%d]", i)
		if r.Table != "" && !slices.Contains(tables, r.Table) {
			add(rp+".table", "unknown table %q (want one of %s)", r.Table, oneOf(tables))
		}
		if r.From < 0 || r.From > maxAddress {
			add(rp+".from", "%d out of range 0..65535", r.From)
		}
		if r.To < r.From || r.To > maxAddress {
			add(rp+".to", "%d out of range %d..65535", r.To, max(r.From, 0))
		}
	}
}

func validateProfile(p *Profile, errs *[]plugins.FieldError) {
	add := func(path, f string, a ...any) {
		*errs = append(*errs, plugins.FieldError{Path: path, Message: fmt.Sprintf(f, a...)})
	}
	if p.Name == "" {
		add("name", "missing")
	}
	if p.Plugin != "" && p.Plugin != pluginName {
		add("plugin", "profile is for plugin %q, not %q", p.Plugin, pluginName)
	}
	seen := map[string]int{}
	for i := range p.Points {
		pt := &p.Points[i]
		path := fmt.Sprintf("points[%d]", i)
		validatePoint(pt, path, &p.Quirks, add)
		if pt.Name != "" {
			if j, dup := seen[pt.Name]; dup {
				add(path+".name", "duplicate point name %q (also points[%d])", pt.Name, j)
			} else {
				seen[pt.Name] = i
			}
		}
	}
	for _, name := range methodNames {
		w, ok := p.Methods[name]
		if ok && w.Table.Writable() && p.Quirks.forbids(w.Table, w.Address, w.Address+1) {
			add("methods."+name+".write.address", "%s %d is in a forbidden range", w.Table, w.Address)
		}
	}
	if p.InUse != nil {
		if p.InUse.Point == "" {
			add("in_use.point", "missing")
		} else if pt, ok := p.Point(p.InUse.Point); !ok {
			add("in_use.point", "no point named %q", p.InUse.Point)
		} else if !canEqual(pt, p.InUse.Equals) {
			add("in_use.equals", "cannot compare a %s point with %s", pt.Type, kindName(p.InUse.Equals.Kind))
		}
		if p.InUse.Equals.Kind == plugins.KindNone {
			add("in_use.equals", "missing")
		}
	}
	for _, ref := range []struct{ key, name string }{
		{"manufacturer_point", p.Identify.ManufacturerPoint}, {"model_point", p.Identify.ModelPoint},
		{"serial_point", p.Identify.SerialPoint}, {"firmware_point", p.Identify.FirmwarePoint},
	} {
		if ref.name != "" {
			if _, ok := p.Point(ref.name); !ok {
				add("identify."+ref.key, "no point named %q", ref.name)
			}
		}
	}
	if p.Firmware != nil {
		validateFirmware(p, add)
	}
}

func validatePoint(pt *Point, path string, q *Quirks, add func(string, string, ...any)) {
	if pt.Name == "" {
		add(path+".name", "missing")
	}
	tableOK := slices.Contains(tables, pt.Table)
	switch {
	case pt.Table == "":
		add(path+".table", "missing (want one of %s)", oneOf(tables))
	case !tableOK:
		add(path+".table", "unknown table %q (want one of %s)", pt.Table, oneOf(tables))
	}
	typeOK := slices.Contains(types, pt.Type)
	switch {
	case pt.Type == "" && tableOK && pt.Table.IsBit():
		pt.Type = TypeBool // bits are bools; the type may be omitted
		typeOK = true
	case pt.Type == "":
		add(path+".type", "missing (want one of %s)", oneOf(types))
	case !typeOK:
		add(path+".type", "unknown type %q (want one of %s)", pt.Type, oneOf(types))
	}
	if !slices.Contains(byteOrders, pt.ByteOrder) {
		add(path+".byte_order", "unknown byte order %q (want one of %s)", pt.ByteOrder, oneOf(byteOrders))
	}
	if pt.Address < 0 || pt.Address > maxAddress {
		if pt.Address == -1 {
			add(path+".address", "missing")
		} else {
			add(path+".address", "%d out of range 0..65535", pt.Address)
		}
		return
	}
	if !tableOK || !typeOK {
		return
	}
	if pt.Bit != -1 {
		switch {
		case pt.Table.IsBit():
			add(path+".bit", "only for bool points in input or holding registers")
		case pt.Type != TypeBool:
			add(path+".bit", "only for type bool")
		case pt.Bit < 0 || pt.Bit > 15:
			add(path+".bit", "%d out of range 0..15", pt.Bit)
		}
	}
	if pt.Table.IsBit() && pt.Type != TypeBool {
		add(path+".type", "%s table holds bits: type must be bool, not %s", pt.Table, pt.Type)
		return
	}
	if !pt.Table.IsBit() && pt.Type == TypeBool && pt.Bit == -1 {
		add(path+".bit", "missing: a bool in %s registers needs bit (0..15)", pt.Table)
	}
	if pt.Type == TypeString {
		if pt.Length < 1 || pt.Length > MaxReadRegisters {
			add(path+".length", "a string needs length 1..%d (registers), got %d", MaxReadRegisters, pt.Length)
			return
		}
	} else if pt.Length != 0 {
		add(path+".length", "only for type string")
	}
	if (pt.Type == TypeBool || pt.Type == TypeString) && pt.scaled() {
		add(path+".scale", "scale and offset only apply to numeric types")
	}
	if pt.Writable && !pt.Table.Writable() {
		add(path+".writable", "%s table is read-only (only coil and holding are writable)", pt.Table)
	}
	if pt.Verify && !pt.Writable {
		add(path+".verify", "read-back verification needs writable: true")
	}
	start, n := pt.Span()
	if start+n-1 > maxAddress {
		add(path+".address", "%s at %d needs %d registers and would run past 65535", pt.Type, start, n)
		return
	}
	limit := q.MaxRegistersPerRead
	if pt.Table.IsBit() {
		limit = q.MaxBitsPerRead
	}
	if limit > 0 && n > limit {
		add(path+".type", "%s needs %d registers but the device reads at most %d per request", pt.Type, n, limit)
	}
	if q.forbids(pt.Table, start, start+n) {
		add(path+".address", "%s %d..%d overlaps a forbidden range", pt.Table, start, start+n-1)
	}
}

// canEqual reports whether a point of pt's type can equal v.
func canEqual(pt *Point, v plugins.Value) bool {
	switch v.Kind {
	case plugins.KindBool:
		return pt.Type == TypeBool
	case plugins.KindString:
		return pt.Type == TypeString
	case plugins.KindInt, plugins.KindUint, plugins.KindFloat:
		return pt.Type != TypeBool && pt.Type != TypeString
	}
	return true // missing; reported separately
}

func kindName(k plugins.ValueKind) string {
	switch k {
	case plugins.KindBool:
		return "a boolean"
	case plugins.KindInt, plugins.KindUint, plugins.KindFloat:
		return "a number"
	case plugins.KindString:
		return "a string"
	}
	return "nothing"
}
