// Command drover-release builds Drover's Debian packages with nfpm, from
// binaries already built for one architecture (make release-bin-ARCH) and
// the files in configs/package:
//
//	drover     drover, the plugins (/usr/lib/drover/plugins), gateway.yaml
//	           (conffile), device profiles, drover.service, maintainer scripts
//	droverhub  droverhub, droverctl, droverhub.service, /etc/default/droverhub
//
// It is its own Go module so that nfpm and its dependencies never reach the
// gateway binaries or the project's go.mod. `make release` runs it as
//
//	go run -C cmd/drover-release . -root REPO -bin DIR -arch GOARCH -version V -out DIR
//
// Package timestamps come from $SOURCE_DATE_EPOCH (the Makefile sets the last
// commit's time), so the same inputs give byte-identical packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "drover-release:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("drover-release", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.Root, "root", "", "repository root (configs/package, configs/profiles, docs)")
	fs.StringVar(&o.BinDir, "bin", "", "directory with the binaries for -arch")
	fs.StringVar(&o.GoArch, "arch", "", "GOARCH of the binaries: amd64, arm64 or arm (armhf, GOARM=7)")
	fs.StringVar(&o.Version, "version", "", "release version, as `make` stamps it (e.g. 0.4.0 or 0.4.0-3-gabc1234)")
	out := fs.String("out", ".", "directory for the .deb files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Root == "" || o.BinDir == "" || o.GoArch == "" || o.Version == "" {
		return errors.New("-root, -bin, -arch and -version are required")
	}
	for _, p := range []Package{Drover, DroverHub} {
		file, err := Build(p, o, *out)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "package", file)
	}
	return nil
}

// Package names a .deb this tool builds.
type Package string

// The packages.
const (
	Drover    Package = "drover"
	DroverHub Package = "droverhub"
)

// options says where the inputs are and what they are.
type options struct {
	Root, BinDir, GoArch, Version string
}

// debArch maps GOARCH to the Debian architecture.
var debArch = map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "armhf"}

