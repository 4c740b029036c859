package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/localapi"
	"github.com/drover-iot/drover/plugins"
)

// apiBackend is a fake localapi.Backend (and JobLister) with canned
// answers: the consumer boundary of the CLI's HTTP calls.
type apiBackend struct{}

var gwTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func notFound(id string) error { return plugins.Errorf(plugins.CodeNotFound, "unknown device %q", id) }

func (apiBackend) Status(context.Context) (localapi.Status, error) {
	return localapi.Status{
		GatewayID: "gw-plant1", Version: "0.3.0", Uptime: localapi.Duration(26*time.Hour + 3*time.Minute + 4*time.Second),
		Upstream: localapi.UpstreamStatus{Configured: true, Connected: false, Hub: "hub.plant.local", Since: gwTime.Add(-95 * time.Second), LastError: "connection refused"},
		Plugins: []localapi.PluginStatus{
			{Name: "modbus", Version: "0.3.0", State: "up"},
			{Name: "serial", Version: "0.3.0", State: "restarting", Restarts: 3, LastError: "exit status 2"},
		},
		Buses: []localapi.BusStatus{
			{Name: "rs485-1", Plugin: "modbus", State: "open", Transactions: 12840, Timeouts: 17, Errors: 2, Queue: 1},
			{Name: "mcu-uart", Plugin: "serial", State: "plugin-down"},
		},
		Devices: 3, ConfigHash: "sha256:4f2a9c",
		Outbox: &localapi.OutboxStatus{Depth: 412, Bytes: 187_392, Dropped: 0},
	}, nil
}

func (apiBackend) Devices(context.Context) ([]localapi.DeviceInfo, error) {
	return []localapi.DeviceInfo{
		{ID: "pump-1", Bus: "rs485-1", Address: 3, Profile: "acme-pump", State: "connected", LastSeen: gwTime.Add(-2 * time.Second)},
		{ID: "pump-2", Bus: "rs485-1", Address: 4, Profile: "acme-pump", State: "timeout", LastSeen: gwTime.Add(-3 * time.Minute), LastError: "no answer after 2 attempts"},
		{ID: "mcu-1", Bus: "mcu-uart", Profile: "mcu", State: "plugin-down"},
	}, nil
}

func (apiBackend) Twin(_ context.Context, id string) (map[string]any, error) {
	if id != "pump-1" {
		return nil, notFound(id)
	}
	return map[string]any{
		"deviceId": "pump-1",
		"tags":     map[string]any{"site": "plant1"},
		"properties": map[string]any{
			"desired":  map[string]any{"config": map[string]any{"setpoint": 21.5}, "$version": 4},
			"reported": map[string]any{"points": map[string]any{"temperature": 20.9, "running": true}, "$version": 118},
		},
	}, nil
}

func (apiBackend) Read(_ context.Context, id string, points []string) ([]plugins.PointValue, error) {
	if id != "pump-1" {
		return nil, notFound(id)
	}
	all := map[string]plugins.PointValue{
		"temperature": {Point: "temperature", Value: plugins.Value{Kind: plugins.KindFloat, Float: 20.9}, Time: gwTime},
		"running":     {Point: "running", Value: plugins.Value{Kind: plugins.KindBool, Bool: true}, Time: gwTime},
		"mode":        {Point: "mode", Value: plugins.Value{Kind: plugins.KindString, String: "auto"}, Time: gwTime},
		"pressure":    {Point: "pressure", Quality: plugins.QualityBad, Error: "exception 2 (illegal data address)", Time: gwTime},
	}
	if len(points) == 0 {
		points = []string{"temperature", "running", "mode", "pressure"}
	}
	var out []plugins.PointValue
	for _, p := range points {
		v, ok := all[p]
		if !ok {
			return nil, plugins.Errorf(plugins.CodeNotFound, "pump-1 has no point %q", p)
		}
		out = append(out, v)
	}
	return out, nil
}

func (apiBackend) Write(_ context.Context, id string, values map[string]any) ([]plugins.WriteResult, error) {
	if id != "pump-1" {
		return nil, notFound(id)
	}
	var out []plugins.WriteResult
	for _, p := range []string{"setpoint", "mode", "enabled", "readonly"} {
		v, ok := values[p]
		if !ok {
			continue
		}
		r := plugins.WriteResult{Point: p, OK: true}
		switch p {
		case "setpoint":
			n, _ := v.(json.Number).Float64()
			r.ReadBack = &plugins.Value{Kind: plugins.KindFloat, Float: n}
		case "readonly":
			r.OK, r.Error = false, "point is not writable"
		}
		out = append(out, r)
	}
	return out, nil
}

