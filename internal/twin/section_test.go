package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

var (
	t0 = time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)
	t1 = time.Date(2024, 1, 2, 4, 4, 6, 500, time.FixedZone("CET", 3600)) // 03:04:06.0000005Z
)

func mustDecode(t testing.TB, s string) map[string]any {
	t.Helper()
	m, err := DecodeObject([]byte(s))
	if err != nil {
		t.Fatalf("DecodeObject(%s): %v", s, err)
	}
	return m
}

// build returns a section of kind k holding props, stamped at t0, version 2.
func build(t testing.TB, k Kind, props string) Section {
	t.Helper()
	s, err := NewSection(k, t0).Replace(k, mustDecode(t, props), t0)
	if err != nil {
		t.Fatalf("Replace(%s): %v", props, err)
	}
	return s
}

// expandMeta turns @0/@1 into the metadata fields stamped at t0 (version 2)
// and t1 (version 3) for kind k.
func expandMeta(k Kind, s string) string {
	f := func(ts time.Time, ver string) string {
		out := `"$lastUpdated":"` + Timestamp(ts) + `"`
		if k == Desired {
			out += `,"$lastUpdatedVersion":` + ver
		}
		return out
	}
	return strings.NewReplacer("@0", f(t0, "2"), "@1", f(t1, "3")).Replace(s)
}

func TestTimestamp(t *testing.T) {
	if got, want := Timestamp(t0), "2024-01-02T03:04:05.1234567Z"; got != want {
		t.Errorf("Timestamp(t0) = %s, want %s", got, want)
	}
	if got, want := Timestamp(t1), "2024-01-02T03:04:06.0000005Z"; got != want {
		t.Errorf("Timestamp(t1) = %s, want %s (UTC)", got, want)
	}
}