// Build writes package p into outDir and returns the file's path.
func Build(p Package, o options, outDir string) (string, error) {
	info, err := Info(p, o)
	if err != nil {
		return "", err
	}
	pkgr, err := nfpm.Get("deb")
	if err != nil {
		return "", fmt.Errorf("deb packager: %w", err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("package %s: %w", p, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("package %s: %w", p, err)
	}
	target := filepath.Join(outDir, pkgr.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return "", fmt.Errorf("package %s: %w", p, err)
	}
	info.Target = target
	if err := pkgr.Package(info, f); err != nil {
		f.Close()
		_ = os.Remove(target)
		return "", fmt.Errorf("package %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("package %s: %w", p, err)
	}
	return target, nil
}

// Info is the nfpm description of package p: files, conffiles, scripts,
// dependencies. Optional binaries (a plugin not built in this tree) are
// left out; required ones missing are an error.
func Info(p Package, o options) (*nfpm.Info, error) {
	arch, ok := debArch[o.GoArch]
	if !ok {
		return nil, fmt.Errorf("unsupported -arch %q (want amd64, arm64 or arm)", o.GoArch)
	}
	pkgDir := filepath.Join(o.Root, "configs", "package")
	mtime, err := sourceDateEpoch()
	if err != nil {
		return nil, err
	}
	c := contents{mtime: mtime}
	info := &nfpm.Info{
		Name:          string(p),
		Arch:          o.GoArch,
		Platform:      "linux",
		Version:       DebVersion(o.Version),
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "Drover maintainers <drover@drover-iot.invalid>",
		Vendor:        "Drover",
		Homepage:      "https://github.com/drover-iot/drover",
		License:       "Proprietary",
		MTime:         mtime,
	}
	info.Deb.Arch = arch
	// Binaries link glibc dynamically (cgo SQLite); the scripts use shadow's
	// groupadd/useradd/usermod (passwd) and awk.
	info.Depends = []string{"libc6 (>= 2.34)", "passwd"}
	info.Recommends = []string{"systemd"}

	switch p {
	case Drover:
		info.Description = "Drover industrial IoT edge gateway\n" +
			" The gateway daemon (drover run) and technician CLI, the Modbus and serial\n" +
			" protocol plugins, device profiles, and a hardened systemd unit."
		c.binary(o.BinDir, "drover", "/usr/bin/drover", true)
		c.binary(o.BinDir, "drover-plugin-modbus", "/usr/lib/drover/plugins/drover-plugin-modbus", true)
		c.binary(o.BinDir, "drover-plugin-serial", "/usr/lib/drover/plugins/drover-plugin-serial", false)
		c.conffile(filepath.Join(pkgDir, "gateway.yaml"), "/etc/drover/gateway.yaml")
		c.file(filepath.Join(pkgDir, "drover.service"), "/lib/systemd/system/drover.service", 0o644)
		c.file(filepath.Join(o.Root, "configs", "gateway", "gateway.yaml"), "/usr/share/doc/drover/gateway.example.yaml", 0o644)
		c.file(filepath.Join(o.Root, "docs", "install.md"), "/usr/share/doc/drover/install.md", 0o644)
		c.glob(filepath.Join(o.Root, "configs", "profiles", "*.yaml"), "/usr/share/drover/profiles", 0o644)
		c.dir("/usr/lib/drover/plugins")
		info.Scripts = scripts(pkgDir, "drover")
		info.Suggests = []string{"droverhub"}
	case DroverHub:
		info.Description = "Drover localhub: a self-hosted hub compatible with Azure IoT Hub\n" +
			" droverhub (device MQTT, service HTTPS, registry, twins, methods, jobs,\n" +
			" queries) with a hardened systemd unit, and droverctl, the operator CLI."
		c.binary(o.BinDir, "droverhub", "/usr/bin/droverhub", true)
		c.binary(o.BinDir, "droverctl", "/usr/bin/droverctl", true)
		c.conffile(filepath.Join(pkgDir, "droverhub.default"), "/etc/default/droverhub")
		c.file(filepath.Join(pkgDir, "droverhub.service"), "/lib/systemd/system/droverhub.service", 0o644)
		c.file(filepath.Join(o.Root, "docs", "install.md"), "/usr/share/doc/droverhub/install.md", 0o644)
		info.Scripts = scripts(pkgDir, "droverhub")
	default:
		return nil, fmt.Errorf("unknown package %q", p)
	}
	if c.err != nil {
		return nil, fmt.Errorf("package %s: %w", p, c.err)
	}
	info.Contents = c.list
	return info, nil
}

// scripts are configs/package/scripts/NAME.{postinst,prerm,postrm}.
func scripts(pkgDir, name string) nfpm.Scripts {
	s := func(kind string) string { return filepath.Join(pkgDir, "scripts", name+"."+kind) }
	return nfpm.Scripts{PostInstall: s("postinst"), PreRemove: s("prerm"), PostRemove: s("postrm")}
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH as a time (zero when unset: the
// files' own times are used).
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Time{}, nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// contents collects package entries, all stamped with mtime when it is set;
// the first error sticks.
type contents struct {
	list  files.Contents
	mtime time.Time
	err   error
}

func (c *contents) add(src, dst, typ string, mode os.FileMode) {
	if c.err != nil {
		return
	}
	if src != "" {
		if _, err := os.Stat(src); err != nil {
			c.err = fmt.Errorf("%s: %w", dst, err)
			return
		}
	}
	c.list = append(c.list, &files.Content{Source: src, Destination: dst, Type: typ,
		FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: c.mtime}})
}

func (c *contents) binary(dir, name, dst string, required bool) {
	src := filepath.Join(dir, name)
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) && !required {
		return
	}
	c.add(src, dst, "", 0o755)
}

func (c *contents) file(src, dst string, mode os.FileMode) { c.add(src, dst, "", mode) }

// conffile is a dpkg conffile: an upgrade keeps the administrator's edits.
func (c *contents) conffile(src, dst string) { c.add(src, dst, "config|noreplace", 0o644) }

func (c *contents) dir(dst string) { c.add("", dst, "dir", 0o755) }

func (c *contents) glob(pattern, dstDir string, mode os.FileMode) {
	if c.err != nil {
		return
	}
	m, err := filepath.Glob(pattern)
	if err == nil && len(m) == 0 {
		err = fmt.Errorf("no files match %s", pattern)
	}
	if err != nil {
		c.err = err
		return
	}
	sort.Strings(m)
	for _, src := range m {
		c.add(src, dstDir+"/"+filepath.Base(src), "", mode)
	}
}
