package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/mcuboot"
	"github.com/drover-iot/drover/internal/smpsim"
)

// newImageCmd writes firmware images the simulators accept, so a demo or
// a test can publish an update without a Zephyr toolchain.
func newImageCmd() *cobra.Command {
	var version, out string
	var size int
	var failBoot bool
	cmd := &cobra.Command{
		Use:   "image --version V -o FILE",
		Short: "Write an MCUboot image that devsim serial boots (or, with --fail-boot, that crashes and is reverted)",
		Example: `  devsim image --version 1.1.0 -o mcu-1.1.0.bin
  devsim image --version 1.2.0 --fail-boot -o mcu-1.2.0-bad.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := mcuboot.ParseVersion(version)
			if err != nil {
				return fmt.Errorf("--version %q: %w", version, err)
			}
			if size <= 0 || size > smpsim.DefaultSlotSize-4096 {
				return fmt.Errorf("--size %d: want 1..%d (the simulator's slot, less header and trailer)", size, smpsim.DefaultSlotSize-4096)
			}
			if out == "" {
				return fmt.Errorf("-o FILE is required")
			}
			img := smpsim.BuildImage(v, size, failBoot)
			if err := os.WriteFile(out, img, 0o644); err != nil {
				return fmt.Errorf("write image: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: MCUboot image %s, %d bytes\n", out, v, len(img))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&version, "version", "", "image version, major.minor.revision[+build]")
	fl.IntVar(&size, "size", 64<<10, "body size in bytes")
	fl.BoolVar(&failBoot, "fail-boot", false, "the image crashes at boot (the device reverts to the old one)")
	fl.StringVarP(&out, "output", "o", "", "file to write")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}
