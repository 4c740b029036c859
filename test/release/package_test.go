// Package release tests what `make release` ships: the .deb packages (built
// here from the amd64 binaries in $DROVER_BIN by cmd/drover-release, the same
// tool and flags as a release), installed, upgraded, removed and purged in a
// throwaway root with dpkg; and, with $DROVER_CROSS, the arm64 and armhf
// binaries under qemu-user.
package release

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/test/harness"
)

// The versions the install test moves between.
const (
	v1 = "0.0.1"
	v2 = "0.0.2-3-gabc1234"
	// sourceDate is the fixed package timestamp (SOURCE_DATE_EPOCH).
	sourceDate = "1764979200"
)

type debs struct {
	dir                    string
	drover1, drover2, hub1 string
	drover1Again           string // v1 built a second time, to compare bytes
	err                    error
}

var (
	built     debs
	buildOnce sync.Once
)

// packages builds the amd64 packages once per test binary.
func packages(t *testing.T) debs {
	t.Helper()
	for _, tool := range []string{"dpkg-deb", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	binDir := filepath.Dir(harness.Bin(t, "drover"))
	harness.Bin(t, "drover-plugin-modbus")
	harness.Bin(t, "drover-plugin-serial")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "drover-debs-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		tool := filepath.Join(dir, "drover-release")
		cmd := exec.Command("go", "build", "-C", filepath.Join(harness.RepoRoot(), "cmd", "drover-release"), "-o", tool, ".")
		if b, err := cmd.CombinedOutput(); err != nil {
			built.err = &cmdError{cmd: cmd.String(), out: string(b), err: err}
			return
		}
		build := func(version, out string) (string, error) {
			cmd := exec.Command(tool, "-root", harness.RepoRoot(), "-bin", binDir, "-arch", "amd64", "-version", version, "-out", out)
			cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+sourceDate)
			b, err := cmd.CombinedOutput()
			if err != nil {
				return "", &cmdError{cmd: cmd.String(), out: string(b), err: err}
			}
			return string(b), nil
		}
		for _, v := range []struct{ version, out string }{{v1, "v1"}, {v2, "v2"}, {v1, "again"}} {
			if _, built.err = build(v.version, filepath.Join(dir, v.out)); built.err != nil {
				return
			}
		}
		built.drover1 = filepath.Join(dir, "v1", "drover_0.0.1_amd64.deb")
		built.hub1 = filepath.Join(dir, "v1", "droverhub_0.0.1_amd64.deb")
		built.drover2 = filepath.Join(dir, "v2", "drover_0.0.2+git3.gabc1234_amd64.deb")
		built.drover1Again = filepath.Join(dir, "again", "drover_0.0.1_amd64.deb")
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

type cmdError struct {
	cmd, out string
	err      error
}

func (e *cmdError) Error() string { return e.cmd + ": " + e.err.Error() + "\n" + e.out }
func (e *cmdError) Unwrap() error { return e.err }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPackageContents inspects the packages with dpkg-deb: control fields,
// files with their modes, conffiles and maintainer scripts.
func TestPackageContents(t *testing.T) {
	p := packages(t)
	cases := []struct {
		name      string
		deb       string
		fields    map[string]string // control field -> regexp
		files     map[string]string // path -> "mode" as dpkg-deb -c prints it
		conffiles []string
		scripts   []string
	}{
		{
			name: "drover", deb: p.drover1,
			fields: map[string]string{"Package": `^drover$`, "Version": `^0\.0\.1$`, "Architecture": `^amd64$`,
				"Depends": `libc6 \(>= 2\.34\), passwd`},
			files: map[string]string{
				"./usr/bin/drover": "-rwxr-xr-x",
				"./usr/lib/drover/plugins/drover-plugin-modbus": "-rwxr-xr-x",
				"./usr/lib/drover/plugins/drover-plugin-serial": "-rwxr-xr-x",
				"./etc/drover/gateway.yaml":                     "-rw-r--r--",
				"./lib/systemd/system/drover.service":           "-rw-r--r--",
				"./usr/share/drover/profiles/acme-pump.yaml":    "-rw-r--r--",
				"./usr/share/doc/drover/install.md":             "-rw-r--r--",
				"./usr/share/doc/drover/gateway.example.yaml":   "-rw-r--r--",
			},
			conffiles: []string{"/etc/drover/gateway.yaml"},
			scripts:   []string{"postinst", "prerm", "postrm"},
		},
		{
			name: "droverhub", deb: p.hub1,
			fields: map[string]string{"Package": `^droverhub$`, "Version": `^0\.0\.1$`, "Architecture": `^amd64$`},
			files: map[string]string{
				"./usr/bin/droverhub":                    "-rwxr-xr-x",
				"./usr/bin/droverctl":                    "-rwxr-xr-x",
				"./etc/default/droverhub":                "-rw-r--r--",
				"./lib/systemd/system/droverhub.service": "-rw-r--r--",
			},
			conffiles: []string{"/etc/default/droverhub"},
			scripts:   []string{"postinst", "prerm", "postrm"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for field, re := range c.fields {
				got := strings.TrimSpace(run(t, "dpkg-deb", "-f", c.deb, field))
				if !regexp.MustCompile(re).MatchString(got) {
					t.Errorf("%s: %s = %q, want %s", filepath.Base(c.deb), field, got, re)
				}
			}
			listing := map[string]string{}
			for _, l := range strings.Split(run(t, "dpkg-deb", "-c", c.deb), "\n") {
				f := strings.Fields(l)
				if len(f) >= 6 {
					listing[f[len(f)-1]] = f[0] + " " + f[1]
				}
			}
			for path, mode := range c.files {
				got, ok := listing[path]
				if !ok {
					t.Errorf("%s has no %s", filepath.Base(c.deb), path)
					continue
				}
				if got != mode+" root/root" {
					t.Errorf("%s: %s is %q, want %q", filepath.Base(c.deb), path, got, mode+" root/root")
				}
			}
			for path := range listing {
				if strings.Contains(path, "devsim") || strings.HasPrefix(path, "./var/") {
					t.Errorf("%s ships %s (test tool or state: must not be in a package)", filepath.Base(c.deb), path)
				}
			}
			ctl := t.TempDir()
			run(t, "dpkg-deb", "-e", c.deb, ctl)
			conf, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
			if got := strings.Fields(string(conf)); strings.Join(got, " ") != strings.Join(c.conffiles, " ") {
				t.Errorf("conffiles = %v, want %v", got, c.conffiles)
			}
			for _, s := range c.scripts {
				fi, err := os.Stat(filepath.Join(ctl, s))
				if err != nil || fi.Mode()&0o111 == 0 {
					t.Errorf("maintainer script %s missing or not executable: %v", s, err)
					continue
				}
				run(t, "sh", "-n", filepath.Join(ctl, s))
			}
		})
	}
	t.Run("hub binaries only in droverhub", func(t *testing.T) {
		l := run(t, "dpkg-deb", "-c", p.drover1)
		if strings.Contains(l, "droverhub") || strings.Contains(l, "droverctl") {
			t.Errorf("drover package carries hub binaries:\n%s", l)
		}
	})
	t.Run("same inputs give the same bytes", func(t *testing.T) {
		a, b := sha256File(t, p.drover1), sha256File(t, p.drover1Again)
		if a != b {
			t.Errorf("two builds of %s differ: %x vs %x", filepath.Base(p.drover1), a, b)
		}
		for _, l := range strings.Split(run(t, "dpkg-deb", "-c", p.drover1), "\n") {
			if l != "" && !strings.Contains(l, "2025-12-06 00:00") {
				t.Errorf("entry not stamped with SOURCE_DATE_EPOCH: %s", l)
				break
			}
		}
	})
}

func sha256File(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// throwawayRoot is an empty dpkg database under a temp dir with copies of
// this machine's account files (the postinst adds the service users to
// them, and needs the dialout group).
func throwawayRoot(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc", "var/log"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(r, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
		b, err := os.ReadFile(filepath.Join("/etc", f))
		if err != nil {
			if f == "gshadow" || f == "shadow" {
				continue
			}
			t.Fatal(err)
		}
		// Drop any drover accounts of this machine: the package must create its own.
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "drover:") && !strings.HasPrefix(l, "droverhub:") {
				keep = append(keep, l)
			}
		}
		if err := os.WriteFile(filepath.Join(r, "etc", f), []byte(strings.Join(keep, "\n")), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// dpkg runs dpkg on root r, with the maintainer scripts outside a chroot
// and DPKG_ROOT set (they are written for it). Dependencies are not
// installed in the throwaway root, hence --force-depends.
func dpkg(t *testing.T, r string, args ...string) string {
	t.Helper()
	base := []string{"--root=" + r, "--force-script-chrootless", "--force-depends", "--force-confold", "--log=" + filepath.Join(r, "var/log/dpkg.log")}
	return run(t, "dpkg", append(base, args...)...)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestPackageInstall installs drover and droverhub into a throwaway root,
// checks users, state directories, the unit files and the installed drover,
// then upgrades (edited conffile and state kept), removes (state kept) and
// purges (state gone).
func TestPackageInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root with ownership changes needs root")
	}
	p := packages(t)
	r := throwawayRoot(t)
	dpkg(t, r, "-i", p.drover1, p.hub1)

	t.Run("service users and state directories", func(t *testing.T) {
		passwd, _ := os.ReadFile(filepath.Join(r, "etc/passwd"))
		group, _ := os.ReadFile(filepath.Join(r, "etc/group"))
		for _, u := range []string{"drover", "droverhub"} {
			if !regexp.MustCompile(`(?m)^` + u + `:x:\d+:\d+:[^:]*:/var/lib/` + u + `:/usr/sbin/nologin$`).Match(passwd) {
				t.Errorf("no system user %s in the root's /etc/passwd:\n%s", u, passwd)
			}
			fi, err := os.Stat(filepath.Join(r, "var/lib", u))
			if err != nil || fi.Mode().Perm() != 0o750 {
				t.Errorf("/var/lib/%s: %v %v (want mode 0750)", u, fi, err)
			}
		}
		if !regexp.MustCompile(`(?m)^dialout:x:\d+:(.*,)?drover(,.*)?$`).Match(group) {
			t.Errorf("drover is not in dialout:\n%s", grep(group, "dialout"))
		}
		if regexp.MustCompile(`(?m)^dialout:.*droverhub`).Match(group) {
			t.Error("droverhub must not be in dialout")
		}
	})

	t.Run("installed drover runs", func(t *testing.T) {
		drover := filepath.Join(r, "usr/bin/drover")
		if out := run(t, drover, "version"); !strings.HasPrefix(out, "drover ") || strings.Contains(out, "dev") {
			t.Errorf("drover version: %q", out)
		}
		out := run(t, drover, "config", "check", "--plugins", filepath.Join(r, "usr/lib/drover/plugins"), filepath.Join(r, "etc/drover/gateway.yaml"))
		if strings.TrimSpace(out) != "ok" {
			t.Errorf("config check of the shipped gateway.yaml: %q", out)
		}
		if out := run(t, filepath.Join(r, "usr/bin/droverhub"), "version"); !strings.HasPrefix(out, "droverhub ") {
			t.Errorf("droverhub version: %q", out)
		}
	})

	t.Run("installed droverhub first start creates CA and owner key 0600", func(t *testing.T) {
		// What droverhub.service runs, with loopback ports and a fresh state dir.
		data := filepath.Join(t.TempDir(), "droverhub")
		hub := harness.Start(t, filepath.Join(r, "usr/bin/droverhub"), "serve", "--data", data,
			"--mqtt-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0", "--log-level", "warn")
		hub.Await(t, "droverhub ready", 60*time.Second)
		for _, f := range []string{"iothubowner.txt", "tls/ca.key", "tls/server.key"} {
			fi, err := os.Stat(filepath.Join(data, f))
			if err != nil {
				t.Errorf("first start did not create %s: %v", f, err)
				continue
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
		if !exists(filepath.Join(data, "tls/ca.crt")) {
			t.Error("first start did not create tls/ca.crt")
		}
	})

	t.Run("unit files verify", func(t *testing.T) {
		if _, err := exec.LookPath("systemd-analyze"); err != nil {
			t.Skip("systemd-analyze not installed")
		}
		// The units they refer to (sysinit.target, network-online.target …)
		// come from this machine's systemd; the packages' units stay theirs.
		run(t, "cp", "-an", "/lib/systemd/system/.", filepath.Join(r, "lib/systemd/system")+"/")
		for _, u := range []string{"drover.service", "droverhub.service"} {
			// Any output is a finding: systemd-analyze warns about unknown
			// keys and bad values but still exits 0.
			cmd := exec.Command("systemd-analyze", "verify", "--root="+r, "/lib/systemd/system/"+u)
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
		}
	})

	t.Run("upgrade keeps the edited conffile and the state", func(t *testing.T) {
		conf := filepath.Join(r, "etc/drover/gateway.yaml")
		edited := "# edited on site\n" + string(must(os.ReadFile(conf)))
		writeFile(t, conf, edited)
		state := filepath.Join(r, "var/lib/drover/drover.db")
		writeFile(t, state, "state")
		dpkg(t, r, "-i", p.drover2)
		if v := dpkgStatus(t, r, "drover"); v != "0.0.2+git3.gabc1234" {
			t.Errorf("installed version after upgrade: %q", v)
		}
		if got := string(must(os.ReadFile(conf))); got != edited {
			t.Errorf("upgrade replaced the edited gateway.yaml")
		}
		if !exists(state) {
			t.Error("upgrade lost /var/lib/drover/drover.db")
		}
	})

	t.Run("remove keeps state, purge deletes it", func(t *testing.T) {
		dpkg(t, r, "--remove", "drover")
		if exists(filepath.Join(r, "usr/bin/drover")) {
			t.Error("remove left /usr/bin/drover")
		}
		for _, keep := range []string{"var/lib/drover/drover.db", "etc/drover/gateway.yaml"} {
			if !exists(filepath.Join(r, keep)) {
				t.Errorf("remove deleted /%s", keep)
			}
		}
		dpkg(t, r, "--purge", "drover")
		for _, gone := range []string{"var/lib/drover", "etc/drover/gateway.yaml"} {
			if exists(filepath.Join(r, gone)) {
				t.Errorf("purge left /%s", gone)
			}
		}
		dpkg(t, r, "--purge", "droverhub")
		if exists(filepath.Join(r, "var/lib/droverhub")) {
			t.Error("purge left /var/lib/droverhub")
		}
	})
}

func dpkgStatus(t *testing.T, r, pkg string) string {
	t.Helper()
	return strings.TrimSpace(run(t, "dpkg-query", "--admindir="+filepath.Join(r, "var/lib/dpkg"), "-W", "-f=${Version}", pkg))
}

func grep(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
