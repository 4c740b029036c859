package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	durationType = reflect.TypeOf(time.Duration(0))
	sizeType     = reflect.TypeOf(Size(0))
	anyType      = reflect.TypeOf((*any)(nil)).Elem()
)

// sourced is implemented by structs that remember their tree.
type sourced interface{ setSource(*node) }

// field is one yaml-tagged field of a struct.
type field struct {
	key    string
	index  int
	inline bool
}

// fieldsOf lists the yaml keys of a struct type, in declaration order.
// Exported fields without a tag, with tag "-", and unexported fields are skipped.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.PkgPath != "" {
			continue
		}
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		fs = append(fs, field{key: name, index: i, inline: opts == "inline"})
	}
	return fs
}

// keysOf returns the non-inline keys of a struct type.
func keysOf(t reflect.Type) []string {
	var ks []string
	for _, f := range fieldsOf(t) {
		if !f.inline {
			ks = append(ks, f.key)
		}
	}
	return ks
}

// decoder decodes a node tree into Go values strictly: unknown keys and
// type mismatches become problems, and decoding carries on.
type decoder struct {
	ps *problems
}

func (d *decoder) decode(n *node, v reflect.Value) {
	if n == nil {
		return
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.duration(n, v)
		return
	case t == sizeType:
		d.size(n, v)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if n.kind == nullNode {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, v.Elem())
	case reflect.Struct:
		d.structure(n, v)
	case reflect.Slice:
		if n.kind == nullNode {
			v.SetZero()
			return
		}
		if n.kind != seqNode {
			d.ps.add(n.pos, "want a list, got %s", n.describe())
			return
		}
		s := reflect.MakeSlice(t, len(n.items), len(n.items))
		for i, it := range n.items {
			d.decode(it, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.kind == nullNode {
			v.SetZero()
			return
		}
		if n.kind != mapNode {
			d.ps.add(n.pos, "want a mapping of keys to values, got %s", n.describe())
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.pairs))
		for _, p := range n.pairs {
			ev := reflect.New(t.Elem()).Elem()
			d.decode(p.val, ev)
			m.SetMapIndex(reflect.ValueOf(p.key), ev)
		}
		v.Set(m)
	case reflect.Interface:
		if t == anyType {
			if a := toAny(n); a != nil {
				v.Set(reflect.ValueOf(a))
			}
		}
	case reflect.String:
		switch n.kind {
		case nullNode:
			v.SetString("")
		case mapNode, seqNode:
			d.ps.add(n.pos, "want a single value, got %s", n.kind)
		default:
			v.SetString(n.text)
		}
	case reflect.Bool:
		if n.kind != boolNode {
			if n.kind != nullNode {
				d.ps.add(n.pos, "want true or false, got %s", n.describe())
			}
			return
		}
		v.SetBool(strings.EqualFold(n.text, "true"))
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.kind == nullNode {
			return
		}
		if n.kind != intNode {
			d.ps.add(n.pos, "want an integer, got %s", n.describe())
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.text, "_", ""), 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.ps.add(n.pos, "integer %s out of range", n.text)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if n.kind == nullNode {
			return
		}
		if n.kind != intNode && n.kind != floatNode {
			d.ps.add(n.pos, "want a number, got %s", n.describe())
			return
		}
		f, ok := parseFloat(n.text)
		if !ok {
			if i, err := strconv.ParseInt(n.text, 0, 64); err == nil {
				f, ok = float64(i), true
			}
		}
		if !ok {
			d.ps.add(n.pos, "bad number %s", n.text)
			return
		}
		v.SetFloat(f)
	default:
		d.ps.add(n.pos, "cannot decode into %s", t)
	}
}

func (d *decoder) structure(n *node, v reflect.Value) {
	if n.kind == nullNode {
		return
	}
	if n.kind != mapNode {
		d.ps.add(n.pos, "want a mapping of keys to values, got %s", n.describe())
		return
	}
	if s, ok := v.Addr().Interface().(sourced); ok {
		s.setSource(n)
	}
	t := v.Type()
	fs := fieldsOf(t)
	byKey := map[string]field{}
	var inline *field
	var known []string
	for i := range fs {
		if fs[i].inline {
			inline = &fs[i]
			continue
		}
		byKey[fs[i].key] = fs[i]
		known = append(known, fs[i].key)
	}
	for _, p := range n.pairs {
		if f, ok := byKey[p.key]; ok {
			d.decode(p.val, v.Field(f.index))
			continue
		}
		close, hint := suggest(p.key, known)
		if inline == nil || close {
			d.ps.add(p.val.pos, "unknown key%s", hint)
			continue
		}
		m := v.Field(inline.index)
		if m.IsNil() {
			m.Set(reflect.MakeMap(m.Type()))
		}
		m.SetMapIndex(reflect.ValueOf(p.key), reflect.ValueOf(toAny(p.val)))
	}
}

func (d *decoder) duration(n *node, v reflect.Value) {
	switch n.kind {
	case nullNode:
		return
	case strNode:
		dur, err := time.ParseDuration(n.text)
		if err != nil {
			d.ps.add(n.pos, "bad duration %q (use e.g. 500ms, 5s)", n.text)
			return
		}
		v.SetInt(int64(dur))
	case intNode, floatNode:
		if n.text == "0" {
			return
		}
		d.ps.add(n.pos, "bad duration %s: a duration needs a unit (use e.g. 500ms, 5s)", n.text)
	default:
		d.ps.add(n.pos, "bad duration: want a string like 500ms or 5s, got %s", n.describe())
	}
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseSize parses a byte count: "1048576", "64MiB", "500MB".
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult = u.mult
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*float64(mult) > math.MaxInt64/2 || f != f {
		return 0, fmt.Errorf("bad size %q (use e.g. 64MiB, 1GB or a number of bytes)", s)
	}
	return Size(f * float64(mult)), nil
}

// String formats a size with the largest binary unit that divides it.
func (s Size) String() string {
	for i := 3; i >= 0; i-- { // TiB, GiB, MiB, KiB
		u := sizeUnits[i]
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

func (d *decoder) size(n *node, v reflect.Value) {
	switch n.kind {
	case nullNode:
	case intNode:
		i, err := strconv.ParseInt(strings.ReplaceAll(n.text, "_", ""), 0, 64)
		if err != nil || i < 0 {
			d.ps.add(n.pos, "bad size %s", n.text)
			return
		}
		v.SetInt(i)
	case strNode:
		sz, err := ParseSize(n.text)
		if err != nil {
			d.ps.add(n.pos, "bad size %q (use e.g. 64MiB, 1GB or a number of bytes)", n.text)
			return
		}
		v.SetInt(int64(sz))
	default:
		d.ps.add(n.pos, "bad size: want e.g. 64MiB, got %s", n.describe())
	}
}

// encode turns a decoded value back into plain Go values with the yaml keys:
// map[string]any, []any, string, int64, float64, bool. Zero values are left
// out, durations become strings like "1s", sizes integers. It is the inverse
// of decode for everything decode accepts.
func encode(v reflect.Value) any {
	t := v.Type()
	switch {
	case t == durationType:
		if v.Int() == 0 {
			return nil
		}
		return formatDuration(time.Duration(v.Int()))
	case t == sizeType:
		if v.Int() == 0 {
			return nil
		}
		return v.Int()
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Int {
			return v.Elem().Int() // keep explicit zeros (retries: 0, address: 0)
		}
		return encode(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for _, f := range fieldsOf(t) {
			fv := v.Field(f.index)
			if f.inline {
				for _, k := range fv.MapKeys() {
					m[k.String()] = fv.MapIndex(k).Interface()
				}
				continue
			}
			if e := encode(fv); e != nil {
				m[f.key] = e
			}
		}
		if len(m) == 0 {
			return nil
		}
		return m
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		s := make([]any, v.Len())
		for i := range s {
			e := encode(v.Index(i))
			if e == nil {
				e = map[string]any{}
			}
			s[i] = e
		}
		return s
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
		m := make(map[string]any, v.Len())
		for _, k := range v.MapKeys() {
			m[k.String()] = v.MapIndex(k).Interface()
		}
		return m
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		return v.String()
	case reflect.Bool:
		if !v.Bool() {
			return nil
		}
		return true
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Int() == 0 {
			return nil
		}
		return v.Int()
	case reflect.Float64:
		if v.Float() == 0 {
			return nil
		}
		return v.Float()
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// formatDuration is time.Duration.String without trailing zero units:
// "2h" rather than "2h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
