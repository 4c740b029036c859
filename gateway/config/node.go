package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// pos locates a value: the file and line it came from and its key path in
// that file ("buses[1].timeout"). Values from a desired.config overlay have
// no file and a path starting with "desired.config".
type pos struct {
	file      string
	line, col int
	path      string
}

// child returns the position of key under p, keeping p's file and line
// (used when a key is missing and the problem points at its parent).
func (p pos) child(key string) pos {
	p.path = joinPath(p.path, key)
	return p
}

// joinPath appends key to a key path. Keys that would be ambiguous in a
// dotted path (containing '.', '[', ']', spaces or quotes) are written
// ["like.this"]; "[3]" index segments are appended as they are.
// appendPath appends a relative path that is already written in path
// syntax ("points[3].type") to parent.
func appendPath(parent, rel string) string {
	switch {
	case rel == "":
		return parent
	case parent == "":
		return rel
	case strings.HasPrefix(rel, "["):
		return parent + rel
	}
	return parent + "." + rel
}

func joinPath(parent, key string) string {
	switch {
	case strings.HasPrefix(key, "[") && strings.HasSuffix(key, "]"):
		return parent + key
	case plainKey(key):
		if parent == "" {
			return key
		}
		return parent + "." + key
	}
	return parent + "[" + strconv.Quote(key) + "]"
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r == '.' || r == '[' || r == ']' || r == '"' || r == '\'' || r <= ' ' {
			return false
		}
	}
	return true
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// nodeKind is the type of a tree node.
type nodeKind uint8

const (
	nullNode nodeKind = iota
	strNode
	intNode
	floatNode
	boolNode
	mapNode
	seqNode
)

func (k nodeKind) String() string {
	switch k {
	case nullNode:
		return "null"
	case strNode:
		return "a string"
	case intNode:
		return "an integer"
	case floatNode:
		return "a number"
	case boolNode:
		return "a boolean"
	case mapNode:
		return "a mapping"
	case seqNode:
		return "a list"
	}
	return "?"
}

// node is a parsed configuration value with its position. YAML files and
// JSON overlays both become nodes, so decoding, merging and error reporting
// have one code path.
type node struct {
	kind  nodeKind
	text  string  // scalar text as written
	pairs []pair  // mapNode, in file order
	items []*node // seqNode
	pos   pos
}

// pair is one key of a mapping. The value's pos is the key's position.
type pair struct {
	key string
	val *node
}

// get returns the value of key in a mapping node, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != mapNode {
		return nil
	}
	for _, p := range n.pairs {
		if p.key == key {
			return p.val
		}
	}
	return nil
}

// describe renders a scalar for an error message: `"5 s"` for strings,
// the text for others, "a mapping" for collections.
func (n *node) describe() string {
	switch n.kind {
	case strNode:
		return strconv.Quote(n.text)
	case mapNode, seqNode, nullNode:
		return n.kind.String()
	}
	return n.text
}

// lookup walks a relative key path ("points[3].type") from n and returns the
// position of the deepest node found, with the full path requested. Paths
// that run past the tree (a key the plugin defaults) land on the nearest
// existing ancestor's line.
func (n *node) lookup(path string) pos {
	cur := n
	segs := splitPath(path)
	for i, seg := range segs {
		var next *node
		if strings.HasPrefix(seg, "[") {
			k, err := strconv.Atoi(strings.Trim(seg, "[]"))
			if err == nil && cur.kind == seqNode && k >= 0 && k < len(cur.items) {
				next = cur.items[k]
			}
		} else {
			next = cur.get(seg)
		}
		if next == nil {
			// Not in the tree: the nearest ancestor's line, the full path.
			at := cur.pos
			for _, rest := range segs[i:] {
				at.path = joinPath(at.path, rest)
			}
			return at
		}
		cur = next
	}
	return cur.pos
}

// splitPath splits `a.b[2]["c.d"].e` into "a", "b", "[2]", "c.d", "e":
// index segments keep their brackets, quoted keys lose their quotes.
func splitPath(path string) []string {
	var segs []string
	for path != "" {
		switch {
		case path[0] == '.':
			path = path[1:]
		case strings.HasPrefix(path, `["`):
			// Quoted key: find the closing quote that strconv accepts.
			end := -1
			for i := 2; i < len(path); i++ {
				if path[i] == '"' && path[i-1] != '\\' {
					end = i
					break
				}
			}
			if end < 0 {
				return append(segs, path)
			}
			key, err := strconv.Unquote(path[1 : end+1])
			if err != nil {
				key = path[2:end]
			}
			segs = append(segs, key)
			path = strings.TrimPrefix(path[end+1:], "]")
		case path[0] == '[':
			j := strings.IndexByte(path, ']')
			if j < 0 {
				return append(segs, path)
			}
			segs = append(segs, path[:j+1])
			path = path[j+1:]
		default:
			j := strings.IndexAny(path, ".[")
			if j < 0 {
				return append(segs, path)
			}
			segs = append(segs, path[:j])
			path = path[j:]
		}
	}
	return segs
}

