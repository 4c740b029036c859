package bridges

import (
	"fmt"
	"testing"

	"github.com/drover-iot/drover/plugins"
)

// TestIdentityPatch: reported.device carries the identity's Extra entries
// (an SMP device's image slots) as flat, valid twin keys; an extra that
// disappears is deleted with null; a fixed key is never replaced.
func TestIdentityPatch(t *testing.T) {
	d := &device{}
	first := plugins.Identity{FirmwareVersion: "1.0.0", Extra: map[string]string{
		"slot0Version": "1.0.0", "slot1Version": "1.1.0", "os.info": "Zephyr", "firmwareVersion": "spoof"}}
	p := d.identityPatchLocked(first)
	got := fmt.Sprint(p["device"])
	want := "map[firmwareVersion:1.0.0 manufacturer: model: os_info:Zephyr serial: slot0Version:1.0.0 slot1Version:1.1.0]"
	if got != want {
		t.Fatalf("first patch = %s\nwant          %s", got, want)
	}
	if p := d.identityPatchLocked(first); p != nil {
		t.Fatalf("same identity again: patch %v, want none", p)
	}
	second := plugins.Identity{FirmwareVersion: "1.1.0", Extra: map[string]string{"slot0Version": "1.1.0"}}
	got = fmt.Sprint(d.identityPatchLocked(second)["device"])
	want = "map[firmwareVersion:1.1.0 manufacturer: model: os_info:<nil> serial: slot0Version:1.1.0 slot1Version:<nil>]"
	if got != want {
		t.Fatalf("second patch = %s\nwant           %s", got, want)
	}
}
