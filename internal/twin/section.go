// Package twin holds IoT Hub device-twin sections (tags, desired and reported
// properties) as values and applies service and device updates to them:
// JSON merge patch (RFC 7396), whole-section replacement, per-level $metadata,
// $version, and the IoT Hub size, depth and key limits. It does no I/O; the
// hub's store and the gateway's twin cache load and save the JSON around it.
//
// Sections are treated as immutable values. Patch and Replace never modify
// their receiver or their argument; the Section they return may share
// untouched subtrees with the receiver (copy on write), so code that wants to
// modify a Section's maps in place must Clone it first.
package twin

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Section is one twin section (tags, desired or reported) as stored.
type Section struct {
	Props   map[string]any // the properties, without $version/$metadata; numbers as json.Number
	Meta    map[string]any // the $metadata tree (see package doc); nil for tags
	Version int64          // $version of the section (starts at 1)
}

// Kind says which section a Section is; it picks limits and metadata rules.
type Kind int

// The three twin sections.
const (
	Tags     Kind = iota // tags: service-only, no $metadata, 8 KB
	Desired              // properties.desired: metadata with $lastUpdatedVersion, 32 KB
	Reported             // properties.reported: metadata with $lastUpdated only, 32 KB
)

// Member names IoT Hub puts into sections and metadata nodes.
const (
	KeyVersion            = "$version"
	KeyMetadata           = "$metadata"
	KeyLastUpdated        = "$lastUpdated"
	KeyLastUpdatedVersion = "$lastUpdatedVersion"
)

// TimeLayout is how IoT Hub writes $lastUpdated: UTC with 7 fractional digits.
const TimeLayout = "2006-01-02T15:04:05.0000000Z"

// Timestamp formats t as a $lastUpdated value.
func Timestamp(t time.Time) string { return t.UTC().Format(TimeLayout) }

// NewSection returns an empty section at version 1. Desired and reported get a
// root metadata node holding only $lastUpdated=now, as a new twin shows in the
// lifecycle-event example; tags get no metadata.
func NewSection(k Kind, now time.Time) Section {
	s := Section{Props: map[string]any{}, Version: 1}
	if k != Tags {
		s.Meta = map[string]any{KeyLastUpdated: Timestamp(now)}
	}
	return s
}

// Patch applies a JSON merge patch (RFC 7396): null deletes, objects merge
// recursively, other values (arrays included) replace. It validates the patch
// first and the merged sizes after; on any error it returns the error and
// nothing is applied. The receiver and patch are never modified.
//
// The result's Version is s.Version+1 for every accepted patch, even one that
// changes nothing. Metadata: the root node, every node on the path to a
// patched key and every patched key's node get $lastUpdated=now (and, for
// Desired, $lastUpdatedVersion = the new version); a key whose value is
// replaced gets a fresh node tree; deleted keys lose their nodes; untouched
// keys keep theirs.
func (s Section) Patch(k Kind, patch map[string]any, now time.Time) (Section, error) {
	if err := Validate(k, patch, true); err != nil {
		return Section{}, err
	}
	return s.apply(k, s.Props, s.Meta, patch, now)
}

// Replace replaces all properties with doc (service PUT of tags or desired),
// giving every node fresh metadata stamped now, and returns the section at
// s.Version+1. Null members of doc are dropped, as a merge patch onto an
// empty object would. The receiver and doc are never modified.
func (s Section) Replace(k Kind, doc map[string]any, now time.Time) (Section, error) {
	if err := Validate(k, doc, true); err != nil {
		return Section{}, err
	}
	return s.apply(k, nil, nil, doc, now)
}

func (s Section) apply(k Kind, base, meta, patch map[string]any, now time.Time) (Section, error) {
	ver := s.Version + 1
	st := stamper{ts: Timestamp(now), meta: k != Tags}
	if k == Desired {
		st.ver = json.Number(strconv.FormatInt(ver, 10))
	}
	props, node := st.merge(base, meta, patch)
	if props == nil {
		props = map[string]any{}
	}
	if err := checkResult(k, props, patch); err != nil {
		return Section{}, err
	}
	return Section{Props: props, Meta: node, Version: ver}, nil
}

