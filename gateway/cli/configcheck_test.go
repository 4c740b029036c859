package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-iot/drover/plugins/plugintest"
)

// TestConfigCheckWithPlugins starts the fake plugin from a plugins
// directory and checks that its field errors come out at file and line.
func TestConfigCheckWithPlugins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the fake plugin")
	}
	dir := plugintest.BuildFake(t)
	const file = "testdata/plugins/gateway.yaml"

	stdout, stderr, code := drover("config", "check", file)
	if code != 0 || !strings.Contains(stderr, "not checked") {
		t.Fatalf("without plugins: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = drover("config", "check", file, "--plugins", dir)
	if code != 1 || !strings.Contains(stdout, file+":7: buses[0].speed: unknown key") {
		t.Errorf("with plugins: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Run("missing plugin directory", func(t *testing.T) {
		_, stderr, code := drover("config", "check", file, "--plugins", dir+"/nope")
		if code != 1 || !strings.Contains(stderr, "read plugins directory") {
			t.Errorf("exit %d stderr %q", code, stderr)
		}
	})
	t.Run("directory without plugins", func(t *testing.T) {
		_, stderr, code := drover("config", "check", file, "--plugins", t.TempDir())
		if code != 1 || !strings.Contains(stderr, "no drover-plugin-*") {
			t.Errorf("exit %d stderr %q", code, stderr)
		}
	})
}

// TestConfigCheckFindsPluginsDir: without --plugins, config check starts the
// plugins of the file's own plugins.dir, so a technician's typo in a
// plugin key is caught by the plain command; --plugins none skips them.
func TestConfigCheckFindsPluginsDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the fake plugin")
	}
	dir := plugintest.BuildFake(t)
	src, err := os.ReadFile("testdata/plugins/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, append(src, []byte("plugins:\n  dir: "+dir+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := drover("config", "check", file)
	if code != 1 || !strings.Contains(stdout, file+":7: buses[0].speed: unknown key") {
		t.Errorf("default: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = drover("config", "check", file, "--plugins", "none")
	if code != 0 {
		t.Errorf("--plugins none: exit %d\n%s%s", code, stdout, stderr)
	}
}
