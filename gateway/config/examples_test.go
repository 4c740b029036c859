package config

import (
	"bytes"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const configsDir = "../../configs"

// TestExamples loads every YAML file under configs/ through the real
// loader: gateway files (a top-level gateway: key) with Load, files under
// configs/profiles with LoadProfile. Other folders (devsim, demo, hub) are
// other packages' files and are loaded only when they are gateway files.
func TestExamples(t *testing.T) {
	var gateways, profiles int
	err := filepath.WalkDir(configsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		rel, _ := filepath.Rel(configsDir, path)
		isProfile := strings.HasPrefix(rel, "profiles"+string(filepath.Separator))
		isGateway := hasTopLevelGateway(t, path)
		switch {
		case isGateway:
			gateways++
			t.Run(rel, func(t *testing.T) {
				c, err := Load(path)
				if err != nil {
					t.Fatalf("Load:\n%v", err)
				}
				if err := c.Validate(); err != nil {
					t.Errorf("Validate after Load:\n%v", err)
				}
			})
		case isProfile:
			profiles++
			t.Run(rel, func(t *testing.T) {
				if _, err := LoadProfile(path); err != nil {
					t.Fatalf("LoadProfile:\n%v", err)
				}
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gateways < 2 || profiles < 3 {
		t.Errorf("found %d gateway files and %d profiles; the examples are missing", gateways, profiles)
	}
}

func hasTopLevelGateway(t *testing.T, path string) bool {
	t.Helper()
	data, err := osFiles{}.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&top); err != nil {
		return false
	}
	_, ok := top["gateway"]
	return ok
}

// TestExampleDocumentsEveryKey checks that configs/gateway/gateway.yaml
// sets every key of gateway.yaml, so it stays the complete annotated example.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := osFiles{}.ReadFile(filepath.Join(configsDir, "gateway", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ps problems
	root := parseYAML("gateway.yaml", data, &ps)
	if root == nil {
		t.Fatal(ps.list)
	}
	have := map[string]bool{}
	var walk func(n *node, prefix string)
	walk = func(n *node, prefix string) {
		switch n.kind {
		case mapNode:
			for _, p := range n.pairs {
				path := p.key
				if prefix != "" {
					path = prefix + "." + p.key
				}
				have[path] = true
				walk(p.val, path)
			}
		case seqNode:
			for _, it := range n.items {
				walk(it, prefix+"[]")
			}
		}
	}
	walk(root, "")
	for _, k := range keyPaths(reflectTypeOfConfig(), "") {
		if !have[k] {
			t.Errorf("configs/gateway/gateway.yaml does not show %q", k)
		}
	}
}
