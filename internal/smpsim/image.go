package smpsim

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/drover-iot/drover/internal/mcuboot"
)

// BadImageMarker in an image's body makes the simulated image crash before
// it confirms itself, so MCUboot reverts it: a test's "bad firmware".
const BadImageMarker = "DROVER-SMPSIM-FAIL-BOOT"

// BuildImage returns an MCUboot image file (mcuboot.Build) of version v
// whose body is size deterministic bytes; bad puts BadImageMarker in the
// body. Tests and the demo use it to make firmware for the simulator.
func BuildImage(v mcuboot.Version, size int, bad bool) []byte {
	body := make([]byte, size)
	seed := uint32(v.Major)<<24 | uint32(v.Minor)<<16 | uint32(v.Revision) ^ v.Build*2654435761
	for i := range body {
		seed = seed*1664525 + 1013904223
		body[i] = byte(seed >> 24)
	}
	if bad && size >= len(BadImageMarker) {
		copy(body, BadImageMarker)
	}
	return mcuboot.Build(v, body)
}

// slot is one image slot's content: an image file or nothing (erased).
type slot struct {
	data []byte
	img  mcuboot.Image
}

func (s *slot) empty() bool { return s.data == nil }

// flash is the two slots of image 0 and MCUboot's view of them (the image
// trailers, reduced to what the swap-using-scratch mode needs).
type flash struct {
	primary, secondary slot
	// testPending: the secondary is marked for a test swap at next boot
	// (swap type TEST); permPending: for a permanent swap (PERM).
	testPending, permPending bool
	// confirmed is the primary's image-ok flag. After a test swap it is
	// false until the running image (or the host) confirms it; a reboot
	// while it is false reverts (swap type REVERT).
	confirmed bool
	failBoot  []mcuboot.Version
}

// bootResult says what MCUboot and the application did at one boot.
type bootResult struct {
	swap      string // none, test, perm, revert
	crashed   bool   // the new image crashed before confirming: MCUboot reverted at the next boot
	lines     []string
	rolledBad *mcuboot.Image
}

// boots reports whether the image in s would run (not marked bad).
func (f *flash) boots(s *slot) bool {
	if bytes.Contains(s.data, []byte(BadImageMarker)) {
		return false
	}
	return !slices.ContainsFunc(f.failBoot, func(v mcuboot.Version) bool { return v.Compare(s.img.Version) == 0 })
}

// boot runs MCUboot's decision at reset: swap per the trailers, then start
// the primary. An image that crashes before confirming is swapped back on
// the reboot that follows (modelled within this boot; its lines show it).
func (f *flash) boot() bootResult {
	var r bootResult
	say := func(format string, a ...any) { r.lines = append(r.lines, fmt.Sprintf(format, a...)) }
	say("*** Booting MCUboot v2.1.0 ***")
	say("I: Starting bootloader")
	switch {
	case !f.confirmed && !f.secondary.empty():
		// The running image was tested and never confirmed.
		r.swap = "revert"
		say("I: Swap type: revert")
		f.primary, f.secondary = f.secondary, f.primary
		f.confirmed = true
	case f.testPending || f.permPending:
		r.swap = "test"
		if f.permPending {
			r.swap = "perm"
		}
		say("I: Swap type: %s", r.swap)
		f.primary, f.secondary = f.secondary, f.primary
		f.confirmed = f.permPending
		f.testPending, f.permPending = false, false
	default:
		r.swap = "none"
		say("I: Swap type: none")
	}
	say("I: Bootloader chainload address offset: 0xc000")
	say("I: Jumping to the first image slot")
	if !f.boots(&f.primary) && !f.confirmed && !f.secondary.empty() {
		// The new image crashes before its self-test confirms it; the
		// watchdog resets, MCUboot finds it unconfirmed and reverts.
		r.crashed = true
		img := f.primary.img
		r.rolledBad = &img
		say("*** Booting Zephyr OS build v3.7.0 ***")
		say("[00:00:00.004,000] <err> os: ***** HARD FAULT *****")
		say("[00:00:00.004,000] <err> os: >>> ZEPHYR FATAL ERROR 0: CPU exception on CPU 0")
		say("*** Booting MCUboot v2.1.0 ***")
		say("I: Starting bootloader")
		say("I: Swap type: revert")
		f.primary, f.secondary = f.secondary, f.primary
		f.confirmed = true
		say("I: Jumping to the first image slot")
	}
	return r
}

// list is the image state answer: the primary always runs (active), the
// flags follow Zephyr's img_mgmt_state_flags for swap types NONE, TEST,
// PERM and REVERT.
func (f *flash) list() []imageEntry {
	out := []imageEntry{{slot: 0, img: f.primary.img, active: true, confirmed: f.confirmed}}
	if f.secondary.empty() {
		return out
	}
	e := imageEntry{slot: 1, img: f.secondary.img}
	switch {
	case f.testPending:
		e.pending = true
	case f.permPending:
		e.pending, e.permanent = true, true
	case !f.confirmed:
		// REVERT next boot: the image that comes back is the confirmed one.
		e.confirmed = true
	}
	out = append(out, e)
	return out
}

type imageEntry struct {
	slot                                  int
	img                                   mcuboot.Image
	active, confirmed, pending, permanent bool
}

// upload is the state of an image upload, kept in RAM.
type upload struct {
	active bool
	size   uint32
	off    uint32
	sha    []byte
	buf    []byte
	// resumed: the session was resumed and has not written since, so the
	// next chunk's offset is where the resume picked up.
	resumed bool
}

// finish checks a complete upload and moves it into the secondary slot.
// match reports whether a full 32-byte "sha" matched the data.
func (u *upload) finish() (img mcuboot.Image, match *bool, err error) {
	if len(u.sha) == sha256.Size {
		sum := sha256.Sum256(u.buf)
		m := bytes.Equal(sum[:], u.sha)
		match = &m
	}
	img, err = mcuboot.Parse(u.buf)
	return img, match, err
}
