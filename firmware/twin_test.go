package firmware

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func desiredJSON(t *testing.T, edit func(map[string]any)) []byte {
	t.Helper()
	s, err := Sign(testManifest(), seedKey())
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(s)
	d := map[string]any{
		"version": "2.1.0", "updateId": map[string]any{"provider": "acme", "name": "pump-fw", "version": "2.1.0"},
		"url": "/firmware/content/" + s.File.SHA256, "sha256": s.File.SHA256, "size": 5,
		"manifest": json.RawMessage(doc), "deployment": "fw-1", "futureKey": true,
	}
	if edit != nil {
		edit(d)
	}
	b, _ := json.Marshal(d)
	return b
}

func TestParseDesired(t *testing.T) {
	tg, err := ParseDesired(desiredJSON(t, nil))
	if err != nil {
		t.Fatalf("ParseDesired: %v", err)
	}
	if tg.Deployment != "fw-1" || tg.Manifest.UpdateID.Version != "2.1.0" || !strings.HasPrefix(tg.URL, "/firmware/content/") {
		t.Errorf("target %+v", tg)
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"not an object", func(d map[string]any) { d["size"] = "big" }, "desired.firmware: json"},
		{"no manifest", func(d map[string]any) { delete(d, "manifest") }, "desired.firmware.manifest is missing"},
		{"garbage manifest", func(d map[string]any) { d["manifest"] = map[string]any{"x": 1} }, "desired.firmware.manifest: malformed manifest"},
		{"version differs", func(d map[string]any) { d["version"] = "9.9" }, "desired.firmware.version"},
		{"digest differs", func(d map[string]any) { d["sha256"] = strings.Repeat("0", 64) }, "desired.firmware.sha256"},
		{"size differs", func(d map[string]any) { d["size"] = 6 }, "desired.firmware.size"},
		{"update id differs", func(d map[string]any) {
			d["updateId"] = map[string]any{"provider": "x", "name": "y", "version": "2.1.0"}
		}, "desired.firmware.updateId"},
		{"no url", func(d map[string]any) { delete(d, "url") }, "desired.firmware.url \"\": is missing"},
		{"http url", func(d map[string]any) { d["url"] = "http://hub/x" }, "want a path on the hub"},
		{"relative url", func(d map[string]any) { d["url"] = "firmware/x" }, "want a path on the hub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDesired(desiredJSON(t, tc.edit))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseDesired = %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := ParseDesired([]byte(`[1]`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseDesired(array) = %v", err)
	}
}

func TestParseUpdateRequest(t *testing.T) {
	s, _ := Sign(testManifest(), seedKey())
	doc, _ := json.Marshal(s)
	full := fmt.Sprintf(`{"url":"https://hub.example:8443/firmware/content/%s","sha256":%q,"manifest":%s,"force":true}`, s.File.SHA256, s.File.SHA256, doc)
	v, tg, err := ParseUpdateRequest([]byte(full))
	if err != nil || v != "2.1.0" || tg == nil || !tg.Force {
		t.Fatalf("full request: %q %+v %v", v, tg, err)
	}
	if v, tg, err := ParseUpdateRequest([]byte(`{"version":"2.1.0"}`)); err != nil || v != "2.1.0" || tg != nil {
		t.Errorf("version only: %q %+v %v", v, tg, err)
	}
	for _, tc := range []struct{ payload, want string }{
		{`{}`, "needs version, or url, sha256 and manifest"},
		{`null`, "needs version"},
		{`"2.1.0"`, "firmwareUpdate payload: json"},
		{`{"version":"2.1.0","reboot":true}`, `unknown field "reboot"`},
		{`{"url":"/x","sha256":"` + s.File.SHA256 + `"}`, "firmwareUpdate.manifest is missing"},
		{strings.Replace(full, `"sha256":"`+s.File.SHA256, `"sha256":"`+strings.Repeat("1", 64), 1), "firmwareUpdate.sha256"},
		{strings.Replace(full, `{"url"`, `{"version":"3","url"`, 1), "firmwareUpdate.version"},
	} {
		if _, _, err := ParseUpdateRequest([]byte(tc.payload)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseUpdateRequest(%.80s) = %v, want ErrMalformed mentioning %q", tc.payload, err, tc.want)
		}
	}
}

func TestFailedReport(t *testing.T) {
	r := Failed(fmt.Errorf("flash pump-1: %w", ErrUntrustedKey), time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)))
	b, _ := json.Marshal(r)
	want := `{"status":"failed","result":"untrustedKey","reason":"flash pump-1: manifest signed by an untrusted key","lastUpdate":"2025-12-31T23:00:00Z"}`
	if string(b) != want {
		t.Errorf("Failed report:\n%s\nwant\n%s", b, want)
	}
}

// FuzzParseDesired: desired.firmware comes from the hub's twin, which an
// operator (or a bug) may fill with anything: never a panic, always
// ErrMalformed, and whatever is accepted agrees with its manifest.
func FuzzParseDesired(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"manifest":{},"url":"/x"}`))
	f.Add([]byte(`{"version":"1","url":"https://h/x","sha256":"00","size":1,"manifest":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tg, err := ParseDesired(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseDesired error %v does not wrap ErrMalformed", err)
			}
			return
		}
		var d Desired
		if json.Unmarshal(b, &d) != nil || d.SHA256 != tg.Manifest.File.SHA256 || d.Version != tg.Manifest.UpdateID.Version {
			t.Fatalf("accepted %s with a target that disagrees: %+v", b, tg)
		}
	})
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes -1-2/3", "bytes 1-2", "", "bytes a-b/c", "bytes 0-9/-5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, err := parseContentRange(s)
		if err == nil && (start < 0 || total < -1) {
			t.Fatalf("parseContentRange(%q) = %d, %d", s, start, total)
		}
	})
}
