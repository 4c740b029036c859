package modbussim

import (
	"encoding/binary"
	"math"
	"strings"
)

// encodeValue turns an engineering value into the point's registers:
// raw = (value - offset) / scale (rounded and clamped for integer types), laid out
// big-endian (ABCD) and then reordered per the point's byte order:
// DCBA reverses all bytes, BADC swaps the bytes of each register, CDAB
// reverses the register order. A string is its bytes, zero-padded, two per
// register, first character in the high byte (BADC and DCBA swap each pair).
// A bool in a register table sets its bit (1 << bit), or the whole register
// to 1 when it has no bit; the register then follows the byte order.
func encodeValue(p *Point, v float64, text string) []uint16 {
	n := p.Registers()
	b := make([]byte, 2*n)
	raw := (v - p.Offset) / p.Scale
	switch p.Type {
	case TypeBool:
		if v != 0 {
			binary.BigEndian.PutUint16(b, uint16(1)<<max(p.Bit, 0))
		}
	case TypeInt16:
		binary.BigEndian.PutUint16(b, uint16(int16(clampRound(raw, math.MinInt16, math.MaxInt16))))
	case TypeUint16:
		binary.BigEndian.PutUint16(b, uint16(clampRound(raw, 0, math.MaxUint16)))
	case TypeInt32:
		binary.BigEndian.PutUint32(b, uint32(int32(clampRound(raw, math.MinInt32, math.MaxInt32))))
	case TypeUint32:
		binary.BigEndian.PutUint32(b, uint32(clampRound(raw, 0, math.MaxUint32)))
	case TypeInt64:
		binary.BigEndian.PutUint64(b, uint64(toInt64(raw)))
	case TypeUint64:
		binary.BigEndian.PutUint64(b, toUint64(raw))
	case TypeFloat32:
		binary.BigEndian.PutUint32(b, math.Float32bits(float32(raw)))
	case TypeFloat64:
		binary.BigEndian.PutUint64(b, math.Float64bits(raw))
	case TypeString:
		copy(b, text)
	}
	reorder(b, p.ByteOrder, p.Type == TypeString)
	regs := make([]uint16, n)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return regs
}

// decodeValue is the inverse of encodeValue: registers to engineering value.
func decodeValue(p *Point, regs []uint16) (float64, string) {
	b := make([]byte, 2*len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(b[2*i:], r)
	}
	unorder(b, p.ByteOrder, p.Type == TypeString)
	var raw float64
	switch p.Type {
	case TypeBool:
		w := binary.BigEndian.Uint16(b)
		if p.Bit >= 0 {
			w = w >> p.Bit & 1
		}
		if w != 0 {
			return 1, ""
		}
		return 0, ""
	case TypeInt16:
		raw = float64(int16(binary.BigEndian.Uint16(b)))
	case TypeUint16:
		raw = float64(binary.BigEndian.Uint16(b))
	case TypeInt32:
		raw = float64(int32(binary.BigEndian.Uint32(b)))
	case TypeUint32:
		raw = float64(binary.BigEndian.Uint32(b))
	case TypeInt64:
		raw = float64(int64(binary.BigEndian.Uint64(b)))
	case TypeUint64:
		raw = float64(binary.BigEndian.Uint64(b))
	case TypeFloat32:
		raw = float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
	case TypeFloat64:
		raw = math.Float64frombits(binary.BigEndian.Uint64(b))
	case TypeString:
		return 0, strings.TrimRight(string(b), "\x00")
	}
	return raw*p.Scale + p.Offset, ""
}

// clampRound rounds x and clamps it to [lo, hi]; NaN becomes 0. lo and hi
// must be exactly representable (true for the 16- and 32-bit limits).
func clampRound(x, lo, hi float64) float64 {
	x = math.Round(x)
	switch {
	case math.IsNaN(x):
		return 0
	case x < lo:
		return lo
	case x > hi:
		return hi
	}
	return x
}

// toInt64 rounds and saturates; float64 cannot hold MaxInt64 exactly.
func toInt64(x float64) int64 {
	x = math.Round(x)
	switch {
	case math.IsNaN(x):
		return 0
	case x >= 0x1p63:
		return math.MaxInt64
	case x < -0x1p63:
		return math.MinInt64
	}
	return int64(x)
}

// toUint64 rounds and saturates.
func toUint64(x float64) uint64 {
	x = math.Round(x)
	switch {
	case math.IsNaN(x) || x < 0:
		return 0
	case x >= 0x1p64:
		return math.MaxUint64
	}
	return uint64(x)
}

// reorder rearranges big-endian bytes b into byte order o.
func reorder(b []byte, o string, text bool) {
	switch {
	case text:
		if o == "BADC" || o == "DCBA" {
			swapPairs(b)
		}
	case o == "DCBA":
		reverse(b)
	case o == "BADC":
		swapPairs(b)
	case o == "CDAB":
		reverse(b)
		swapPairs(b)
	}
}

// unorder undoes reorder; every permutation used is its own inverse.
func unorder(b []byte, o string, text bool) { reorder(b, o, text) }

func reverse(b []byte) {
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
}

func swapPairs(b []byte) {
	for i := 0; i+1 < len(b); i += 2 {
		b[i], b[i+1] = b[i+1], b[i]
	}
}
