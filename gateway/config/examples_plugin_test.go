package config

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/drover-iot/drover/plugins/modbus"
	"github.com/drover-iot/drover/plugins/serial"
)

// TestExamplesWithPlugins runs the example gateway files through Check with
// the real modbus and serial plugins' validation, so the examples stay
// valid for the plugins too (their keys, quirks, methods, points).
func TestExamplesWithPlugins(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(configsDir, "gateway", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example gateway files: %v", err)
	}
	validators := map[string]PluginValidator{
		"modbus": modbus.New(modbus.Options{}),
		"serial": serial.New(serial.Options{}),
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			problems, err := Check(context.Background(), f, validators)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if len(problems) > 0 {
				t.Errorf("problems:\n%s", problemsText(problems))
			}
		})
	}
}
