package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/drover-iot/drover/internal/smpsim"
)

// newImageCmd writes firmware images the simulators accept, so a demo or
// a test can publish an update without a Zephyr toolchain.
func newImageCmd() *cobra.Command {
	var version, out, format string
	var size int
	var failBoot bool
	cmd := &cobra.Command{
		Use:   "image --version V -o FILE",
		Short: "Write a firmware image a simulator boots (or, with --fail-boot, one that fails to boot and is rolled back)",
		Long: `image writes a firmware image for the simulators, so a demo or a test can publish an
update without a toolchain: --format mcuboot (default) is an MCUboot image devsim serial
boots; --format modbus is a devsim modbus image ("DEVSIM-FW <version>" header, or
"BADBOOT" with --fail-boot).`,
		Example: `  devsim image --version 1.1.0 -o mcu-1.1.0.bin
  devsim image --version 1.2.0 --fail-boot -o mcu-1.2.0-bad.bin
  devsim image --format modbus --version 2.4 -o pump-2.4.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("-o FILE is required")
			}
			var img []byte
			switch format {
			case "mcuboot":
				v, err := mcuboot.ParseVersion(version)
				if err != nil {
					return fmt.Errorf("--version %q: %w", version, err)
				}
				if size <= 0 || size > smpsim.DefaultSlotSize-4096 {
					return fmt.Errorf("--size %d: want 1..%d (the simulator's slot, less header and trailer)", size, smpsim.DefaultSlotSize-4096)
				}
				img = smpsim.BuildImage(v, size, failBoot)
			case "modbus":
				if version == "" || strings.ContainsAny(version, " \n\r") {
					return fmt.Errorf("--version %q: want a version without spaces", version)
				}
				if size <= 0 || size > 16<<20 {
					return fmt.Errorf("--size %d: want 1..%d", size, 16<<20)
				}
				img = modbussim.FirmwareImage(version, size)
				if failBoot {
					copy(img, modbussim.BadBootMagic)
				}
			default:
				return fmt.Errorf("--format %q: want mcuboot or modbus", format)
			}
			if err := os.WriteFile(out, img, 0o644); err != nil {
				return fmt.Errorf("write image: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s image %s, %d bytes\n", out, format, version, len(img))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&version, "version", "", "image version (mcuboot: major.minor.revision[+build])")
	fl.StringVar(&format, "format", "mcuboot", "mcuboot (devsim serial) or modbus (devsim modbus)")
	fl.IntVar(&size, "size", 64<<10, "body size in bytes")
	fl.BoolVar(&failBoot, "fail-boot", false, "the image crashes at boot (the device reverts to the old one)")
	fl.StringVarP(&out, "output", "o", "", "file to write")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}
