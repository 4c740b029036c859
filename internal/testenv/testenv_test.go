package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that notes how the test would end instead of
// ending it.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestRequireTool(t *testing.T) {
	tests := []struct {
		name     string
		tool     string
		ci       bool
		wantPath bool
		wantEnd  string // "", "skip" or "fail"
	}{
		{name: "present", tool: "sh", wantPath: true},
		{name: "present under CI", tool: "sh", ci: true, wantPath: true},
		{name: "missing locally skips", tool: "drover-no-such-tool", wantEnd: "skip"},
		{name: "missing under CI fails", tool: "drover-no-such-tool", ci: true, wantEnd: "fail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			p := requireTool(r, tc.ci, tc.tool, "apt-get install it")
			if (p != "") != tc.wantPath {
				t.Errorf("requireTool(%q, ci=%v) = %q", tc.tool, tc.ci, p)
			}
			checkEnd(t, r, tc.wantEnd, tc.tool)
		})
	}
}

func TestRequirePython(t *testing.T) {
	python := RequireTool(t, "python3", "Debian python3")
	tests := []struct {
		name    string
		modules []string
		ci      bool
		wantEnd string
	}{
		{name: "present", modules: []string{"json", "os.path"}},
		{name: "missing locally skips", modules: []string{"json", "drover_no_such_module"}, wantEnd: "skip"},
		{name: "missing under CI fails", modules: []string{"drover_no_such_module"}, ci: true, wantEnd: "fail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			requirePython(r, tc.ci, python, "pip it", tc.modules...)
			checkEnd(t, r, tc.wantEnd, "drover_no_such_module")
		})
	}
}

func checkEnd(t *testing.T, r *recorder, want, missing string) {
	t.Helper()
	switch want {
	case "":
		if r.skipped != "" || r.failed != "" {
			t.Errorf("skipped %q, failed %q; want neither", r.skipped, r.failed)
		}
	case "skip":
		if r.failed != "" || !strings.Contains(r.skipped, missing) {
			t.Errorf("skipped %q, failed %q; want a skip naming %s", r.skipped, r.failed, missing)
		}
	case "fail":
		if r.skipped != "" || !strings.Contains(r.failed, missing) || !strings.Contains(r.failed, "CI=true") {
			t.Errorf("skipped %q, failed %q; want a failure naming %s and CI", r.skipped, r.failed, missing)
		}
	}
}
