package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/drover-iot/drover/internal/smpsim"
)

// TestImageCommand: devsim image writes an MCUboot image of the version
// asked (with the simulator's crash marker under --fail-boot) and refuses
// bad flags with the flag's name.
func TestImageCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) error {
		cmd := newImageCmd()
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		return cmd.Execute()
	}
	good := filepath.Join(dir, "good.bin")
	if err := run("--version", "1.2.3+4", "--size", "1000", "-o", good); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	im, err := mcuboot.Parse(b)
	if err != nil {
		t.Fatalf("written image does not parse: %v", err)
	}
	if im.Version.String() != "1.2.3.4" { // MCUboot prints the build number after a dot
		t.Errorf("version %s", im.Version)
	}
	bad := filepath.Join(dir, "bad.bin")
	if err := run("--version", "1.2.4", "--size", "1000", "--fail-boot", "-o", bad); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(bad)
	if !bytes.Contains(b, []byte(smpsim.BadImageMarker)) {
		t.Error("--fail-boot image lacks the simulator's crash marker")
	}
	pump := filepath.Join(dir, "pump.bin")
	if err := run("--format", "modbus", "--version", "2.4", "--size", "500", "-o", pump); err != nil {
		t.Fatal(err)
	}
	if b, _ = os.ReadFile(pump); !bytes.HasPrefix(b, []byte(modbussim.ImageMagic+"2.4\n")) || len(b) != 500 {
		t.Errorf("modbus image starts %q, %d bytes", b[:min(len(b), 16)], len(b))
	}
	if err := run("--format", "modbus", "--version", "2.5", "--size", "500", "--fail-boot", "-o", pump); err != nil {
		t.Fatal(err)
	}
	if b, _ = os.ReadFile(pump); !bytes.HasPrefix(b, []byte(modbussim.BadBootMagic)) {
		t.Errorf("--fail-boot modbus image starts %q", b[:16])
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--version", "one", "-o", good}, "--version"},
		{[]string{"--version", "1.0.0", "--size", "0", "-o", good}, "--size"},
		{[]string{"--version", "1.0.0"}, "-o"},
		{[]string{"--format", "hex", "--version", "1.0.0", "-o", good}, "--format"},
		{[]string{"--format", "modbus", "--version", "a b", "-o", good}, "--version"},
		{[]string{"--format", "hex", "--version", "1.0.0", "-o", good}, "--format"},
		{[]string{"--format", "modbus", "--version", "a b", "-o", good}, "--version"},
		{[]string{"--version", "1.0.0", "-o", filepath.Join(dir, "no", "such", "dir")}, "write image"},
	} {
		if err := run(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one naming %s", c.args, err, c.want)
		}
	}
}
