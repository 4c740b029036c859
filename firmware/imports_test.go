package firmware

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestLibraryImports keeps firmware a library both sides can use: it imports
// nothing from the hub, the gateway or anything else of this module.
func TestLibraryImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range af.Imports {
			if p := strings.Trim(im.Path.Value, `"`); strings.HasPrefix(p, "github.com/drover-iot/drover/") {
				t.Errorf("%s imports %s: the firmware library must not depend on the rest of Drover", f, p)
			}
		}
	}
}
