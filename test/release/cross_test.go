package release

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-iot/drover/test/harness"
)

// crossArches are the release architectures that need emulation here, with
// the ELF machine their binaries must be built for.
var crossArches = []struct {
	goarch  string
	machine elf.Machine
	class   elf.Class
}{
	{"arm64", elf.EM_AARCH64, elf.ELFCLASS64},
	{"arm", elf.EM_ARM, elf.ELFCLASS32},
}

// TestCrossBinaries runs the arm64 and armhf release binaries under
// qemu-user (make release-test sets DROVER_DIST: dist/linux-ARCH holds the
// binaries, dist/qemu-ARCH wrappers that run them under qemu): they are the
// right architecture, report the stamped version, and `config check` passes
// the packaged gateway.yaml and the demo's (which has Modbus TCP and RTU
// buses) with the emulated Modbus plugin checking its keys. Emulation on a
// shared machine is slow to start a plugin, hence --plugin-timeout.
func TestCrossBinaries(t *testing.T) {
	dist := os.Getenv("DROVER_DIST")
	if dist == "" {
		t.Skip("DROVER_DIST not set (make release-test sets it)")
	}
	root := harness.RepoRoot()
	for _, a := range crossArches {
		t.Run(a.goarch, func(t *testing.T) {
			bin, wrap := filepath.Join(dist, "linux-"+a.goarch), filepath.Join(dist, "qemu-"+a.goarch)
			for _, name := range []string{"drover", "droverhub", "droverctl", "drover-plugin-modbus", "devsim"} {
				f, err := elf.Open(filepath.Join(bin, name))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if f.Machine != a.machine || f.Class != a.class {
					t.Errorf("%s is %v %v, want %v %v", name, f.Machine, f.Class, a.machine, a.class)
				}
				f.Close()
			}
			cases := []struct {
				name string
				args []string
				want func(string) bool
			}{
				{"drover version", []string{"drover", "version"}, stampedVersion("drover")},
				{"droverhub version", []string{"droverhub", "version"}, stampedVersion("droverhub")},
				{"config check: packaged gateway.yaml", []string{"drover", "config", "check", "--plugins", wrap, "--plugin-timeout", "2m",
					filepath.Join(root, "configs", "package", "gateway.yaml")}, isOK},
				{"config check: demo gateway.yaml", []string{"drover", "config", "check", "--plugins", wrap, "--plugin-timeout", "2m",
					filepath.Join(root, "configs", "demo", "gateway.yaml")}, isOK},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					cmd := exec.Command(filepath.Join(wrap, c.args[0]), c.args[1:]...)
					cmd.Dir = root
					out, err := cmd.CombinedOutput()
					if err != nil || !c.want(string(out)) {
						t.Errorf("%s under qemu: %v\n%s", strings.Join(c.args, " "), err, out)
					}
				})
			}
		})
	}
}

func stampedVersion(prog string) func(string) bool {
	return func(out string) bool {
		v, ok := strings.CutPrefix(strings.TrimSpace(out), prog+" ")
		return ok && v != "" && v != "dev"
	}
}

func isOK(out string) bool { return strings.TrimSpace(out) == "ok" }