// checkResult checks the merged section's size and the value size of every
// top-level key the patch touched. Untouched keys are not re-judged, so a
// section stored under older rules stays patchable.
func checkResult(k Kind, props, patch map[string]any) error {
	total := 0
	var over []string
	for key, v := range props {
		n := Size(v)
		total += len(key) + n
		if n > MaxValueSize {
			if _, touched := patch[key]; touched {
				over = append(over, key)
			}
		}
	}
	if len(over) > 0 {
		key := slices.Min(over)
		return &LimitError{
			Limit:  LimitValueSize,
			Path:   k.Root() + "." + key,
			Detail: fmt.Sprintf("property value size %d exceeds %d", Size(props[key]), MaxValueSize),
		}
	}
	if max := k.MaxSize(); total > max {
		return &LimitError{
			Limit:  LimitSectionSize,
			Path:   k.Root(),
			Detail: fmt.Sprintf("exceeds %d bytes (is %d)", max, total),
		}
	}
	return nil
}

// stamper builds metadata for one update. All nodes written by the update
// share the same timestamp string and version number.
type stamper struct {
	ts   string
	ver  json.Number // "" unless desired
	meta bool        // false for tags
}

func (st *stamper) stamp(node map[string]any) {
	node[KeyLastUpdated] = st.ts
	if st.ver != "" {
		node[KeyLastUpdatedVersion] = st.ver
	}
}

// merge returns target merged with patch and the merged object's metadata
// node (nil for tags). target and node may be nil; neither is modified.
// Values taken from patch are copied, so the result never aliases it.
func (st *stamper) merge(target, node, patch map[string]any) (map[string]any, map[string]any) {
	var out map[string]any
	if target != nil {
		out = maps.Clone(target)
	} else {
		out = make(map[string]any, len(patch))
	}
	var outNode map[string]any
	if st.meta {
		if node != nil {
			outNode = maps.Clone(node)
		} else {
			outNode = make(map[string]any, len(patch)+2)
		}
		st.stamp(outNode)
	}
	for key, pv := range patch {
		switch pv := pv.(type) {
		case nil:
			delete(out, key)
			if outNode != nil {
				delete(outNode, key)
			}
		case map[string]any:
			// Merge into an existing object; anything else is replaced by
			// the patch applied to an empty object.
			tv, _ := out[key].(map[string]any)
			var tn map[string]any
			if tv != nil && outNode != nil {
				tn, _ = outNode[key].(map[string]any)
			}
			v, n := st.merge(tv, tn, pv)
			out[key] = v
			if outNode != nil {
				outNode[key] = n
			}
		default:
			out[key] = copyValue(pv)
			if outNode != nil {
				n := make(map[string]any, 2)
				st.stamp(n)
				outNode[key] = n
			}
		}
	}
	return out, outNode
}

// copyValue deep-copies a validated value, turning Go numbers into json.Number.
func copyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = copyValue(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = copyValue(e)
		}
		return a
	case float64:
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	case float32:
		return json.Number(strconv.FormatFloat(float64(x), 'g', -1, 32))
	case int:
		return json.Number(strconv.Itoa(x))
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return json.Number(fmt.Sprint(x))
	}
	return v // nil, bool, string, json.Number
}

// Document renders the section as IoT Hub shows it: the properties plus
// "$version" (a json.Number) and, when withMeta, "$metadata". Tags have
// neither. The result is a new top-level map that shares nested values with
// s; do not modify them.
func (s Section) Document(k Kind, withMeta bool) map[string]any {
	out := make(map[string]any, len(s.Props)+2)
	maps.Copy(out, s.Props)
	if k == Tags {
		return out
	}
	out[KeyVersion] = json.Number(strconv.FormatInt(s.Version, 10))
	if withMeta {
		meta := s.Meta
		if meta == nil {
			meta = map[string]any{}
		}
		out[KeyMetadata] = meta
	}
	return out
}

// Clone returns a deep copy of s that shares nothing with it.
func (s Section) Clone() Section {
	c := Section{Version: s.Version}
	if s.Props != nil {
		c.Props = cloneValue(s.Props).(map[string]any)
	}
	if s.Meta != nil {
		c.Meta = cloneValue(s.Meta).(map[string]any)
	}
	return c
}

// cloneValue deep-copies maps and slices and keeps every other value as is.
func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return x
		}
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneValue(e)
		}
		return m
	case []any:
		if x == nil {
			return x
		}
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = cloneValue(e)
		}
		return a
	}
	return v
}
