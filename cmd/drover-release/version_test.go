package main

import (
	"os/exec"
	"testing"
)

func TestDebVersion(t *testing.T) {
	cases := []struct{ in, want string }{
		{"0.4.0", "0.4.0"},
		{"v0.4.0", "0.4.0"},
		{"0.4.0-3-gabc1234", "0.4.0+git3.gabc1234"},
		{"0.4.0-3-gabc1234-dirty", "0.4.0+git3.gabc1234.dirty"},
		{"0.4.0-dirty", "0.4.0+dirty"},
		{"0.0.0-72-g02ceecdc3b9e", "0.0.0+git72.g02ceecdc3b9e"},
		{"0.5.0-rc1", "0.5.0~rc1"},
		{"0.5.0-rc1-2-gabc", "0.5.0~rc1+git2.gabc"},
		{"1.0.0-beta-2", "1.0.0~beta.2"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			if got := DebVersion(c.in); got != c.want {
				t.Errorf("DebVersion(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// TestDebVersionOrder checks with dpkg itself that package versions sort
// in release order.
func TestDebVersionOrder(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed")
	}
	inOrder := []string{"0.4.0", "0.4.0-3-gabc1234", "0.4.0-12-gdef5678", "0.5.0-rc1", "0.5.0-rc1-1-g1234567", "0.5.0"}
	for i := 1; i < len(inOrder); i++ {
		a, b := DebVersion(inOrder[i-1]), DebVersion(inOrder[i])
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: %s (from %s) is not lower than %s (from %s)", a, inOrder[i-1], b, inOrder[i])
		}
	}
}
