package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-iot/drover/internal/serviceclient"
)

func TestDeviceImportExportCommands(t *testing.T) {
	c := newCtl(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "fleet.jsonl")
	lines := `{"id":"bulk-1","importMode":"create","tags":{"site":"plant1"}}
{"id":"bulk-2","properties":{"desired":{"interval":30}}}
not json at all
{"id":"bulk-3","capabilities":{"iotEdge":true}}
`
	if err := os.WriteFile(in, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}

	// One bad line: the rest is applied, the bad one is listed, exit 1.
	out, _ := c.fails("1 of 4 lines failed", "device", "import", in)
	for _, want := range []string{"4 lines, 3 applied, 1 failed", "LINE", "IotHubFormatError"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	var d serviceclient.Device
	c.okJSON(&d, "device", "show", "bulk-3")
	if !d.IsEdge() {
		t.Errorf("bulk-3 %+v", d)
	}

	// Re-importing the good lines as updates succeeds; -o json has the job and no errors.
	good := filepath.Join(dir, "good.jsonl")
	os.WriteFile(good, []byte(`{"id":"bulk-1","status":"disabled"}`+"\n"+`{"id":"bulk-2"}`+"\n"), 0o600)
	var res struct {
		Job    serviceclient.ImportExportJob `json:"job"`
		Errors []serviceclient.ImportError   `json:"errors"`
	}
	c.okJSON(&res, "device", "import", good, "--mode", "update")
	if res.Job.Status != "completed" || res.Job.ImportMode != "update" || res.Job.DeviceCount != 2 || len(res.Errors) != 0 {
		t.Fatalf("import -o json: %+v", res)
	}
	c.okJSON(&d, "device", "show", "bulk-1")
	if d.Status != "disabled" {
		t.Errorf("bulk-1 after update: %+v", d)
	}

	// Export to a file: mode 0600, one line per device, keys included.
	exp := filepath.Join(dir, "export.jsonl")
	if out := c.ok("device", "export", exp); !strings.Contains(out, "exported 3 devices to "+exp) {
		t.Errorf("export output %q", out)
	}
	st, err := os.Stat(exp)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", st, err)
	}
	b, _ := os.ReadFile(exp)
	if n := strings.Count(string(b), "\n"); n != 3 || !strings.Contains(string(b), `"primaryKey":"`) {
		t.Errorf("export file (%d lines):\n%s", n, b)
	}

	// Export to stdout without keys.
	out = c.ok("device", "export", "--no-keys")
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		var l serviceclient.ExportImportDevice
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("stdout line %q: %v", sc.Text(), err)
		}
		if k := l.Authentication; k == nil || k.SymmetricKey == nil || k.SymmetricKey.PrimaryKey != "" {
			t.Errorf("--no-keys line has keys: %s", sc.Text())
		}
		n++
	}
	if n != 3 {
		t.Errorf("%d lines on stdout:\n%s", n, out)
	}

	// Delete them all with the export as input.
	c.ok("device", "import", exp, "--mode", "delete")
	var list []serviceclient.Device
	c.okJSON(&list, "device", "list")
	if len(list) != 0 {
		t.Errorf("after delete import: %d devices", len(list))
	}

	// --progress prints progress lines to stderr.
	stdout, stderr, code := c.run(context.Background(), "device", "import", "--progress", good, "--mode", "create")
	if code != 0 || !strings.Contains(stderr, "import ") || !strings.Contains(stderr, "completed 2/2 (100%), 0 failed") {
		t.Errorf("--progress: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}

func TestDeviceImportExportUsage(t *testing.T) {
	c := newCtl(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "x.jsonl")
	os.WriteFile(f, []byte(`{"id":"a"}`), 0o600)
	cases := []struct {
		name, want string
		args       []string
	}{
		{"bad mode", "--mode \"zap\"", []string{"device", "import", f, "--mode", "zap"}},
		{"missing file", "no such file", []string{"device", "import", filepath.Join(dir, "nope.jsonl")}},
		{"no file", "accepts 1 arg", []string{"device", "import"}},
		{"two files", "accepts at most 1 arg", []string{"device", "export", "a", "b"}},
		{"export dir missing", "no such file", []string{"device", "export", filepath.Join(dir, "no", "out.jsonl")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { c.fails(tc.want, tc.args...) })
	}
	// Empty input is refused by the hub.
	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, nil, 0o600)
	c.fails("no lines", "device", "import", empty)
}
