// Package version holds the release version every Drover binary reports:
// `drover version`, `droverhub version`, `droverctl version`, and each
// plugin's Describe. `make build` and `make release` stamp it from git with
//
//	-ldflags "-X github.com/drover-iot/drover/internal/version.Version=$(VERSION)"
//
// so all binaries of one build report the same string.
package version

// Version is the build's version ("dev" when not stamped): `git describe`
// without the leading "v", e.g. "0.4.0" on a tag or "0.4.0-3-gabc1234"
// after it.
var Version = "dev"
