package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// memFiles is an in-memory file system for the loader.
type memFiles map[string]string

func (m memFiles) ReadFile(path string) ([]byte, error) {
	s, ok := m[filepath.Clean(path)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	return []byte(s), nil
}

func (m memFiles) ReadDir(dir string) ([]string, error) {
	var names []string
	for p := range m {
		if filepath.Dir(p) == filepath.Clean(dir) {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names, nil
}

// testProfiles are profiles every in-memory case can use.
var testProfiles = memFiles{
	"profiles/pump.yaml": `name: pump
plugin: modbus
points:
  - { name: temperature, table: holding, address: 0, type: int16 }
  - { name: running, table: coil, address: 0, type: bool }
in_use: { point: running, equals: true }
`,
	"profiles/mcu.yaml": `name: mcu
plugin: serial
points:
  - { name: uptime, type: uint32 }
`,
}

// loadString loads gateway.yaml text (as "gw.yaml") with testProfiles
// and extra files.
func loadString(t *testing.T, text string, extra memFiles) (*Config, []Problem) {
	t.Helper()
	fsys := memFiles{"gw.yaml": text}
	for k, v := range testProfiles {
		fsys[k] = v
	}
	for k, v := range extra {
		fsys[k] = v
	}
	c, ps := load(fsys, "gw.yaml")
	return c, ps.sorted()
}

func problemsText(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o755) }

func reflectTypeOfConfig() reflect.Type { return reflect.TypeOf(Config{}) }