func (apiBackend) Invoke(_ context.Context, id, method string, payload json.RawMessage) (int, any, error) {
	if id != "pump-1" {
		return 0, nil, notFound(id)
	}
	switch method {
	case "identify":
		return 200, map[string]any{"manufacturer": "Acme", "model": "P100", "serial": "A-0042"}, nil
	case "reboot":
		var p struct{ Force bool }
		_ = json.Unmarshal(payload, &p)
		if !p.Force {
			return 409, map[string]any{"error": "in use: running is true (use force)"}, nil
		}
		return 202, map[string]any{"status": "accepted", "jobId": "j-17"}, nil
	}
	return 0, nil, plugins.Errorf(plugins.CodeUnsupported, "no method %q", method)
}

func (apiBackend) Scan(ctx context.Context, bus string, from, to int, force bool, progress func(plugins.ScanEvent)) error {
	switch bus {
	case "rs485-1":
	case "lan":
		if !force {
			return plugins.Errorf(plugins.CodeBusy, "bus lan is being polled (use --force)")
		}
	case "flaky":
		progress(plugins.ScanEvent{Address: 1})
		return plugins.Errorf(plugins.CodeUnavailable, "plugin modbus went down")
	default:
		return plugins.Errorf(plugins.CodeNotFound, "unknown bus %q", bus)
	}
	if from == 0 && to == 0 {
		from, to = 1, 5
	}
	for a := from; a <= to; a++ {
		ev := plugins.ScanEvent{Address: a}
		switch a {
		case 3:
			ev.Found, ev.Identity = true, &plugins.Identity{Manufacturer: "Acme", Model: "P100", Serial: "A-0042", FirmwareVersion: "1.4.2"}
		case 4:
			ev.Found = true
		case 5:
			ev.Error = "CRC error"
		}
		progress(ev)
	}
	return nil
}

func (apiBackend) Jobs(_ context.Context, device string) ([]localapi.JobInfo, error) {
	all := []localapi.JobInfo{
		{ID: "j-17", Device: "pump-1", Kind: "reboot", Source: "hub-method", State: "waiting", Reason: "outside maintenance window", Created: gwTime.Add(-10 * time.Minute)},
		{ID: "j-16", Device: "mcu-1", Kind: "firmware", Source: "desired", State: "running", Attempts: 1, Progress: 42, Created: gwTime.Add(-time.Hour)},
	}
	var out []localapi.JobInfo
	for _, j := range all {
		if device == "" || j.Device == device {
			out = append(out, j)
		}
	}
	return out, nil
}

func (b apiBackend) Job(ctx context.Context, id string) (localapi.JobDetail, error) {
	js, _ := b.Jobs(ctx, "")
	for _, j := range js {
		if j.ID != id {
			continue
		}
		d := localapi.JobDetail{JobInfo: j, Bus: "rs485-1"}
		switch id {
		case "j-16":
			d.Payload = json.RawMessage(`{"version":"1.1.0"}`)
			d.MaxAttempts, d.Started, d.Message = 3, gwTime.Add(-50*time.Minute), "writing block 42 of 100"
		case "j-17":
			d.Payload, d.Disruptive = json.RawMessage(`{}`), true
			d.NotBefore = gwTime.Add(2 * time.Hour)
		}
		return d, nil
	}
	return localapi.JobDetail{}, plugins.Errorf(plugins.CodeNotFound, "no job %s", id)
}

const apiToken = "t0ken-for-tests"

// startAPI runs a real local API server backed by apiBackend until the
// test ends and returns its address.
func startAPI(t *testing.T, addr string) string {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s, err := localapi.New(localapi.Options{Addr: addr, Backend: apiBackend{}, Token: apiToken, Now: func() time.Time { return gwTime }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("local api: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("local api Run: %v", err)
		}
	})
	return s.Addr()
}

// clearEnv makes the test independent of the machine's DROVER_* variables.
func clearEnv(t *testing.T) {
	t.Helper()
	t.Setenv(envAPI, "")
	t.Setenv(envToken, "")
}

// drover runs the CLI in-process, as cmd/drover does.
func drover(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

// scrub replaces run-specific strings (addresses, temp dirs) with stable
// names for golden files.
func scrub(s string, repl map[string]string) string {
	for from, to := range repl {
		if from != "" {
			s = strings.ReplaceAll(s, from, to)
		}
	}
	return s
}