// maxNodes bounds alias expansion ("billion laughs") while converting YAML.
const maxNodes = 200000

// maxDepth bounds nesting, for the same reason.
const maxDepth = 64

// yamlLineRE finds the line number yaml.v3 puts in its syntax errors.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses one YAML document into a node tree. Syntax problems,
// duplicate keys and an empty file are reported to ps; the tree is nil when
// the file could not be parsed at all.
func parseYAML(file string, data []byte, ps *problems) *node {
	top := pos{file: file, line: 1}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.add(top, "file is empty (a gateway file needs at least a gateway: section)")
			return nil
		}
		at := syntaxPos(file, err)
		ps.add(at, "invalid YAML: %s", syntaxMessage(err, lineOf(data, at.line)))
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		ps.add(pos{file: file, line: extra.Line}, "more than one YAML document (remove the second ---)")
	} else if !errors.Is(err, io.EOF) {
		at := syntaxPos(file, err)
		ps.add(at, "invalid YAML: %s", syntaxMessage(err, lineOf(data, at.line)))
		return nil
	}
	if len(doc.Content) == 0 {
		ps.add(top, "file is empty")
		return nil
	}
	c := converter{file: file, ps: ps}
	return c.convert(doc.Content[0], pos{file: file, line: doc.Content[0].Line, col: doc.Content[0].Column}, 0)
}

func syntaxPos(file string, err error) pos {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return pos{file: file, line: line}
	}
	return pos{file: file, line: 1}
}

// syntaxMessage shortens a yaml.v3 error and adds a hint for the most
// common cause, a tab in the indentation of the offending line.
func syntaxMessage(err error, line string) string {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		msg = m[2]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
	if strings.Contains(indent, "\t") || strings.Contains(msg, "tab") {
		msg += " (indent with spaces, not tabs)"
	}
	return msg
}

// lineOf returns line n (1-based) of data, or "".
func lineOf(data []byte, n int) string {
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return lines[n-1]
}

// converter turns yaml.v3 nodes into our nodes, resolving aliases and
// merge keys (<<) and refusing duplicate keys.
type converter struct {
	file  string
	ps    *problems
	count int
	deep  bool // depth or size limit hit; reported once
}

func (c *converter) convert(y *yaml.Node, at pos, depth int) *node {
	c.count++
	if c.count > maxNodes || depth > maxDepth {
		if !c.deep {
			c.deep = true
			c.ps.add(at, "document too large or too deeply nested (aliases expand to more than %d values)", maxNodes)
		}
		return &node{kind: nullNode, pos: at}
	}
	switch y.Kind {
	case yaml.AliasNode:
		if y.Alias == nil {
			return &node{kind: nullNode, pos: at}
		}
		return c.convert(y.Alias, at, depth+1)
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return &node{kind: nullNode, pos: at}
		}
		return c.convert(y.Content[0], at, depth+1)
	case yaml.SequenceNode:
		n := &node{kind: seqNode, pos: at}
		for i, item := range y.Content {
			ip := pos{file: c.file, line: item.Line, col: item.Column, path: indexPath(at.path, i)}
			n.items = append(n.items, c.convert(item, ip, depth+1))
		}
		return n
	case yaml.MappingNode:
		n := &node{kind: mapNode, pos: at}
		seen := map[string]int{}
		var merges []*yaml.Node
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			kp := pos{file: c.file, line: k.Line, col: k.Column}
			if k.Kind != yaml.ScalarNode {
				kp.path = at.path
				c.ps.add(kp, "a key must be a plain word, not %s", kindOfYAML(k))
				continue
			}
			if k.ShortTag() == "!!merge" {
				merges = append(merges, v)
				continue
			}
			kp.path = joinPath(at.path, k.Value)
			if line, dup := seen[k.Value]; dup {
				c.ps.add(kp, "duplicate key (first set on line %d)", line)
				continue
			}
			seen[k.Value] = k.Line
			n.pairs = append(n.pairs, pair{key: k.Value, val: c.convert(v, kp, depth+1)})
		}
		// Merge keys: keys of the merged mappings that the mapping does not set itself.
		for _, m := range merges {
			srcs := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				srcs = m.Content
			}
			for _, s := range srcs {
				mp := pos{file: c.file, line: s.Line, col: s.Column, path: at.path}
				mn := c.convert(s, mp, depth+1)
				if mn.kind != mapNode {
					c.ps.add(mp, "<< must merge a mapping, got %s", mn.kind)
					continue
				}
				for _, p := range mn.pairs {
					if _, ok := seen[p.key]; ok {
						continue
					}
					seen[p.key] = p.val.pos.line
					rebase(p.val, joinPath(at.path, p.key))
					n.pairs = append(n.pairs, p)
				}
			}
		}
		return n
	case yaml.ScalarNode:
		n := &node{text: y.Value, pos: at}
		switch y.ShortTag() {
		case "!!null":
			n.kind = nullNode
		case "!!bool":
			n.kind = boolNode
		case "!!int":
			n.kind = intNode
		case "!!float":
			n.kind = floatNode
		default:
			n.kind = strNode
		}
		return n
	}
	return &node{kind: nullNode, pos: at}
}

