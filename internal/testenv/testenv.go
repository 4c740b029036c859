// Package testenv decides what a test does when an outside tool it needs
// (mosquitto, socat, pymodbus) is missing: on a developer's machine it is
// skipped, under CI (CI=true) it fails, so that a green CI run always means
// the interop tests ran.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sbinDirs are looked in after PATH: Debian installs daemons such as
// mosquitto there, and a non-root PATH often lacks them.
var sbinDirs = []string{"/usr/sbin", "/sbin"}

// CI reports whether the tests run under CI: the CI variable is true.
func CI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// RequireTool returns the path of the executable name (from PATH, else
// /usr/sbin or /sbin). When there is none, t is skipped, or failed under
// CI; hint says how to install it.
func RequireTool(t testing.TB, name, hint string) string {
	t.Helper()
	return requireTool(t, CI(), name, hint)
}

func requireTool(t testing.TB, ci bool, name, hint string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	missing(t, ci, "%s not installed (%s)", name, hint)
	return ""
}

// RequirePython checks that the interpreter at python imports every module
// (e.g. "pymodbus.client"); when it does not, t is skipped, or failed under
// CI; hint says how to install them.
func RequirePython(t testing.TB, python, hint string, modules ...string) {
	t.Helper()
	requirePython(t, CI(), python, hint, modules...)
}

func requirePython(t testing.TB, ci bool, python, hint string, modules ...string) {
	t.Helper()
	list := strings.Join(modules, ", ")
	// One interpreter for all: its start is the slow part.
	if out, err := exec.Command(python, "-c", "import "+list).CombinedOutput(); err != nil {
		missing(t, ci, "%s cannot import %s (%s): %v: %s", python, list, hint, err, bytes.TrimSpace(out))
	}
}

// missing ends t for a missing prerequisite: a skip, or a failure under CI.
func missing(t testing.TB, ci bool, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ci {
		t.Fatalf("%s; CI=true, so this test must run", msg)
		return
	}
	t.Skip(msg)
}
