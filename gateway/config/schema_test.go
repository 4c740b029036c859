package config

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const (
	gatewaySchema = "../../docs/schema/gateway.schema.json"
	profileSchema = "../../docs/schema/profile.schema.json"
	configDoc     = "../../docs/configuration.md"
)

// keyPaths lists every key a struct type accepts, as doc-style paths:
// "gateway.id", "buses[].timeout", "plugins.restart_backoff.min". Structs
// nested in a struct are descended into; maps are leaves.
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for _, f := range fieldsOf(t) {
		if f.inline {
			continue
		}
		path := f.key
		if prefix != "" {
			path = prefix + "." + f.key
		}
		ft := t.Field(f.index).Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, keyPaths(ft.Elem(), path+"[]")...)
		case ft.Kind() == reflect.Struct && ft != durationType:
			out = append(out, keyPaths(ft, path)...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// schemaPaths lists the same paths from a JSON schema, and records for each
// object whether it allows extra properties.
func schemaPaths(t *testing.T, root map[string]any, node map[string]any, prefix string, open map[string]bool) []string {
	t.Helper()
	node = resolveRef(t, root, node)
	var out []string
	props, _ := node["properties"].(map[string]any)
	ap, hasAP := node["additionalProperties"]
	open[prefix] = !(hasAP && ap == false)
	for key, v := range props {
		path := key
		if prefix != "" {
			path = prefix + "." + key
		}
		child := resolveRef(t, root, v.(map[string]any))
		switch {
		case child["type"] == "array" && isObjectSchema(resolveRef(t, root, child["items"].(map[string]any))):
			out = append(out, schemaPaths(t, root, child["items"].(map[string]any), path+"[]", open)...)
		case isObjectSchema(child) && child["properties"] != nil:
			out = append(out, schemaPaths(t, root, child, path, open)...)
		default:
			out = append(out, path)
		}
	}
	return out
}

func isObjectSchema(s map[string]any) bool { return s["type"] == "object" }

func resolveRef(t *testing.T, root, node map[string]any) map[string]any {
	ref, ok := node["$ref"].(string)
	if !ok {
		return node
	}
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	if !ok {
		t.Fatalf("unsupported $ref %q", ref)
	}
	def, ok := root["$defs"].(map[string]any)[name].(map[string]any)
	if !ok {
		t.Fatalf("missing $defs/%s", name)
	}
	return def
}

func readSchema(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("%s: $schema is %v", path, s["$schema"])
	}
	return s
}

// openStructs lists the doc-style paths of structs that take plugin keys
// (an inline map), which must be the schema objects allowing extra keys.
func openStructs(t reflect.Type, prefix string, out map[string]bool) {
	inline := false
	for _, f := range fieldsOf(t) {
		if f.inline {
			inline = true
			continue
		}
		ft := t.Field(f.index).Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		path := f.key
		if prefix != "" {
			path = prefix + "." + f.key
		}
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			openStructs(ft.Elem(), path+"[]", out)
		case ft.Kind() == reflect.Struct && ft != durationType:
			openStructs(ft, path, out)
		}
	}
	out[prefix] = inline
}

// TestSchemaMatchesStructs keeps the JSON schemas and the Go structs in
// step: the same keys, and additionalProperties false exactly where the Go
// decoder refuses unknown keys.
func TestSchemaMatchesStructs(t *testing.T) {
	tests := []struct {
		schema string
		typ    reflect.Type
	}{
		{gatewaySchema, reflect.TypeOf(Config{})},
		{profileSchema, reflect.TypeOf(Profile{})},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			root := readSchema(t, tt.schema)
			open := map[string]bool{}
			got := schemaPaths(t, root, root, "", open)
			want := keyPaths(tt.typ, "")
			assertSameSet(t, "schema", got, "Go structs", want)
			wantOpen := map[string]bool{}
			openStructs(tt.typ, "", wantOpen)
			for path, inline := range wantOpen {
				if o, ok := open[path]; ok && o != inline {
					t.Errorf("%q: schema allows extra keys = %v, Go decoder = %v", path, o, inline)
				}
			}
		})
	}
}

var docKeyRE = regexp.MustCompile("(?m)^\\| `([a-z_\\[\\].]+)` \\|")

// TestDocCoversKeys checks that docs/configuration.md has a table row for
// every key, and no row for a key that does not exist.
func TestDocCoversKeys(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	gw, prof, ok := strings.Cut(doc, "## Device profiles")
	if !ok {
		t.Fatal("no '## Device profiles' section")
	}
	prof, _, _ = strings.Cut(prof, "\n## ")
	rows := func(s string) []string {
		var out []string
		for _, m := range docKeyRE.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		return out
	}
	assertSameSet(t, "configuration.md (gateway.yaml)", rows(gw), "Go structs", keyPaths(reflect.TypeOf(Config{}), ""))
	// Map-valued profile keys (methods, identify, quirks) are leaves; in_use is a struct.
	assertSameSet(t, "configuration.md (profiles)", rows(prof), "Go structs", keyPaths(reflect.TypeOf(Profile{}), ""))
}

func assertSameSet(t *testing.T, aName string, a []string, bName string, b []string) {
	t.Helper()
	sort.Strings(a)
	sort.Strings(b)
	for _, k := range a {
		if !slices.Contains(b, k) {
			t.Errorf("%s has %q, missing from %s", aName, k, bName)
		}
	}
	for _, k := range b {
		if !slices.Contains(a, k) {
			t.Errorf("%s: missing %q (present in %s)", aName, k, bName)
		}
	}
}
