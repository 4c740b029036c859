package daemon

import "testing"

// TestDefaultScanRange: Modbus scans unit ids, the serial plugin every
// port (address 0 is its bus's own port).
func TestDefaultScanRange(t *testing.T) {
	for _, tc := range []struct {
		plugin   string
		from, to int
	}{{"modbus", 1, 247}, {"serial", 0, 255}, {"other", 1, 247}} {
		if from, to := defaultScanRange(tc.plugin); from != tc.from || to != tc.to {
			t.Errorf("%s: %d..%d, want %d..%d", tc.plugin, from, to, tc.from, tc.to)
		}
	}
}
