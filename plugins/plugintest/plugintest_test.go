package plugintest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/drover-iot/drover/plugins/host"
	"github.com/drover-iot/drover/plugins/plugintest"
	"go.uber.org/goleak"
)

var pluginDir string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "drover-plugintest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := plugintest.BuildFakeInto(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginDir = dir
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

func fixture(t *testing.T) plugintest.Fixture {
	image := filepath.Join(t.TempDir(), "fw.bin")
	if err := os.WriteFile(image, make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	return plugintest.Fixture{
		Bus: plugins.BusConfig{Name: "bus-1", Config: json.RawMessage(`{"name":"bus-1","plugin":"fake","mode":"sim"}`)},
		Device: plugins.DeviceConfig{ID: "pump-1", Bus: "bus-1", Address: 3, Profile: json.RawMessage(
			`{"name":"acme","plugin":"fake","points":{"temperature":21.5,"running":true,"label":"P","count":7},"in_use":"running","read_back":true}`)},
		Points: []string{"temperature", "running", "label", "count"},
		Writes: []plugins.PointWrite{
			{Point: "temperature", Value: plugins.Value{Kind: plugins.KindFloat, Float: 30}},
			{Point: "count", Value: plugins.Value{Kind: plugins.KindInt, Int: -1}},
		},
		BadBus:     json.RawMessage(`{"name":"bus-1","baud":"fast"}`),
		BadProfile: json.RawMessage(`{"points":{"t":[1]},"in_use":"t","colour":"red"}`),
		Scan:       &plugins.ScanRequest{From: 1, To: 5},
		Manage:     true,
		Flash:      &plugins.FlashRequest{ImagePath: image, Manifest: json.RawMessage(`{"version":"2.0.0"}`)},
	}
}

func startProcess(t *testing.T) plugins.Plugin {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	inst, err := host.Start(ctx, host.Options{Dir: pluginDir}, "fake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Close)
	return inst.Plugin()
}

func startSupervised(t *testing.T) plugins.Plugin {
	h, err := host.New(host.Options{Dir: pluginDir, Plugins: []string{"fake"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	p, _ := h.Plugin("fake")
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := p.WaitUp(wctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestContract(t *testing.T) {
	fx := fixture(t)
	for _, tc := range []struct {
		name      string
		newPlugin func(t *testing.T) plugins.Plugin
	}{
		{"in-process", func(t *testing.T) plugins.Plugin { return plugintest.Connect(t, plugintest.NewFake()) }},
		{"in-process/read-only", func(t *testing.T) plugins.Plugin {
			f := plugintest.NewFake()
			f.Caps = []plugins.Capability{plugins.CapRead}
			return plugintest.Connect(t, f)
		}},
		{"child-process", startProcess},
		{"supervised", startSupervised},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plugintest.RunContract(t, tc.newPlugin, fx)
		})
	}
}

// TestErrorCodesCrossProcess scripts every error code inside the plugin
// and checks that the host sees the same code.
func TestErrorCodesCrossProcess(t *testing.T) {
	fx := fixture(t)
	for _, tc := range []struct {
		name      string
		newPlugin func(t *testing.T) plugins.Plugin
	}{
		{"in-process", func(t *testing.T) plugins.Plugin { return plugintest.Connect(t, plugintest.NewFake()) }},
		{"child-process", startProcess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.newPlugin(t)
			ctx := t.Context()
			if err := p.OpenBus(ctx, fx.Bus); err != nil {
				t.Fatal(err)
			}
			if err := p.Attach(ctx, fx.Device); err != nil {
				t.Fatal(err)
			}
			for c := plugins.CodeUnknown; c <= plugins.CodeGatewayTarget; c++ {
				t.Run(c.String(), func(t *testing.T) {
					_, err := p.Write(ctx, "any", []plugins.PointWrite{{Point: plugintest.FaultPoint,
						Value: plugins.Value{Kind: plugins.KindString, String: "identify:error=" + c.String()}}})
					if err != nil {
						t.Fatal(err)
					}
					_, err = p.Identify(ctx, fx.Device.ID)
					if got := plugins.CodeOf(err); got != c {
						t.Errorf("Identify with a scripted %v: got %v (%v)", c, got, err)
					}
				})
			}
		})
	}
}

func TestSlowScanHitsDeadline(t *testing.T) {
	f := plugintest.NewFake()
	p := plugintest.Connect(t, f)
	fx := fixture(t)
	if err := p.OpenBus(t.Context(), fx.Bus); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := p.Scan(ctx, plugins.ScanRequest{Bus: "bus-1", From: 1, To: 3, Interval: time.Hour}, nil)
	if plugins.CodeOf(err) != plugins.CodeTimeout {
		t.Errorf("slow scan: %v, want timeout", err)
	}
}

func TestFakeHangInProcessEndsWithContext(t *testing.T) {
	f := plugintest.NewFake()
	hung := make(chan struct{})
	f.Hang = func() { close(hung) }
	f.Arm("describe", plugintest.Fault{Action: plugintest.FaultHang})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := f.Describe(ctx)
		errc <- err
	}()
	<-hung
	cancel()
	if err := <-errc; err == nil {
		t.Error("hung Describe returned no error")
	}
}

func TestFakeCrashCallsExit(t *testing.T) {
	f := plugintest.NewFake()
	code := -1
	f.Exit = func(c int) { code = c }
	f.Arm("read", plugintest.Fault{Action: plugintest.FaultCrash, ExitCode: 9})
	_, err := f.Read(t.Context(), "x", nil)
	if code != 9 || plugins.CodeOf(err) != plugins.CodeUnavailable {
		t.Errorf("exit code %d, err %v", code, err)
	}
}

func TestFakeInUse(t *testing.T) {
	f := plugintest.NewFake()
	fx := fixture(t)
	ctx := t.Context()
	if err := f.OpenBus(ctx, fx.Bus); err != nil {
		t.Fatal(err)
	}
	if err := f.Attach(ctx, fx.Device); err != nil {
		t.Fatal(err)
	}
	if err := f.Reboot(ctx, fx.Device.ID, plugins.ManageOptions{}); plugins.CodeOf(err) != plugins.CodeInUse {
		t.Errorf("Reboot while running: %v, want in-use", err)
	}
	if err := f.Reboot(ctx, fx.Device.ID, plugins.ManageOptions{Force: true}); err != nil {
		t.Errorf("forced Reboot: %v", err)
	}
}

func TestParseFault(t *testing.T) {
	for _, tc := range []struct {
		in     string
		op     string
		want   plugintest.Fault
		wantOK bool
	}{
		{"read:crash", "read", plugintest.Fault{Action: plugintest.FaultCrash, ExitCode: 3}, true},
		{"read:crash=7", "read", plugintest.Fault{Action: plugintest.FaultCrash, ExitCode: 7}, true},
		{"scan:hang", "scan", plugintest.Fault{Action: plugintest.FaultHang}, true},
		{"write:error=busy", "write", plugintest.Fault{Action: plugintest.FaultError, Code: plugins.CodeBusy}, true},
		{"flash:error=gateway-target", "flash", plugintest.Fault{Action: plugintest.FaultError, Code: plugins.CodeGatewayTarget}, true},
		{"scan:delay=50ms", "", plugintest.Fault{}, false},
		{"", "", plugintest.Fault{}, false},
		{"read", "", plugintest.Fault{}, false},
		{"fly:crash", "", plugintest.Fault{}, false},
		{"read:explode", "", plugintest.Fault{}, false},
		{"read:crash=-1", "", plugintest.Fault{}, false},
		{"read:crash=x", "", plugintest.Fault{}, false},
		{"read:error=nope", "", plugintest.Fault{}, false},
		{"read:delay=-1s", "", plugintest.Fault{}, false},
		{"read:delay=soon", "", plugintest.Fault{}, false},
		{"\x00:\xff", "", plugintest.Fault{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			op, f, err := plugintest.ParseFault(tc.in)
			if (err == nil) != tc.wantOK || op != tc.op || f != tc.want {
				t.Errorf("ParseFault(%q) = %q, %+v, %v", tc.in, op, f, err)
			}
		})
	}
}
