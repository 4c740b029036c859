package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGatewayImportsNoHub enforces the layering rule that keeps the hub off
// gateway hardware: the gateway and the hub meet only on the wire. The
// drover binary, the plugins it starts and every non-test package under
// gateway/ depend on nothing from localhub/ (nor on the MQTT server engine
// only the hub uses). Test files may still start an in-process hub through
// localhub/hubtest as a real peer; they are not linked into any binary.
func TestGatewayImportsNoHub(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	forbidden := []string{
		"github.com/drover-iot/drover/localhub",
		"github.com/mochi-mqtt/server",
	}
	cases := []struct {
		name     string
		patterns []string
	}{
		{name: "drover binary", patterns: []string{"github.com/drover-iot/drover/cmd/drover"}},
		{name: "modbus plugin binary", patterns: []string{"github.com/drover-iot/drover/cmd/drover-plugin-modbus"}},
		{name: "gateway packages", patterns: []string{"github.com/drover-iot/drover/gateway/..."}},
		{name: "bridges and plugins", patterns: []string{"github.com/drover-iot/drover/bridges/...", "github.com/drover-iot/drover/plugins/..."}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// -deps without -test: what the packages link, not what their tests use.
			args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, c.patterns...)
			out, err := exec.Command("go", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 5 {
				t.Fatalf("go list %v found only %v", c.patterns, deps)
			}
			for _, dep := range deps {
				for _, f := range forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%v depends on %s: the gateway must not link hub code (talk to the hub over MQTT/HTTPS instead)", c.patterns, dep)
					}
				}
			}
		})
	}
}
