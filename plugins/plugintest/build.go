package plugintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// FakePackage is the import path of the fake plugin's main package.
const FakePackage = "github.com/drover-iot/drover/plugins/plugintest/fakeplugin"

// Modes of the fake plugin executable, chosen by its file name
// drover-plugin-<mode> (see package fakeplugin). Any other name serves a
// normal Fake that describes itself under that name.
const (
	ModeGarbage    = "garbage"    // prints a line that is not a handshake, then waits to be killed
	ModeBadCookie  = "badcookie"  // serves with another magic cookie: exits at once
	ModeBadVersion = "badversion" // serves protocol version 99
)

// BuildFake builds the fake plugin into t.TempDir() as drover-plugin-fake,
// adds a link drover-plugin-<name> to it for every extra name (see the
// Mode constants), and returns the directory: a plugins.dir for the host.
// A build takes seconds; a package with many such tests can build once in
// TestMain with BuildFakeInto.
func BuildFake(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := BuildFakeInto(dir, names...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// BuildFakeInto is BuildFake into an existing directory.
func BuildFakeInto(dir string, names ...string) error {
	bin := filepath.Join(dir, "drover-plugin-fake")
	cmd := exec.Command("go", "build", "-o", bin, FakePackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build fake plugin: %w\n%s", err, out)
	}
	for _, n := range names {
		if err := os.Symlink(bin, filepath.Join(dir, "drover-plugin-"+n)); err != nil {
			return fmt.Errorf("link fake plugin as %s: %w", n, err)
		}
	}
	return nil
}
