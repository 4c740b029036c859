package twin

import (
	"encoding/json"
	"fmt"
	"testing"
)

// reported2K returns a reported section of about 2 KB: 24 scalar telemetry
// keys plus nested device-info and 22 per-channel objects.
func reported2K(tb testing.TB) Section {
	props := map[string]any{
		"deviceInfo": map[string]any{
			"manufacturer": "Drover Industrial", "model": "EG-200", "serial": "EG200-000123-XYZ",
			"firmware": map[string]any{"version": "2.4.17", "build": json.Number("20240102"), "channel": "stable"},
		},
	}
	for i := range 24 {
		props[fmt.Sprintf("sensor%02dValue", i)] = json.Number(fmt.Sprintf("%d.%d", 20+i, i))
	}
	for i := range 22 {
		props[fmt.Sprintf("channel%d", i)] = map[string]any{
			"enabled": true, "unit": "degC", "lastError": "none",
			"limits": map[string]any{"lo": json.Number("-40"), "hi": json.Number("125")},
		}
	}
	s, err := NewSection(Reported, t0).Replace(Reported, props, t0)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func benchPatch() map[string]any {
	return map[string]any{
		"sensor00Value": json.Number("21.5"),
		"sensor07Value": json.Number("19.25"),
		"sensor13Value": json.Number("33"),
		"uptimeSeconds": json.Number("86400"),
		"channel3":      map[string]any{"lastError": "overrange", "limits": map[string]any{"hi": json.Number("150")}},
	}
}

func TestBenchmarkFixtureSize(t *testing.T) {
	s := reported2K(t)
	if n := Size(s.Props); n < 1800 || n > 2300 {
		t.Fatalf("benchmark section is %d bytes, want about 2 KB", n)
	}
	b, _ := json.Marshal(s.Props)
	t.Logf("section: Size %d, JSON %d bytes", Size(s.Props), len(b))
}

// BenchmarkPatch is the hub's hot path: a 5-key reported patch into a 2 KB
// reported section.
func BenchmarkPatch(b *testing.B) {
	s := reported2K(b)
	patch := benchPatch()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Patch(Reported, patch, t1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPatchRoundTrip adds what a store does around Patch: decode the
// stored properties and metadata and the incoming patch, patch, and encode
// properties and metadata again with AppendJSON.
func BenchmarkPatchRoundTrip(b *testing.B) {
	s := reported2K(b)
	propsJSON, _ := json.Marshal(s.Props)
	metaJSON, _ := json.Marshal(s.Meta)
	patchJSON, _ := json.Marshal(benchPatch())
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		props, err := DecodeObject(propsJSON)
		if err != nil {
			b.Fatal(err)
		}
		meta, err := DecodeObject(metaJSON)
		if err != nil {
			b.Fatal(err)
		}
		patch, err := DecodeObject(patchJSON)
		if err != nil {
			b.Fatal(err)
		}
		r, err := Section{Props: props, Meta: meta, Version: 7}.Patch(Reported, patch, t1)
		if err != nil {
			b.Fatal(err)
		}
		if buf, err = AppendJSON(buf[:0], r.Props); err != nil {
			b.Fatal(err)
		}
		if buf, err = AppendJSON(buf[:0], r.Meta); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeObject decodes the stored 2 KB section.
func BenchmarkDecodeObject(b *testing.B) {
	propsJSON, _ := json.Marshal(reported2K(b).Props)
	b.SetBytes(int64(len(propsJSON)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeObject(propsJSON); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendJSON encodes the 2 KB section's metadata, the biggest thing
// a store writes per reported patch.
func BenchmarkAppendJSON(b *testing.B) {
	s := reported2K(b)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendJSON(buf[:0], s.Meta); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}