// rebase rewrites the paths of a subtree copied in by a merge key.
func rebase(n *node, path string) {
	n.pos.path = path
	for _, p := range n.pairs {
		rebase(p.val, joinPath(path, p.key))
	}
	for i, it := range n.items {
		rebase(it, indexPath(path, i))
	}
}

func kindOfYAML(y *yaml.Node) string {
	switch y.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a value"
}

// parseJSON parses a JSON document into a node tree whose paths start with
// prefix ("desired.config"). Problems go to ps; nil means unusable.
func parseJSON(prefix string, data []byte, ps *problems) *node {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	top := pos{path: prefix}
	n, err := jsonValue(dec, top, 0)
	if err != nil {
		ps.add(top, "invalid JSON: %v", err)
		return nil
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		ps.add(top, "invalid JSON: data after the top-level value")
		return nil
	}
	return n
}

// jsonValue reads one JSON value from dec, keeping key order and refusing
// duplicate keys.
func jsonValue(dec *json.Decoder, at pos, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d at %s", maxDepth, at.path)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: mapNode, pos: at}
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is not a string at %s", at.path)
				}
				kp := at.child(key)
				if seen[key] {
					return nil, fmt.Errorf("duplicate key %s", kp.path)
				}
				seen[key] = true
				v, err := jsonValue(dec, kp, depth+1)
				if err != nil {
					return nil, err
				}
				n.pairs = append(n.pairs, pair{key: key, val: v})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &node{kind: seqNode, pos: at}
			for i := 0; dec.More(); i++ {
				ip := at
				ip.path = indexPath(at.path, i)
				v, err := jsonValue(dec, ip, depth+1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		return &node{kind: strNode, text: t, pos: at}, nil
	case json.Number:
		k := intNode
		if strings.ContainsAny(t.String(), ".eE") {
			k = floatNode
		}
		return &node{kind: k, text: t.String(), pos: at}, nil
	case bool:
		return &node{kind: boolNode, text: strconv.FormatBool(t), pos: at}, nil
	case nil:
		return &node{kind: nullNode, pos: at}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// toAny converts a node into plain Go values: map[string]any, []any, string,
// int64, float64, bool or nil.
func toAny(n *node) any {
	if n == nil {
		return nil
	}
	switch n.kind {
	case mapNode:
		m := make(map[string]any, len(n.pairs))
		for _, p := range n.pairs {
			m[p.key] = toAny(p.val)
		}
		return m
	case seqNode:
		s := make([]any, len(n.items))
		for i, it := range n.items {
			s[i] = toAny(it)
		}
		return s
	case intNode:
		if i, err := strconv.ParseInt(strings.ReplaceAll(n.text, "_", ""), 0, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(strings.ReplaceAll(n.text, "_", ""), 0, 64); err == nil {
			return u
		}
		return n.text
	case floatNode:
		if f, ok := parseFloat(n.text); ok {
			return f
		}
		return n.text
	case boolNode:
		return strings.EqualFold(n.text, "true")
	case strNode:
		return n.text
	}
	return nil
}

// parseFloat accepts YAML and JSON float spellings, without NaN and infinities.
func parseFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	if err != nil || f != f || f > 1.7976931348623157e308 || f < -1.7976931348623157e308 {
		return 0, false
	}
	return f, true
}

// fromAny builds a node (without positions beyond path) from plain values.
func fromAny(v any, at pos) *node {
	switch t := v.(type) {
	case nil:
		return &node{kind: nullNode, pos: at}
	case map[string]any:
		n := &node{kind: mapNode, pos: at}
		for _, k := range sortedKeys(t) {
			n.pairs = append(n.pairs, pair{key: k, val: fromAny(t[k], at.child(k))})
		}
		return n
	case []any:
		n := &node{kind: seqNode, pos: at}
		for i, it := range t {
			ip := at
			ip.path = indexPath(at.path, i)
			n.items = append(n.items, fromAny(it, ip))
		}
		return n
	case string:
		return &node{kind: strNode, text: t, pos: at}
	case bool:
		return &node{kind: boolNode, text: strconv.FormatBool(t), pos: at}
	case int:
		return &node{kind: intNode, text: strconv.Itoa(t), pos: at}
	case int64:
		return &node{kind: intNode, text: strconv.FormatInt(t, 10), pos: at}
	case uint64:
		return &node{kind: intNode, text: strconv.FormatUint(t, 10), pos: at}
	case float64:
		return &node{kind: floatNode, text: strconv.FormatFloat(t, 'g', -1, 64), pos: at}
	case json.Number:
		k := intNode
		if strings.ContainsAny(t.String(), ".eE") {
			k = floatNode
		}
		return &node{kind: k, text: t.String(), pos: at}
	}
	return &node{kind: strNode, text: fmt.Sprint(v), pos: at}
}