func TestPatch(t *testing.T) {
	cases := []struct {
		name, base, patch string
		wantProps         string
		wantMeta          string // with @0/@1 placeholders
	}{
		{"add leaf", `{"a":1}`, `{"b":2}`,
			`{"a":1,"b":2}`, `{@1,"a":{@0},"b":{@1}}`},
		{"replace leaf", `{"a":1,"x":true}`, `{"a":"five"}`,
			`{"a":"five","x":true}`, `{@1,"a":{@1},"x":{@0}}`},
		{"nested merge stamps every ancestor", `{"a":{"b":1,"c":{"d":2}},"e":3}`, `{"a":{"c":{"f":4}}}`,
			`{"a":{"b":1,"c":{"d":2,"f":4}},"e":3}`,
			`{@1,"a":{@1,"b":{@0},"c":{@1,"d":{@0},"f":{@1}}},"e":{@0}}`},
		{"null deletes leaf", `{"a":{"b":1,"c":2}}`, `{"a":{"b":null}}`,
			`{"a":{"c":2}}`, `{@1,"a":{@1,"c":{@0}}}`},
		{"null deletes object", `{"a":{"b":{"c":1}},"x":1}`, `{"a":null}`,
			`{"x":1}`, `{@1,"x":{@0}}`},
		{"null on missing key is a no-op", `{"x":1}`, `{"nope":null,"x":{"deeper":null}}`,
			`{"x":{}}`, `{@1,"x":{@1}}`},
		{"object replaces scalar, nulls dropped", `{"a":1}`, `{"a":{"b":{"c":null,"d":1}}}`,
			`{"a":{"b":{"d":1}}}`, `{@1,"a":{@1,"b":{@1,"d":{@1}}}}`},
		{"scalar replaces object", `{"a":{"b":1}}`, `{"a":"s"}`,
			`{"a":"s"}`, `{@1,"a":{@1}}`},
		{"array replaced wholesale, nulls inside kept", `{"a":[1,2,3]}`, `{"a":[{"k":null},null]}`,
			`{"a":[{"k":null},null]}`, `{@1,"a":{@1}}`},
		{"empty patch", `{"a":{"b":1}}`, `{}`,
			`{"a":{"b":1}}`, `{@1,"a":{@0,"b":{@0}}}`},
		{"empty object merges nothing but is touched", `{"a":{"b":1}}`, `{"a":{}}`,
			`{"a":{"b":1}}`, `{@1,"a":{@1,"b":{@0}}}`},
		{"same value still stamped", `{"a":1}`, `{"a":1}`,
			`{"a":1}`, `{@1,"a":{@1}}`},
		{"into empty section", `{}`, `{"a":{"b":[true]},"c":null}`,
			`{"a":{"b":[true]}}`, `{@1,"a":{@1,"b":{@1}}}`},
	}
	for _, k := range []Kind{Tags, Desired, Reported} {
		for _, c := range cases {
			t.Run(k.String()+"/"+c.name, func(t *testing.T) {
				s := build(t, k, c.base)
				before := s.Clone()
				got, err := s.Patch(k, mustDecode(t, c.patch), t1)
				if err != nil {
					t.Fatalf("Patch(%s) onto %s: %v", c.patch, c.base, err)
				}
				if !reflect.DeepEqual(s, before) {
					t.Errorf("Patch modified its receiver: %v, was %v", s, before)
				}
				if got.Version != 3 {
					t.Errorf("Version = %d, want 3", got.Version)
				}
				if want := mustDecode(t, c.wantProps); !reflect.DeepEqual(got.Props, want) {
					t.Errorf("Patch(%s) onto %s: props = %v, want %v", c.patch, c.base, got.Props, want)
				}
				if k == Tags {
					if got.Meta != nil {
						t.Errorf("tags have metadata: %v", got.Meta)
					}
					return
				}
				if want := mustDecode(t, expandMeta(k, c.wantMeta)); !reflect.DeepEqual(got.Meta, want) {
					gj, _ := json.Marshal(got.Meta)
					wj, _ := json.Marshal(want)
					t.Errorf("Patch(%s) onto %s: metadata\n got %s\nwant %s", c.patch, c.base, gj, wj)
				}
				if err := checkMeta(k, got); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

func TestPatchVersionAlwaysBumps(t *testing.T) {
	s := NewSection(Reported, t0)
	for i := int64(2); i <= 5; i++ {
		var err error
		if s, err = s.Patch(Reported, map[string]any{}, t1); err != nil {
			t.Fatal(err)
		}
		if s.Version != i {
			t.Fatalf("Version = %d after %d empty patches, want %d", s.Version, i-1, i)
		}
	}
}

func TestPatchZeroSection(t *testing.T) {
	got, err := Section{}.Patch(Desired, map[string]any{"a": json.Number("1")}, t1)
	if err != nil {
		t.Fatal(err)
	}
	want := Section{
		Props:   map[string]any{"a": json.Number("1")},
		Meta:    mustDecode(t, strings.ReplaceAll(expandMeta(Desired, `{@1,"a":{@1}}`), ":3", ":1")),
		Version: 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Section{}.Patch = %#v, want %#v", got, want)
	}
}

func TestPatchNormalizesGoNumbers(t *testing.T) {
	got, err := NewSection(Reported, t0).Patch(Reported, map[string]any{
		"i": 3, "i64": int64(-7), "u": uint16(9), "f": 2.5, "f32": float32(0.1), "arr": []any{1, 1e21},
	}, t1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": json.Number("3"), "i64": json.Number("-7"), "u": json.Number("9"),
		"f": json.Number("2.5"), "f32": json.Number("0.1"), "arr": []any{json.Number("1"), json.Number("1e+21")}}
	if !reflect.DeepEqual(got.Props, want) {
		t.Errorf("props = %#v, want %#v", got.Props, want)
	}
}

func TestPatchDoesNotAlias(t *testing.T) {
	s := build(t, Reported, `{"a":{"x":1},"keep":{"k":1}}`)
	patch := mustDecode(t, `{"a":{"y":[1,{"z":2}]},"b":{"c":"d"}}`)
	r1, err := s.Patch(Reported, patch, t1)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := r1.Clone()
	// Mutating the patch afterwards must not reach the result.
	patch["a"].(map[string]any)["y"].([]any)[1].(map[string]any)["z"] = "changed"
	patch["b"].(map[string]any)["c"] = "changed"
	if !reflect.DeepEqual(r1, snapshot) {
		t.Errorf("result aliases the patch: %v", r1.Props)
	}
	// A second patch of the same receiver is independent of the first.
	r2, err := s.Patch(Reported, mustDecode(t, `{"a":{"w":3}}`), t1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r2.Props["a"].(map[string]any)["y"]; ok {
		t.Errorf("second patch sees the first: %v", r2.Props)
	}
	if !reflect.DeepEqual(r1, snapshot) {
		t.Errorf("second patch changed the first result: %v", r1.Props)
	}
}

func TestPatchErrorsApplyNothing(t *testing.T) {
	cases := []struct {
		name    string
		kind    Kind
		base    map[string]any
		patch   map[string]any
		wantErr string
	}{
		{"tags over size after merge", Tags, bigDoc(2, 4000), map[string]any{"c": strings.Repeat("x", 200)},
			"twin: tags exceeds 8192 bytes (is 8205)"},
		{"desired over size after merge", Desired, bigDoc(8, 3900), map[string]any{"k8": strings.Repeat("x", 3900), "k0": nil},
			""}, // deleting k0 keeps it under: this one succeeds
		{"reported over size after merge", Reported, bigDoc(8, 4000), map[string]any{"k8": strings.Repeat("x", 4000), "k9": strings.Repeat("x", 4000), "k0": "short"},
			"twin: reported exceeds 32768 bytes (is 36025)"},
		{"value over 4 KB after merge", Reported, map[string]any{"a": map[string]any{"x": strings.Repeat("x", 3000)}},
			map[string]any{"a": map[string]any{"y": strings.Repeat("y", 3000)}, "ok": true},
			"twin: property value size 6002 exceeds 4096 at properties.reported.a"},
		{"depth 11", Desired, map[string]any{"ok": true}, map[string]any{"fine": json.Number("1"), "n": nested(10, map[string]any{"x": true})},
			"twin: nesting depth 11 exceeds 10 at properties.desired.n.a1.a2.a3.a4.a5.a6.a7.a8.a9.a10"},
		{"bad key deep in patch", Reported, map[string]any{"ok": true}, map[string]any{"a": json.Number("1"), "b": map[string]any{"c.d": true}},
			`twin: key "c.d" contains '.' at properties.reported.b`},
		{"root $version", Desired, map[string]any{"ok": true}, map[string]any{"a": json.Number("1"), "$version": json.Number("9")},
			`twin: key "$version" is read-only and may not be set at properties.desired`},
		{"big integer", Reported, map[string]any{"ok": true}, map[string]any{"a": json.Number("1"), "i": json.Number("4503599627370496")},
			"twin: integer 4503599627370496 outside [-4503599627370496, 4503599627370495] at properties.reported.i"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSection(c.kind, t0).Replace(c.kind, c.base, t0)
			if err != nil {
				t.Fatalf("Replace: %v", err)
			}
			before := s.Clone()
			patchBefore := cloneValue(c.patch)
			got, err := s.Patch(c.kind, c.patch, t1)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Patch: %v", err)
				}
				return
			}
			if err == nil || err.Error() != c.wantErr {
				t.Fatalf("Patch error\n got %v\nwant %s", err, c.wantErr)
			}
			var le *LimitError
			if !errors.As(err, &le) {
				t.Errorf("error %T is not a *LimitError", err)
			}
			if !reflect.DeepEqual(got, Section{}) {
				t.Errorf("Patch returned %v with its error, want the zero Section", got)
			}
			if !reflect.DeepEqual(s, before) {
				t.Errorf("failed Patch changed the receiver:\n got %v\nwant %v", s, before)
			}
			if !reflect.DeepEqual(c.patch, patchBefore) {
				t.Errorf("failed Patch changed the patch")
			}
		})
	}
}

func TestReplace(t *testing.T) {
	cases := []struct {
		name      string
		kind      Kind
		doc       string
		wantProps string
		wantMeta  string
		wantErr   string
	}{
		{"desired rebuilt", Desired, `{"a":{"b":1,"gone":null},"c":[null],"d":null}`,
			`{"a":{"b":1},"c":[null]}`, `{@1,"a":{@1,"b":{@1}},"c":{@1}}`, ""},
		{"reported rebuilt", Reported, `{"x":"y"}`, `{"x":"y"}`, `{@1,"x":{@1}}`, ""},
		{"tags", Tags, `{"loc":{"building":"43"}}`, `{"loc":{"building":"43"}}`, "", ""},
		{"empty", Desired, `{}`, `{}`, `{@1}`, ""},
		{"PUT with $version", Desired, `{"a":1,"$version":3}`, "", "",
			`twin: key "$version" is read-only and may not be set at properties.desired`},
		{"PUT over size", Tags, `{"a":"` + strings.Repeat("x", 4000) + `","b":"` + strings.Repeat("x", 4000) + `","c":"` + strings.Repeat("x", 200) + `"}`,
			"", "", "twin: tags exceeds 8192 bytes (is 8203)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := build(t, c.kind, `{"old":{"stuff":true},"a":{"z":0}}`)
			before := s.Clone()
			got, err := s.Replace(c.kind, mustDecode(t, c.doc), t1)
			if !reflect.DeepEqual(s, before) {
				t.Errorf("Replace modified its receiver")
			}
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("Replace error %v, want %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != 3 {
				t.Errorf("Version = %d, want 3", got.Version)
			}
			if want := mustDecode(t, c.wantProps); !reflect.DeepEqual(got.Props, want) {
				t.Errorf("props = %v, want %v", got.Props, want)
			}
			if c.kind == Tags {
				if got.Meta != nil {
					t.Errorf("tags have metadata %v", got.Meta)
				}
				return
			}
			if want := mustDecode(t, expandMeta(c.kind, c.wantMeta)); !reflect.DeepEqual(got.Meta, want) {
				t.Errorf("metadata = %v, want %v", got.Meta, want)
			}
		})
	}
}

func TestNewSection(t *testing.T) {
	cases := []struct {
		kind Kind
		want Section
	}{
		{Tags, Section{Props: map[string]any{}, Version: 1}},
		{Desired, Section{Props: map[string]any{}, Meta: map[string]any{KeyLastUpdated: "2024-01-02T03:04:05.1234567Z"}, Version: 1}},
		{Reported, Section{Props: map[string]any{}, Meta: map[string]any{KeyLastUpdated: "2024-01-02T03:04:05.1234567Z"}, Version: 1}},
	}
	for _, c := range cases {
		t.Run(c.kind.String(), func(t *testing.T) {
			if got := NewSection(c.kind, t0); !reflect.DeepEqual(got, c.want) {
				t.Errorf("NewSection(%v) = %#v, want %#v", c.kind, got, c.want)
			}
		})
	}
}

func TestClone(t *testing.T) {
	s := build(t, Desired, `{"a":{"b":[1,{"c":2}]}}`)
	c := s.Clone()
	if !reflect.DeepEqual(s, c) {
		t.Fatalf("Clone = %v, want %v", c, s)
	}
	c.Props["a"].(map[string]any)["b"].([]any)[1].(map[string]any)["c"] = "x"
	c.Meta["a"].(map[string]any)[KeyLastUpdated] = "x"
	if reflect.DeepEqual(s, c) {
		t.Fatal("Clone shares maps with the original")
	}
	if z := (Section{}).Clone(); !reflect.DeepEqual(z, Section{}) {
		t.Errorf("zero Clone = %#v", z)
	}
}

func TestDocumentGolden(t *testing.T) {
	desired := build(t, Desired, `{"telemetryConfig":{"sendFrequency":"5m","sensors":["t","p"]},"existingProperty":"x","otherOldProperty":1}`)
	desired, err := desired.Patch(Desired, mustDecode(t,
		`{"newProperty":{"nestedProperty":"newValue"},"existingProperty":"otherNewValue","otherOldProperty":null}`), t1)
	if err != nil {
		t.Fatal(err)
	}
	reported := build(t, Reported, `{"batteryLevel":55,"firmware":{"version":"1.2.3","pending":null}}`)
	reported, err = reported.Patch(Reported, mustDecode(t, `{"batteryLevel":54.5,"firmware":{"state":"ok"}}`), t1)
	if err != nil {
		t.Fatal(err)
	}
	tags := build(t, Tags, `{"deploymentLocation":{"building":"43","floor":"1"}}`)
	cases := []struct {
		name     string
		s        Section
		kind     Kind
		withMeta bool
	}{
		{"desired_meta", desired, Desired, true},
		{"desired_nometa", desired, Desired, false},
		{"reported_meta", reported, Reported, true},
		{"tags", tags, Tags, true},
		{"new_reported", NewSection(Reported, t0), Reported, true},
		{"new_desired_nometa", NewSection(Desired, t0), Desired, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := json.MarshalIndent(c.s.Document(c.kind, c.withMeta), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "document_"+c.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Document(%v, %v) differs from %s:\n%s", c.kind, c.withMeta, path, got)
			}
			// The rendering must not disturb the section.
			if _, ok := c.s.Props[KeyVersion]; ok {
				t.Error("Document wrote into Props")
			}
		})
	}
}
