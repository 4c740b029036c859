package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
)

// OverlayPath is the path prefix of problems found in a desired.config overlay.
const OverlayPath = "desired.config"

// localOnly are keys a desired.config overlay may not set: changing them
// remotely could cut the gateway off its hub or its own state for good, or
// change what it trusts. They are changed on site, in gateway.yaml.
var localOnly = []string{
	"gateway.id", "gateway.data_dir", "gateway.local_api", "gateway.local_api_token_file",
	"upstream", "plugins.dir", "profiles_dir", "firmware.trusted_keys",
}

// keyedLists are the lists an overlay merges entry by entry, with the key
// that identifies an entry.
var keyedLists = map[string]string{"devices": "id", "buses": "name"}

// deleteKey in a devices or buses entry of an overlay removes that entry.
const deleteKey = "$delete"

// Merge applies a desired.config overlay (JSON, same keys as gateway.yaml)
// to base and returns the validated result. The rules:
//
//   - mappings merge key by key, recursively;
//   - a key set to null is removed (its default applies again);
//   - devices merge by id and buses by name: an entry with a known id is
//     merged key by key into the existing one, an unknown id is appended, and
//     {"id": "x", "$delete": true} removes device x;
//   - every other value (scalars, other lists such as maintenance.windows)
//     replaces the base value;
//   - keys in localOnly (gateway.id, upstream, …) may not be set remotely.
//
// Problems in the overlay come back in a *LoadError with paths starting
// "desired.config" (desired.config.devices[2].bus); problems in values that
// still come from the file keep their file and line. base is not modified.
// Profiles already loaded by base are shared; others are read from
// profiles_dir.
func Merge(base *Config, overlay json.RawMessage) (*Config, error) {
	ps := &problems{}
	ov := parseJSON(OverlayPath, overlay, ps)
	if ov == nil {
		return nil, ps.err()
	}
	if ov.kind == nullNode {
		ov = &node{kind: mapNode, pos: ov.pos}
	}
	if ov.kind != mapNode {
		ps.add(ov.pos, "want a JSON object with the keys of gateway.yaml, got %s", ov.describe())
		return nil, ps.err()
	}
	for _, k := range localOnly {
		if n := ov.lookupNode(k); n != nil {
			ps.add(n.pos, "cannot be set remotely (local only: change it in gateway.yaml on the gateway)")
		}
	}
	if !ps.empty() {
		return nil, ps.err()
	}
	baseTree := base.src
	if baseTree == nil {
		baseTree = fromAny(encode(reflect.ValueOf(base).Elem()), pos{})
	}
	merged := mergeNodes(baseTree, ov, "", ps)
	c := &Config{File: base.File, dir: base.dir, Profiles: map[string]*Profile{}, reported: map[string]bool{}}
	for n, p := range base.Profiles {
		c.Profiles[n] = p
	}
	c.build(osFiles{}, merged, ps)
	// Keep only the profiles the merged devices use.
	used := map[string]bool{}
	for _, d := range c.Devices {
		used[d.Profile] = true
	}
	for n := range c.Profiles {
		if !used[n] {
			delete(c.Profiles, n)
		}
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// lookupNode returns the node at a dotted key path, or nil.
func (n *node) lookupNode(path string) *node {
	cur := n
	for _, seg := range splitPath(path) {
		cur = cur.get(seg)
		if cur == nil {
			return nil
		}
	}
	return cur
}

// mergeNodes merges overlay ov into base (see Merge). key is the top-level
// key being merged, for the keyed lists.
func mergeNodes(base, ov *node, key string, ps *problems) *node {
	switch {
	case base == nil || ov.kind != base.kind:
		return ov
	case ov.kind == mapNode:
		out := &node{kind: mapNode, pos: base.pos}
		idx := map[string]int{}
		for _, p := range base.pairs {
			idx[p.key] = len(out.pairs)
			out.pairs = append(out.pairs, p)
		}
		var drop []string
		for _, p := range ov.pairs {
			if p.val.kind == nullNode {
				drop = append(drop, p.key)
				continue
			}
			sub := ""
			if key == "" {
				sub = p.key // only top-level lists are keyed
			} else {
				sub = "-"
			}
			if i, ok := idx[p.key]; ok {
				out.pairs[i] = pair{key: p.key, val: mergeNodes(out.pairs[i].val, p.val, sub, ps)}
			} else {
				idx[p.key] = len(out.pairs)
				out.pairs = append(out.pairs, p)
			}
		}
		for _, k := range drop {
			out.pairs = removePair(out.pairs, k)
		}
		return out
	case ov.kind == seqNode && keyedLists[key] != "":
		return mergeKeyed(base, ov, keyedLists[key], ps)
	}
	return ov
}

func removePair(ps []pair, key string) []pair {
	out := ps[:0:0]
	for _, p := range ps {
		if p.key != key {
			out = append(out, p)
		}
	}
	return out
}

// mergeKeyed merges two lists of mappings entry by entry, matching on idKey.
func mergeKeyed(base, ov *node, idKey string, ps *problems) *node {
	out := &node{kind: seqNode, pos: base.pos}
	out.items = append(out.items, base.items...)
	find := func(id string) int {
		for i, it := range out.items {
			if v := it.get(idKey); v != nil && v.kind != mapNode && v.kind != seqNode && v.text == id {
				return i
			}
		}
		return -1
	}
	for _, it := range ov.items {
		if it.kind != mapNode {
			ps.add(it.pos, "want an object with %q, got %s", idKey, it.describe())
			continue
		}
		idn := it.get(idKey)
		if idn == nil || idn.kind != strNode || idn.text == "" {
			ps.add(it.pos.child(idKey), "required: entries are merged by %s", idKey)
			continue
		}
		del := false
		if d := it.get(deleteKey); d != nil {
			if d.kind != boolNode {
				ps.add(d.pos, "want true or false")
				continue
			}
			del = d.text == "true"
			stripped := *it
			stripped.pairs = removePair(it.pairs, deleteKey)
			it = &stripped
		}
		i := find(idn.text)
		switch {
		case del && i < 0:
			ps.add(idn.pos, "no entry with %s %q to delete", idKey, idn.text)
		case del:
			out.items = append(out.items[:i:i], out.items[i+1:]...)
		case i < 0:
			out.items = append(out.items, it)
		default:
			out.items[i] = mergeNodes(out.items[i], it, "-", ps)
		}
	}
	return out
}

// Hash fingerprints the effective configuration: the SHA-256, in hex, of a
// canonical JSON (sorted keys, defaults applied, zero values left out) of
// the gateway configuration and of every profile it uses. Two configs with
// the same Hash behave the same. It is what the gateway reports as its
// configuration version.
func Hash(c *Config) string {
	sum := sha256.Sum256(canonical(c))
	return hex.EncodeToString(sum[:])
}

func canonical(c *Config) []byte {
	profs := map[string]any{}
	for n, p := range c.Profiles {
		profs[n] = encode(reflect.ValueOf(p).Elem())
	}
	doc := map[string]any{"config": encode(reflect.ValueOf(c).Elem()), "profiles": profs}
	b, err := json.Marshal(doc)
	if err != nil { // only plain values are encoded; cannot happen
		return []byte(fmt.Sprint(doc))
	}
	return b
}

// JSON returns the effective configuration (defaults applied) as JSON with
// the keys of gateway.yaml, for reporting it in the gateway's twin.
func (c *Config) JSON() (json.RawMessage, error) {
	return marshalValue(reflect.ValueOf(c).Elem())
}

// Change is one difference between two configurations. From is nil for an
// added value and To is nil for a removed one. Path uses the keys of
// gateway.yaml; devices and buses are addressed by id and name:
// devices["pump-1"].poll, buses["rs485-1"].timeout.
type Change struct {
	Path string `json:"path"`
	From any    `json:"from,omitempty"`
	To   any    `json:"to,omitempty"`
}

// Diff lists the effective values that differ between base and effective,
// sorted by path; Diff(base, Merge(base, overlay)) shows what an overlay
// changed. Profiles are not compared.
func Diff(base, effective *Config) []Change {
	var out []Change
	a := encode(reflect.ValueOf(base).Elem())
	b := encode(reflect.ValueOf(effective).Elem())
	diffValues("", a, b, true, &out)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func diffValues(path string, a, b any, top bool, out *[]Change) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for k := range keys {
			if id := keyedLists[k]; top && id != "" {
				diffKeyed(k, id, am[k], bm[k], out)
				continue
			}
			diffValues(joinPath(path, k), am[k], bm[k], false, out)
		}
		return
	}
	if !reflect.DeepEqual(normalizeJSON(a), normalizeJSON(b)) {
		*out = append(*out, Change{Path: path, From: a, To: b})
	}
}

func diffKeyed(list, idKey string, a, b any, out *[]Change) {
	index := func(v any) (map[string]any, []string) {
		m := map[string]any{}
		var order []string
		s, _ := v.([]any)
		for i, it := range s {
			e, _ := it.(map[string]any)
			id, _ := e[idKey].(string)
			if id == "" {
				id = "#" + strconv.Itoa(i)
			}
			m[id] = it
			order = append(order, id)
		}
		return m, order
	}
	am, aorder := index(a)
	bm, border := index(b)
	seen := map[string]bool{}
	for _, id := range append(aorder, border...) {
		if seen[id] {
			continue
		}
		seen[id] = true
		p := list + "[" + strconv.Quote(id) + "]"
		switch {
		case am[id] == nil:
			*out = append(*out, Change{Path: p, To: bm[id]})
		case bm[id] == nil:
			*out = append(*out, Change{Path: p, From: am[id]})
		default:
			diffValues(p, am[id], bm[id], false, out)
		}
	}
}

// normalizeJSON makes numbers comparable across int64 and float64.
func normalizeJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}
