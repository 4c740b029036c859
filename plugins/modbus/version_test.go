package modbus

import (
	"context"
	"testing"

	"github.com/drover-iot/drover/internal/version"
)

// TestDescribeReportsReleaseVersion: the plugin reports the release it was
// built in (internal/version, stamped by make with -X), so `drover status`
// shows which build of each plugin runs, like `drover version` does for the
// gateway.
func TestDescribeReportsReleaseVersion(t *testing.T) {
	orig := version.Version
	t.Cleanup(func() { version.Version = orig })
	for _, v := range []string{"dev", "0.4.0-3-gabc1234"} {
		t.Run(v, func(t *testing.T) {
			version.Version = v
			d, err := New(Options{}).Describe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d.Version != v {
				t.Errorf("Describe().Version = %q, want the stamped %q", d.Version, v)
			}
		})
	}
}
