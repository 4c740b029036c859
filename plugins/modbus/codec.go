package modbus

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/drover-iot/drover/plugins"
)

// Registers are handled as bytes in wire order: two bytes per register, high
// byte first (Modbus Application Protocol V1.1b3, 4.2).

// toWire reorders value bytes between big-endian (ABCD…) and order. Every
// order is its own inverse, so the same function serves both directions.
func toWire(b []byte, order ByteOrder) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	if order == OrderCDAB || order == OrderDCBA { // low register first
		n := len(out) / 2
		for i := 0; i < n/2; i++ {
			j := n - 1 - i
			out[2*i], out[2*j] = out[2*j], out[2*i]
			out[2*i+1], out[2*j+1] = out[2*j+1], out[2*i+1]
		}
	}
	if order == OrderBADC || order == OrderDCBA { // bytes swapped in each register
		for i := 0; i+1 < len(out); i += 2 {
			out[i], out[i+1] = out[i+1], out[i]
		}
	}
	return out
}

// DecodeRegisters decodes point p from its registers (wire bytes, exactly
// 2 bytes per register of the point). Numeric values with a scale or offset
// become floats (raw*Scale+Offset); others keep their integer kind.
func DecodeRegisters(p *Point, raw []byte) (plugins.Value, error) {
	_, n := p.Span()
	if len(raw) != 2*n {
		return plugins.Value{}, fmt.Errorf("decode %s: got %d bytes, want %d", p.Name, len(raw), 2*n)
	}
	if p.Type == TypeBool {
		word := binary.BigEndian.Uint16(toWire(raw, p.ByteOrder))
		return plugins.Value{Kind: plugins.KindBool, Bool: word>>uint(p.Bit)&1 == 1}, nil
	}
	if p.Type == TypeString {
		b := raw
		if p.ByteOrder == OrderBADC || p.ByteOrder == OrderDCBA {
			b = toWire(raw, OrderBADC) // strings honour only the byte swap
		}
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return plugins.Value{Kind: plugins.KindString, String: strings.TrimSpace(string(b))}, nil
	}
	be := toWire(raw, p.ByteOrder)
	var v plugins.Value
	switch p.Type {
	case TypeInt16:
		v = plugins.Value{Kind: plugins.KindInt, Int: int64(int16(binary.BigEndian.Uint16(be)))}
	case TypeUint16:
		v = plugins.Value{Kind: plugins.KindUint, Uint: uint64(binary.BigEndian.Uint16(be))}
	case TypeInt32:
		v = plugins.Value{Kind: plugins.KindInt, Int: int64(int32(binary.BigEndian.Uint32(be)))}
	case TypeUint32:
		v = plugins.Value{Kind: plugins.KindUint, Uint: uint64(binary.BigEndian.Uint32(be))}
	case TypeInt64:
		v = plugins.Value{Kind: plugins.KindInt, Int: int64(binary.BigEndian.Uint64(be))}
	case TypeUint64:
		v = plugins.Value{Kind: plugins.KindUint, Uint: binary.BigEndian.Uint64(be)}
	case TypeFloat32:
		v = plugins.Value{Kind: plugins.KindFloat, Float: float64(math.Float32frombits(binary.BigEndian.Uint32(be)))}
	case TypeFloat64:
		v = plugins.Value{Kind: plugins.KindFloat, Float: math.Float64frombits(binary.BigEndian.Uint64(be))}
	default:
		return plugins.Value{}, fmt.Errorf("decode %s: unknown type %q", p.Name, p.Type)
	}
	if !p.scaled() {
		return v, nil
	}
	f := asFloat(v)*p.Scale + p.Offset
	if v.Kind != plugins.KindFloat {
		// An integer register scaled by 0.1 means one decimal: 259*0.1 is
		// 25.9, not 25.900000000000002.
		f = roundTo(f, max(decimals(p.Scale), decimals(p.Offset)))
	}
	return plugins.Value{Kind: plugins.KindFloat, Float: f}, nil
}

// decimals is the number of digits after the point in f's shortest form.
func decimals(f float64) int {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return len(s) - i - 1
	}
	return 0
}

func roundTo(f float64, d int) float64 {
	if d > 12 {
		return f
	}
	p := math.Pow10(d)
	return math.Round(f*p) / p
}

func asFloat(v plugins.Value) float64 {
	switch v.Kind {
	case plugins.KindInt:
		return float64(v.Int)
	case plugins.KindUint:
		return float64(v.Uint)
	}
	return v.Float
}

