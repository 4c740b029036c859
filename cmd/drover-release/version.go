package main

import (
	"regexp"
	"strings"
)

// describeSuffix is what `git describe` appends after a tag: -N-gSHA.
var describeSuffix = regexp.MustCompile(`^(.*)-([0-9]+)-(g[0-9a-f]+)$`)

// DebVersion turns the version make stamps into the binaries into a Debian
// package version that sorts the way releases happen:
//
//	0.4.0                   0.4.0
//	0.4.0-3-gabc1234        0.4.0+git3.gabc1234   (after 0.4.0, before 0.4.1)
//	0.5.0-rc1               0.5.0~rc1             (before 0.5.0)
//	…-dirty                 …+dirty / ….dirty
//
// It never contains a hyphen, so dpkg reads no Debian revision into it.
func DebVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	dirty := false
	if s, ok := strings.CutSuffix(v, "-dirty"); ok {
		v, dirty = s, true
	}
	var meta []string
	if m := describeSuffix.FindStringSubmatch(v); m != nil {
		v = m[1]
		meta = append(meta, "git"+m[2], m[3])
	}
	if dirty {
		meta = append(meta, "dirty")
	}
	if base, pre, ok := strings.Cut(v, "-"); ok {
		v = base + "~" + strings.ReplaceAll(pre, "-", ".")
	}
	if len(meta) > 0 {
		v += "+" + strings.Join(meta, ".")
	}
	return v
}
