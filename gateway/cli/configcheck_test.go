package cli

import (
	"os"
	"os/exec"
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

// TestConfigCheckSerialPlugin runs config check with the real
// drover-plugin-serial: its bus keys and profile points are checked, and
// each problem comes out at the file and line of its key.
func TestConfigCheckSerialPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the serial plugin")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "drover-plugin-serial"), "github.com/drover-iot/drover/cmd/drover-plugin-serial")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build drover-plugin-serial: %v\n%s", err, out)
	}
	const file = "testdata/serial/gateway.yaml"
	const prof = "testdata/serial/profiles/mcu-bad.yaml"
	stdout, stderr, code := drover("config", "check", file, "--plugins", dir)
	if code != 1 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{
		file + `:8: buses[0].smp_version: unknown value "v2" (want one of auto, 1, 2)`,
		file + `:9: buses[0].line_pacing: not used with transport raw`,
		prof + `:4: points[0].field: missing: the field of statistics group "app" to read`,
		prof + `:14: points[2].writable: only setting points can be written (this is a stat point)`,
		prof + `:16: points[3].os: unknown value "uptime"`,
		prof + `:18: methods.reboot: the serial plugin's reboot is an SMP command`,
		prof + `:20: identify.serial_point: no point "serial" in this profile`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("missing %q in:\n%s", want, stdout)
		}
	}
}