// EncodeRegisters encodes v for point p into wire bytes (2 per register),
// applying the inverse of scale and offset. Values out of the type's range,
// or not integral after unscaling for integer types, are errors.
func EncodeRegisters(p *Point, v plugins.Value) ([]byte, error) {
	_, n := p.Span()
	switch p.Type {
	case TypeBool:
		b, err := boolOf(p, v)
		if err != nil {
			return nil, err
		}
		var word uint16
		if b {
			word = 1 << uint(p.Bit)
		}
		return toWire(binary.BigEndian.AppendUint16(nil, word), p.ByteOrder), nil
	case TypeString:
		if v.Kind != plugins.KindString {
			return nil, fmt.Errorf("point %s is a string, got %s", p.Name, kindName(v.Kind))
		}
		if len(v.String) > 2*n {
			return nil, fmt.Errorf("point %s holds at most %d bytes, got %d", p.Name, 2*n, len(v.String))
		}
		out := make([]byte, 2*n) // NUL padded
		copy(out, v.String)
		if p.ByteOrder == OrderBADC || p.ByteOrder == OrderDCBA {
			out = toWire(out, OrderBADC)
		}
		return out, nil
	case TypeFloat32, TypeFloat64:
		f, err := unscaleFloat(p, v)
		if err != nil {
			return nil, err
		}
		if p.Type == TypeFloat32 {
			if !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
				return nil, fmt.Errorf("point %s: %v out of float32 range", p.Name, f)
			}
			return toWire(binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(f))), p.ByteOrder), nil
		}
		return toWire(binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), p.ByteOrder), nil
	}
	lo, hi, signed := intRange(p.Type)
	var raw uint64
	if !p.scaled() && (v.Kind == plugins.KindInt || v.Kind == plugins.KindUint) {
		// Exact integer path: no float rounding for 64-bit values.
		var err error
		if raw, err = exactInt(p, v, lo, hi); err != nil {
			return nil, err
		}
	} else {
		f, err := unscaleFloat(p, v)
		if err != nil {
			return nil, err
		}
		r := math.Round(f)
		if math.Abs(f-r) > 1e-9*math.Max(1, math.Abs(f)) {
			return nil, fmt.Errorf("point %s: %s is not an integer after scale and offset: (%v-%v)/%v = %v",
				p.Name, v.Text(), v.Float, p.Offset, p.Scale, f)
		}
		if r < float64(lo) || r > float64(hi) || (signed && r >= math.Exp2(63)) || (!signed && r >= math.Exp2(64)) {
			return nil, fmt.Errorf("point %s: %s gives raw %v, out of %s range %d..%d",
				p.Name, v.Text(), r, p.Type, lo, hi)
		}
		if signed {
			raw = uint64(int64(r))
		} else {
			raw = uint64(r)
		}
	}
	be := make([]byte, 8)
	binary.BigEndian.PutUint64(be, raw)
	return toWire(be[8-2*n:], p.ByteOrder), nil
}

func boolOf(p *Point, v plugins.Value) (bool, error) {
	switch {
	case v.Kind == plugins.KindBool:
		return v.Bool, nil
	case v.Kind == plugins.KindInt && (v.Int == 0 || v.Int == 1):
		return v.Int == 1, nil
	case v.Kind == plugins.KindUint && v.Uint <= 1:
		return v.Uint == 1, nil
	}
	return false, fmt.Errorf("point %s is a bool, got %s", p.Name, v.Text())
}

// intRange returns the raw range of an integer type; hi is a uint64 bit
// pattern only for uint64 (signed=false).
func intRange(t Type) (lo int64, hi uint64, signed bool) {
	switch t {
	case TypeInt16:
		return math.MinInt16, math.MaxInt16, true
	case TypeUint16:
		return 0, math.MaxUint16, false
	case TypeInt32:
		return math.MinInt32, math.MaxInt32, true
	case TypeUint32:
		return 0, math.MaxUint32, false
	case TypeInt64:
		return math.MinInt64, math.MaxInt64, true
	}
	return 0, math.MaxUint64, false
}

func exactInt(p *Point, v plugins.Value, lo int64, hi uint64) (uint64, error) {
	bad := fmt.Errorf("point %s: %s out of %s range %d..%d", p.Name, v.Text(), p.Type, lo, hi)
	if v.Kind == plugins.KindUint {
		if v.Uint > hi {
			return 0, bad
		}
		return v.Uint, nil
	}
	if v.Int < lo || (v.Int > 0 && uint64(v.Int) > hi) {
		return 0, bad
	}
	return uint64(v.Int), nil
}

// unscaleFloat returns (v-Offset)/Scale for a numeric value.
func unscaleFloat(p *Point, v plugins.Value) (float64, error) {
	var f float64
	switch v.Kind {
	case plugins.KindInt:
		f = float64(v.Int)
	case plugins.KindUint:
		f = float64(v.Uint)
	case plugins.KindFloat:
		f = v.Float
	default:
		return 0, fmt.Errorf("point %s is numeric (%s), got %s", p.Name, p.Type, v.Text())
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("point %s: %v cannot be written", p.Name, f)
	}
	return (f - p.Offset) / p.Scale, nil
}

// bitAt returns bit i of a coil/discrete response (LSB of the first byte is
// the first bit; Modbus Application Protocol V1.1b3, 6.1).
func bitAt(data []byte, i int) bool { return data[i/8]>>(uint(i)%8)&1 == 1 }

// packBits packs bools into coil bytes, first bit in the LSB.
func packBits(bits []bool) []byte {
	out := make([]byte, (len(bits)+7)/8)
	for i, b := range bits {
		if b {
			out[i/8] |= 1 << (uint(i) % 8)
		}
	}
	return out
}
