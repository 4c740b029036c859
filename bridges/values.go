package bridges

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/drover-iot/drover/plugins"
)

// valueFromJSON converts a decoded JSON (or YAML) value into a
// plugins.Value. The point's declared type is the plugin's business, so
// numbers only carry the writer's intent:
//
//   - json.Number with '.', 'e' or 'E' in its text: Float ("50.0" stays a float);
//   - other json.Number: Int, or Uint above MaxInt64;
//   - float64/float32 (decoded without UseNumber): Int when integral and
//     within int64, Float otherwise (so 50.0 becomes Int 50);
//   - Go integer types: Int (Uint for unsigned values above MaxInt64);
//   - bool: Bool; string: String.
//
// Anything else (null, objects, arrays, NaN, ±Inf) is an error.
func valueFromJSON(x any) (plugins.Value, error) {
	switch v := x.(type) {
	case bool:
		return plugins.Value{Kind: plugins.KindBool, Bool: v}, nil
	case string:
		return plugins.Value{Kind: plugins.KindString, String: v}, nil
	case json.Number:
		s := string(v)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return plugins.Value{Kind: plugins.KindInt, Int: i}, nil
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return plugins.Value{Kind: plugins.KindUint, Uint: u}, nil
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) {
			return plugins.Value{}, fmt.Errorf("number %s is out of range", s)
		}
		return plugins.Value{Kind: plugins.KindFloat, Float: f}, nil
	case float64:
		return floatValue(v)
	case float32:
		return floatValue(float64(v))
	case int:
		return plugins.Value{Kind: plugins.KindInt, Int: int64(v)}, nil
	case int8:
		return plugins.Value{Kind: plugins.KindInt, Int: int64(v)}, nil
	case int16:
		return plugins.Value{Kind: plugins.KindInt, Int: int64(v)}, nil
	case int32:
		return plugins.Value{Kind: plugins.KindInt, Int: int64(v)}, nil
	case int64:
		return plugins.Value{Kind: plugins.KindInt, Int: v}, nil
	case uint:
		return uintValue(uint64(v)), nil
	case uint8:
		return uintValue(uint64(v)), nil
	case uint16:
		return uintValue(uint64(v)), nil
	case uint32:
		return uintValue(uint64(v)), nil
	case uint64:
		return uintValue(v), nil
	case nil:
		return plugins.Value{}, fmt.Errorf("want a number, bool or string, got null")
	case map[string]any:
		return plugins.Value{}, fmt.Errorf("want a number, bool or string, got an object")
	case []any:
		return plugins.Value{}, fmt.Errorf("want a number, bool or string, got an array")
	}
	return plugins.Value{}, fmt.Errorf("want a number, bool or string, got %T", x)
}

func floatValue(f float64) (plugins.Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return plugins.Value{}, fmt.Errorf("number %v is not finite", f)
	}
	if f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64 {
		return plugins.Value{Kind: plugins.KindInt, Int: int64(f)}, nil
	}
	return plugins.Value{Kind: plugins.KindFloat, Float: f}, nil
}

func uintValue(u uint64) plugins.Value {
	if u <= math.MaxInt64 {
		return plugins.Value{Kind: plugins.KindInt, Int: int64(u)}
	}
	return plugins.Value{Kind: plugins.KindUint, Uint: u}
}

// valueToJSON converts a reading into what goes into the twin and
// telemetry: bool, int64, uint64, float64 or string.
func valueToJSON(v plugins.Value) (any, error) {
	switch v.Kind {
	case plugins.KindBool:
		return v.Bool, nil
	case plugins.KindInt:
		return v.Int, nil
	case plugins.KindUint:
		return v.Uint, nil
	case plugins.KindFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return nil, fmt.Errorf("value %v is not finite", v.Float)
		}
		return v.Float, nil
	case plugins.KindString:
		return v.String, nil
	}
	return nil, fmt.Errorf("value has no kind")
}

// number returns x as a float64 when it is one of valueToJSON's numbers.
func number(x any) (float64, bool) {
	switch v := x.(type) {
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// changed says whether cur must be published given the last published
// value prev (nil: never published). Numbers published with a deadband > 0
// change when they moved by more than the deadband; otherwise any
// difference, including a change of kind, is a change.
func changed(prev, cur any, deadband float64) bool {
	if prev == nil {
		return true
	}
	if deadband > 0 {
		a, okA := number(prev)
		b, okB := number(cur)
		if okA && okB {
			return math.Abs(b-a) > deadband
		}
	}
	return prev != cur // comparable: bool, int64, uint64, float64, string
}

// matches says whether a reading equals the in-use rule's value; numbers
// compare by value whatever their kind.
func matches(v plugins.Value, want any) bool {
	got, err := valueToJSON(v)
	if err != nil {
		return false
	}
	w, err := valueFromJSON(want)
	if err != nil {
		return false
	}
	wj, _ := valueToJSON(w)
	if a, ok := number(got); ok {
		b, ok := number(wj)
		return ok && a == b
	}
	return got == wj
}
