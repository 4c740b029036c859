package serial

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/drover-iot/drover/plugins"
)

// errValue marks a value that does not fit its point.
var errValue = errors.New("bad value")

// width is the stored size of a fixed-width type (0 for string).
func (t Type) width() int {
	switch t {
	case "bool":
		return 1
	case "int16", "uint16":
		return 2
	case "int32", "uint32", "float32":
		return 4
	case "int64", "uint64", "float64":
		return 8
	}
	return 0
}

func (p *Point) order() binary.ByteOrder {
	if p.BigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// decodeSetting turns a setting's stored bytes into a value of the point's
// type: fixed-width little-endian (or big-endian) numbers, one byte for a
// bool, the bytes as text for a string.
func decodeSetting(p *Point, b []byte) (plugins.Value, error) {
	if p.Type == "string" {
		return plugins.Value{Kind: plugins.KindString, String: string(trimNUL(b))}, nil
	}
	if w := p.Type.width(); len(b) != w {
		return plugins.Value{}, fmt.Errorf("setting %s holds %d bytes, a %s takes %d: %w", p.Setting, len(b), p.Type, w, errValue)
	}
	o := p.order()
	switch p.Type {
	case "bool":
		return plugins.Value{Kind: plugins.KindBool, Bool: b[0] != 0}, nil
	case "int16":
		return intValue(int64(int16(o.Uint16(b)))), nil
	case "uint16":
		return uintValue(uint64(o.Uint16(b))), nil
	case "int32":
		return intValue(int64(int32(o.Uint32(b)))), nil
	case "uint32":
		return uintValue(uint64(o.Uint32(b))), nil
	case "int64":
		return intValue(int64(o.Uint64(b))), nil
	case "uint64":
		return uintValue(o.Uint64(b)), nil
	case "float32":
		return plugins.Value{Kind: plugins.KindFloat, Float: float64(math.Float32frombits(o.Uint32(b)))}, nil
	case "float64":
		return plugins.Value{Kind: plugins.KindFloat, Float: math.Float64frombits(o.Uint64(b))}, nil
	}
	return plugins.Value{}, fmt.Errorf("type %q: %w", p.Type, errValue)
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// encodeSetting is decodeSetting's inverse; it refuses values out of the
// type's range and fractions for integer types.
func encodeSetting(p *Point, v plugins.Value) ([]byte, error) {
	if p.Type == "string" {
		if v.Kind != plugins.KindString {
			return nil, fmt.Errorf("point %s is a string: %w", p.Name, errValue)
		}
		return []byte(v.String), nil
	}
	o := p.order()
	b := make([]byte, p.Type.width())
	switch p.Type {
	case "bool":
		if v.Kind != plugins.KindBool {
			return nil, fmt.Errorf("point %s is a bool: %w", p.Name, errValue)
		}
		if v.Bool {
			b[0] = 1
		}
		return b, nil
	case "float32", "float64":
		f, ok := asFloat(v)
		if !ok {
			return nil, fmt.Errorf("point %s is a number: %w", p.Name, errValue)
		}
		if p.Type == "float32" {
			if math.Abs(f) > math.MaxFloat32 {
				return nil, fmt.Errorf("%v out of float32 range: %w", f, errValue)
			}
			o.PutUint32(b, math.Float32bits(float32(f)))
		} else {
			o.PutUint64(b, math.Float64bits(f))
		}
		return b, nil
	}
	lo, hi, signed := intRange(p.Type)
	if signed {
		i, err := asInt(v, lo, hi)
		if err != nil {
			return nil, fmt.Errorf("point %s (%s): %w", p.Name, p.Type, err)
		}
		putUint(o, b, uint64(i))
	} else {
		u, err := asUint(v, uint64(hi))
		if err != nil {
			return nil, fmt.Errorf("point %s (%s): %w", p.Name, p.Type, err)
		}
		putUint(o, b, u)
	}
	return b, nil
}

func putUint(o binary.ByteOrder, b []byte, u uint64) {
	switch len(b) {
	case 2:
		o.PutUint16(b, uint16(u))
	case 4:
		o.PutUint32(b, uint32(u))
	case 8:
		o.PutUint64(b, u)
	}
}

// intRange returns the range of an integer type (hi as int64 saturates for uint64).
func intRange(t Type) (lo, hi int64, signed bool) {
	switch t {
	case "int16":
		return math.MinInt16, math.MaxInt16, true
	case "int32":
		return math.MinInt32, math.MaxInt32, true
	case "int64":
		return math.MinInt64, math.MaxInt64, true
	case "uint16":
		return 0, math.MaxUint16, false
	case "uint32":
		return 0, math.MaxUint32, false
	}
	return 0, -1, false // uint64: hi as uint64 is the max
}

func asFloat(v plugins.Value) (float64, bool) {
	switch v.Kind {
	case plugins.KindInt:
		return float64(v.Int), true
	case plugins.KindUint:
		return float64(v.Uint), true
	case plugins.KindFloat:
		return v.Float, true
	}
	return 0, false
}

func asInt(v plugins.Value, lo, hi int64) (int64, error) {
	var i int64
	switch v.Kind {
	case plugins.KindInt:
		i = v.Int
	case plugins.KindUint:
		if v.Uint > math.MaxInt64 {
			return 0, fmt.Errorf("%d out of range: %w", v.Uint, errValue)
		}
		i = int64(v.Uint)
	case plugins.KindFloat:
		if v.Float != math.Trunc(v.Float) || v.Float < math.MinInt64 || v.Float >= math.MaxInt64 {
			return 0, fmt.Errorf("%v is not an integer: %w", v.Float, errValue)
		}
		i = int64(v.Float)
	default:
		return 0, fmt.Errorf("want a number: %w", errValue)
	}
	if i < lo || i > hi {
		return 0, fmt.Errorf("%d out of range %d..%d: %w", i, lo, hi, errValue)
	}
	return i, nil
}

func asUint(v plugins.Value, hi uint64) (uint64, error) {
	var u uint64
	switch v.Kind {
	case plugins.KindInt:
		if v.Int < 0 {
			return 0, fmt.Errorf("%d is negative: %w", v.Int, errValue)
		}
		u = uint64(v.Int)
	case plugins.KindUint:
		u = v.Uint
	case plugins.KindFloat:
		if v.Float != math.Trunc(v.Float) || v.Float < 0 || v.Float >= math.MaxUint64 {
			return 0, fmt.Errorf("%v is not an unsigned integer: %w", v.Float, errValue)
		}
		u = uint64(v.Float)
	default:
		return 0, fmt.Errorf("want a number: %w", errValue)
	}
	if u > hi {
		return 0, fmt.Errorf("%d out of range 0..%d: %w", u, hi, errValue)
	}
	return u, nil
}

func intValue(i int64) plugins.Value   { return plugins.Value{Kind: plugins.KindInt, Int: i} }
func uintValue(u uint64) plugins.Value { return plugins.Value{Kind: plugins.KindUint, Uint: u} }

// statValue converts a statistics counter to the point's type.
func statValue(p *Point, u uint64) (plugins.Value, error) {
	switch p.Type {
	case "bool":
		return plugins.Value{Kind: plugins.KindBool, Bool: u != 0}, nil
	case "string":
		return plugins.Value{Kind: plugins.KindString, String: strconv.FormatUint(u, 10)}, nil
	case "float32", "float64":
		return plugins.Value{Kind: plugins.KindFloat, Float: float64(u)}, nil
	}
	lo, hi, signed := intRange(p.Type)
	_ = lo
	if signed {
		if u > uint64(hi) {
			return plugins.Value{}, fmt.Errorf("stat %s/%s = %d overflows %s: %w", p.Group, p.Field, u, p.Type, errValue)
		}
		return intValue(int64(u)), nil
	}
	if hi >= 0 && u > uint64(hi) {
		return plugins.Value{}, fmt.Errorf("stat %s/%s = %d overflows %s: %w", p.Group, p.Field, u, p.Type, errValue)
	}
	return uintValue(u), nil
}
