package config

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadFiles loads every file under testdata/bad. Its first line says
// "# want: <substring of the problem>"; the line marked "# <--" (or line 1)
// is where the problem must be reported, in that file.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) < 12 {
		t.Fatalf("want at least 12 bad files, got %d (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, wantLine := badExpectation(t, file)
			var err error
			if strings.HasPrefix(filepath.Base(file), "profile-") {
				_, err = LoadProfile(file)
			} else {
				_, err = Load(file)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load(%s) = %v, want a *LoadError", file, err)
			}
			for _, p := range le.Problems {
				if strings.Contains(p.String(), want) {
					if p.File != file || p.Line != wantLine {
						t.Errorf("problem %q at %s:%d, want %s:%d", p.Message, p.File, p.Line, file, wantLine)
					}
					if !strings.HasPrefix(p.String(), file+":") {
						t.Errorf("problem does not start with the file name: %s", p)
					}
					return
				}
			}
			t.Errorf("no problem contains %q; got:\n%s", want, le.Error())
		})
	}
}

func badExpectation(t *testing.T, file string) (string, int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want, line := "", 1
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if n == 1 {
			var ok bool
			if want, ok = strings.CutPrefix(text, "# want: "); !ok {
				t.Fatalf("%s: first line must be '# want: <substring>'", file)
			}
		}
		if strings.Contains(text, "# <--") {
			line = n
		}
	}
	return want, line
}
