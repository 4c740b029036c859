package cli

import (
	"testing"

	"github.com/drover-iot/drover/gateway/localapi"
)

// TestProgressTextNamesPort: a serial scan's answer says which port it
// came from (its address is only the port's index).
func TestProgressTextNamesPort(t *testing.T) {
	for _, tc := range []struct {
		p    localapi.ScanProgress
		want string
	}{
		{localapi.ScanProgress{Address: 1, Found: true, Identity: &localapi.Identity{FirmwareVersion: "1.2.0",
			Extra: map[string]string{"port": "/dev/serial/by-id/usb-mcu"}}}, "    1  found (firmware 1.2.0, port /dev/serial/by-id/usb-mcu)"},
		{localapi.ScanProgress{Address: 3, Found: true, Identity: &localapi.Identity{Manufacturer: "Acme", FirmwareVersion: "2"}}, "    3  found  Acme (firmware 2)"},
	} {
		if got := progressText(tc.p); got != tc.want {
			t.Errorf("progressText = %q, want %q", got, tc.want)
		}
	}
}
