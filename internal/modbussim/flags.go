package modbussim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseUnits parses a unit id list such as "1-10", "3" or "1,4,7-9".
func ParseUnits(s string) ([]byte, error) {
	var out []byte
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err != nil || a < 1 || b > 247 || a > b {
			return nil, fmt.Errorf("parse unit list %q: %q is not a unit id or range within 1..247", s, part)
		}
		for id := a; id <= b; id++ {
			out = append(out, byte(id))
		}
	}
	return out, nil
}

// ParseFaultSpec parses "unit=3,drop=0.5,delay=20ms,bad-crc=0.1,exception=6".
// Every key is optional; unit 0 (or no unit) means every unit.
func ParseFaultSpec(s string) (unit byte, f Faults, err error) {
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return 0, f, fmt.Errorf("parse fault spec %q: %q is not key=value", s, kv)
		}
		var e error
		switch k {
		case "unit":
			var n uint64
			n, e = strconv.ParseUint(v, 10, 8)
			unit = byte(n)
		case "drop":
			f.Drop, e = probability(v)
		case "bad-crc":
			f.BadCRC, e = probability(v)
		case "delay":
			f.Delay, e = time.ParseDuration(v)
		case "exception":
			var n uint64
			n, e = strconv.ParseUint(v, 0, 8)
			f.Exception = ExceptionCode(n)
		default:
			e = fmt.Errorf("unknown key (want unit, drop, delay, bad-crc, exception)")
		}
		if e != nil {
			return 0, f, fmt.Errorf("parse fault spec %q: %s: %w", s, k, e)
		}
	}
	return unit, f, nil
}

func probability(s string) (float64, error) {
	p, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if p < 0 || p > 1 {
		return 0, fmt.Errorf("probability %v outside 0..1", p)
	}
	return p, nil
}
