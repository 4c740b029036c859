package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
)

// maxFileSize bounds what Load reads: configuration files are small, and a
// wrong path (a log, a disk image) should fail fast.
const maxFileSize = 4 << 20

// files is how the loader reads; tests substitute an in-memory map.
type files interface {
	ReadFile(path string) ([]byte, error)
	ReadDir(dir string) ([]string, error) // file names in dir
}

type osFiles struct{}

func (osFiles) ReadFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s is %d bytes; a configuration file is at most %d", path, st.Size(), maxFileSize)
	}
	return os.ReadFile(path)
}

func (osFiles) ReadDir(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil
}

// Load reads gateway.yaml at path and every profile its devices name (from
// profiles_dir, relative to the file's directory), applies defaults and
// validates the result. On any problem it returns a *LoadError listing all
// of them with file, line and key path.
func Load(path string) (*Config, error) {
	c, ps := load(osFiles{}, path)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// load runs the whole pipeline and returns whatever could be decoded (nil
// when the file is unreadable or not YAML) with every problem found.
func load(fsys files, path string) (*Config, *problems) {
	ps := &problems{}
	data, err := fsys.ReadFile(path)
	if err != nil {
		ps.add(pos{file: path}, "cannot read: %v", unwrapPathError(err))
		return nil, ps
	}
	root := parseYAML(path, data, ps)
	if root == nil {
		return nil, ps
	}
	if root.kind != mapNode {
		ps.add(root.pos, "the top level must be a mapping (gateway:, upstream:, buses:, devices: …), got %s", root.describe())
		return nil, ps
	}
	if root.get("gateway") == nil && looksLikeProfile(root) {
		ps.add(root.pos, "this looks like a device profile, not gateway.yaml (a gateway file has a gateway: section)")
		return nil, ps
	}
	c := &Config{File: path, dir: filepath.Dir(path)}
	c.build(fsys, root, ps)
	return c, ps
}

// build decodes a gateway tree into c, applies defaults, loads the profiles
// and validates. Merge uses it too, with the merged tree.
func (c *Config) build(fsys files, root *node, ps *problems) {
	d := decoder{ps: ps}
	d.decode(root, reflect.ValueOf(c).Elem())
	applyDefaults(c)
	resolvePaths(c)
	c.loadProfiles(fsys, ps)
	c.validate(ps)
}

func looksLikeProfile(root *node) bool {
	return root.get("points") != nil || (root.get("name") != nil && root.get("plugin") != nil)
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loadProfiles loads every profile a device names and is not loaded yet.
// A missing file is reported at each device that names it.
func (c *Config) loadProfiles(fsys files, ps *problems) {
	if c.Profiles == nil {
		c.Profiles = map[string]*Profile{}
	}
	if c.reported == nil {
		c.reported = map[string]bool{}
	}
	var available []string // profile names in profiles_dir, for suggestions
	listed := false
	for i := range c.Devices {
		d := &c.Devices[i]
		name := d.Profile
		if name == "" || c.Profiles[name] != nil {
			continue
		}
		at := d.at(indexPath("devices", i), "profile")
		if msg := checkName("profile name", name); msg != "" {
			ps.add(at, "%s", msg)
			c.reported[name] = true
			continue
		}
		if c.reported[name] {
			ps.add(at, "unknown profile %q (see above)", name)
			continue
		}
		file, data, err := readProfile(fsys, c.ProfilesDir, name)
		if err != nil {
			if !listed {
				listed = true
				available = profileNames(fsys, c.ProfilesDir)
			}
			ps.add(at, "unknown profile %q: %v%s", name, err, knownList("profiles", name, available))
			c.reported[name] = true
			continue
		}
		p := parseProfile(file, data, ps)
		if p == nil {
			c.reported[name] = true
			continue
		}
		c.Profiles[name] = p
	}
}

// readProfile reads <dir>/<name>.yaml, or .yml.
func readProfile(fsys files, dir, name string) (string, []byte, error) {
	var firstErr error
	for _, ext := range []string{".yaml", ".yml"} {
		file := filepath.Join(dir, name+ext)
		data, err := fsys.ReadFile(file)
		if err == nil {
			return file, data, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if errors.Is(firstErr, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("no file %s", filepath.Join(dir, name+".yaml"))
	}
	return "", nil, fmt.Errorf("cannot read %s: %w", filepath.Join(dir, name+".yaml"), unwrapPathError(firstErr))
}

func profileNames(fsys files, dir string) []string {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		for _, ext := range []string{".yaml", ".yml"} {
			if n, ok := strings.CutSuffix(e, ext); ok {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

// LoadProfile reads and checks one device profile file on its own: syntax,
// generic keys and the rule that name matches the file name.
func LoadProfile(path string) (*Profile, error) {
	ps := &problems{}
	data, err := osFiles{}.ReadFile(path)
	if err != nil {
		ps.add(pos{file: path}, "cannot read: %v", unwrapPathError(err))
		return nil, ps.err()
	}
	p := parseProfile(path, data, ps)
	if p != nil {
		p.validate(ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// parseProfile decodes a profile file; nil when it is not a YAML mapping.
func parseProfile(file string, data []byte, ps *problems) *Profile {
	root := parseYAML(file, data, ps)
	if root == nil {
		return nil
	}
	if root.kind != mapNode {
		ps.add(root.pos, "a profile must be a mapping (name:, plugin:, points: …), got %s", root.describe())
		return nil
	}
	if root.get("gateway") != nil {
		ps.add(root.pos, "this is a gateway file, not a device profile")
		return nil
	}
	p := &Profile{File: file}
	d := decoder{ps: ps}
	d.decode(root, reflect.ValueOf(p).Elem())
	base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".yaml"), ".yml")
	if p.Name != "" && p.Name != base {
		ps.add(p.at("", "name"), "name %q does not match the file name %s (devices find a profile by file name)", p.Name, filepath.Base(file))
	}
	return p
}
