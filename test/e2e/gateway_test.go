// Package e2e runs Drover end to end with real processes: droverhub, devsim,
// drover (the gateway) and the Modbus plugin it starts.
package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goburrow/modbus"

	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/test/harness"
)

type system struct {
	t       *testing.T
	hub     *harness.Hub
	svc     *serviceclient.Client
	sim     *harness.Proc
	simTCP  string
	gw      *harness.Proc
	dir     string
	api     string
	token   string
	binDir  string
	gwID    string
	devices []string
}

func repoRoot() string { return harness.RepoRoot() }

func freeAddr(t *testing.T) string { return harness.FreeAddr(t) }

// start brings up hub, simulator and gateway; the gateway's children are
// provisioned through an enrollment group, with no hand work.
func start(t *testing.T) *system {
	s := &system{t: t, dir: t.TempDir(), gwID: "gw-e2e"}
	s.hub = harness.StartHub(t, "")
	s.svc = s.hub.Service(t)
	connStr, childrenKey := harness.ProvisionGateway(t, s.svc, s.hub.Hostname, s.gwID, "e2e-line", s.dir)

	// Units 1-3 answer on TCP and RTU; unit 9 does not exist (a dead device).
	s.sim = harness.Start(t, harness.Bin(t, "devsim"), "modbus", "--profile", filepath.Join(repoRoot(), "configs", "devsim", "demo-pump.yaml"),
		"--tcp", "127.0.0.1:0", "--rtu", "--units", "1-3", "--baud", "115200")
	s.simTCP = s.sim.Await(t, "tcp:", 30*time.Second)
	rtu := s.sim.Await(t, "rtu:", 10*time.Second)
	s.sim.Await(t, "ready", 10*time.Second)

	s.binDir = filepath.Dir(harness.Bin(t, "drover-plugin-modbus"))
	s.api = freeAddr(t)
	s.devices = []string{"pump-1", "pump-2", "pump-3", "dead-9"}
	const poll = 500 * time.Millisecond
	harness.GatewayConfig{
		ID: s.gwID, DataDir: filepath.Join(s.dir, "data"), LocalAPI: s.api,
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: s.hub.MQTTAddr, CAFile: s.hub.CAFile,
			ChildrenKeyFile: childrenKey, TokenTTL: time.Hour},
		PluginsDir: s.binDir, RestartBackoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second},
		ProfilesDir: filepath.Join(repoRoot(), "configs", "devsim"),
		Buses: []harness.Bus{
			{Name: "plant-lan", Mode: "tcp", Address: s.simTCP, Timeout: 500 * time.Millisecond},
			{Name: "rs485-1", Mode: "rtu", Port: rtu, Baud: 115200, Timeout: 300 * time.Millisecond, Retries: harness.Retries(0)},
		},
		Devices: []harness.Device{
			{ID: "pump-1", Bus: "plant-lan", Address: 1, Profile: "demo-pump", Poll: poll},
			{ID: "pump-2", Bus: "rs485-1", Address: 2, Profile: "demo-pump", Poll: poll},
			{ID: "pump-3", Bus: "rs485-1", Address: 3, Profile: "demo-pump", Poll: poll},
			{ID: "dead-9", Bus: "rs485-1", Address: 9, Profile: "demo-pump", Poll: poll},
		},
	}.Write(t, filepath.Join(s.dir, "gateway.yaml"))
	s.runGateway()
	return s
}

// runGateway starts `drover run` on s.dir/gateway.yaml (data in s.dir/data),
// waits for its local API and reads the API token it wrote.
func (s *system) runGateway() {
	t := s.t
	t.Helper()
	s.gw = harness.Start(t, harness.Bin(t, "drover"), "run", "-c", filepath.Join(s.dir, "gateway.yaml"), "--log-level", "info")
	s.waitAPI()
	tok, err := os.ReadFile(filepath.Join(s.dir, "data", "api.token"))
	if err != nil {
		t.Fatalf("read the gateway's API token: %v", err)
	}
	s.token = strings.TrimSpace(string(tok))
}

func write(t *testing.T, p, content string) { harness.WriteFile(t, p, content) }

func (s *system) waitAPI() {
	s.eventually(s.t, 60*time.Second, "gateway local API up", func() (bool, string) {
		resp, err := http.Get("http://" + s.api + "/v1/status")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}

// eventually polls cond until it holds: the hub and gateway have no event
// this test could subscribe to for these conditions, so it polls with a deadline.
func (s *system) eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, info := cond()
		if ok {
			return
		}
		last = info
		time.Sleep(100 * time.Millisecond)
	}
	gwErr := ""
	if s.gw != nil {
		gwErr = harness.Tail(s.gw.Stderr(), 60)
	}
	t.Fatalf("%s: not within %s (last: %s)\ngateway stderr:\n%s", what, timeout, last, gwErr)
}

func (s *system) reported(id string) map[string]any {
	tw, err := s.svc.GetTwin(context.Background(), id)
	if err != nil {
		return nil
	}
	return tw.Properties.Reported
}

// path walks a twin section along keys.
var path = harness.Field

// invokeLocal calls a method through the gateway's local API.
func (s *system) invokeLocal(id, method, payload string) (int, string) {
	req, _ := http.NewRequest("POST", "http://"+s.api+"/v1/devices/"+id+"/methods/"+method, strings.NewReader(payload))
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var mr struct {
		Status int `json:"status"`
	}
	_ = json.Unmarshal(b, &mr)
	return mr.Status, string(b)
}

// gatewayStats calls the gateway's own "stats" method through the local API.
func (s *system) gatewayStats() map[string]any {
	req, _ := http.NewRequest("POST", "http://"+s.api+"/v1/devices/"+s.gwID+"/methods/stats", strings.NewReader("null"))
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		s.t.Fatalf("stats: %v: %s", err, b)
	}
	if r, ok := out["payload"].(map[string]any); ok {
		return r
	}
	s.t.Fatalf("stats: no payload: %s", b)
	return nil
}

func num(v any) float64 {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case float64:
		return x
	}
	return -1
}

// readSetpoint reads unit 1's setpoint register straight from the simulator over Modbus TCP.
func (s *system) readSetpoint() (float64, error) {
	h := modbus.NewTCPClientHandler(s.simTCP)
	h.SlaveId = 1
	h.Timeout = 2 * time.Second
	defer h.Close()
	b, err := modbus.NewClient(h).ReadHoldingRegisters(10, 2)
	if err != nil {
		return 0, err
	}
	return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
}

func TestGatewayEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	s := start(t)
	ctx := context.Background()

	t.Run("children provisioned and telemetry arrives", func(t *testing.T) {
		for _, id := range []string{"pump-1", "pump-2", "pump-3"} {
			s.eventually(t, 30*time.Second, id+" reports points", func() (bool, string) {
				rep := s.reported(id)
				return path(rep, "points", "temperature") != nil && path(rep, "connection", "state") == "online", fmt.Sprint(path(rep, "connection"))
			})
		}
		ev, err := s.svc.Events(ctx, "pump-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		defer ev.Close()
		e, err := ev.Next()
		if err != nil || e.DeviceID != "pump-1" || !strings.Contains(e.Body, "temperature") && !strings.Contains(e.Body, "pressure") && !strings.Contains(e.Body, "uptime") {
			t.Fatalf("telemetry: %+v %v", e, err)
		}
		if e.Properties["measuredAt"] == "" || e.MessageID == "" {
			t.Fatalf("telemetry without measuredAt/message id: %+v", e)
		}
		dev, err := s.svc.GetDevice(ctx, "pump-2")
		if err != nil || len(dev.ParentScopes) != 1 {
			t.Fatalf("pump-2 is not a child of the gateway: %+v %v", dev, err)
		}
		if id := path(s.reported("pump-1"), "device", "manufacturer"); id != "Acme" {
			t.Fatalf("reported.device.manufacturer = %v", id)
		}
	})

	t.Run("desired setpoint lands in the register", func(t *testing.T) {
		tw, err := s.svc.UpdateTwin(ctx, "pump-1", serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"config": map[string]any{"setpoint": 23.25}}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		version := num(tw.Properties.Desired["$version"])
		s.eventually(t, 20*time.Second, "setpoint written", func() (bool, string) {
			v, err := s.readSetpoint()
			return err == nil && v == 23.25, fmt.Sprint(v, err)
		})
		s.eventually(t, 20*time.Second, "reported.config applied", func() (bool, string) {
			c := path(s.reported("pump-1"), "config")
			m, _ := c.(map[string]any)
			return m["status"] == "applied" && num(m["version"]) == version, fmt.Sprint(c)
		})
		// A write to a read-only point is rejected and reported with its error.
		tw, err = s.svc.UpdateTwin(ctx, "pump-1", serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"config": map[string]any{"temperature": 1}}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		s.eventually(t, 20*time.Second, "reported.config rejected", func() (bool, string) {
			c := path(s.reported("pump-1"), "config")
			m, _ := c.(map[string]any)
			return m["status"] == "rejected" && path(m, "errors", "temperature") != nil, fmt.Sprint(c)
		})
	})

	t.Run("reboot goes silent and comes back", func(t *testing.T) {
		// Unforced: the job waits for the in-use rule (the pump is running) and can be cancelled.
		r, err := s.svc.InvokeMethod(ctx, "pump-3", serviceclient.MethodRequest{MethodName: "reboot", ResponseTimeoutInSeconds: 30})
		if err != nil || r.Status != 202 {
			t.Fatalf("reboot must start a job (202): %+v %v", r, err)
		}
		var accepted struct {
			JobID string `json:"jobId"`
		}
		if err := json.Unmarshal(r.Payload, &accepted); err != nil || accepted.JobID == "" {
			t.Fatalf("202 without a job id: %s", r.Payload)
		}
		s.eventually(t, 30*time.Second, "job waits for in-use", func() (bool, string) {
			j, _ := path(s.reported("pump-3"), "lastJob").(map[string]any)
			return j["id"] == accepted.JobID && j["state"] == "waiting" && j["reason"] == "in-use", fmt.Sprint(j)
		})
		st, body := s.invokeLocal("gw-e2e", "cancelJob", fmt.Sprintf(`{"jobId":%q}`, accepted.JobID))
		if st != 200 {
			t.Fatalf("cancelJob: %d %s", st, body)
		}
		s.eventually(t, 30*time.Second, "job cancelled", func() (bool, string) {
			j, _ := path(s.reported("pump-3"), "lastJob").(map[string]any)
			return j["id"] == accepted.JobID && j["state"] == "cancelled", fmt.Sprint(j)
		})
		// Forced: runs now; the unit goes silent and comes back.
		r, err = s.svc.InvokeMethod(ctx, "pump-3", serviceclient.MethodRequest{MethodName: "reboot", Payload: json.RawMessage(`{"force":true}`), ResponseTimeoutInSeconds: 30})
		if err != nil || r.Status != 202 {
			t.Fatalf("forced reboot: %+v %v", r, err)
		}
		s.eventually(t, 30*time.Second, "reboot done", func() (bool, string) {
			rb := path(s.reported("pump-3"), "reboot")
			m, _ := rb.(map[string]any)
			return m["status"] == "done" && m["lastReboot"] != nil, fmt.Sprint(rb)
		})
		s.eventually(t, 30*time.Second, "uptime restarted", func() (bool, string) {
			up := num(path(s.reported("pump-3"), "points", "uptime"))
			return up >= 0 && up < 30, fmt.Sprint(up)
		})
		s.eventually(t, 30*time.Second, "job succeeded", func() (bool, string) {
			j, _ := path(s.reported("pump-3"), "lastJob").(map[string]any)
			return j["kind"] == "reboot" && j["state"] == "succeeded", fmt.Sprint(j)
		})
	})

	t.Run("factory reset restores defaults", func(t *testing.T) {
		r, err := s.svc.InvokeMethod(ctx, "pump-1", serviceclient.MethodRequest{MethodName: "factoryReset", Payload: json.RawMessage(`{"force":true}`), ResponseTimeoutInSeconds: 30})
		if err != nil || r.Status != 202 {
			t.Fatalf("factory reset: %+v %v", r, err)
		}
		s.eventually(t, 30*time.Second, "setpoint back to its default", func() (bool, string) {
			v, err := s.readSetpoint()
			return err == nil && v == 21.5, fmt.Sprint(v, err)
		})
		s.eventually(t, 30*time.Second, "factoryReset done", func() (bool, string) {
			m, _ := path(s.reported("pump-1"), "factoryReset").(map[string]any)
			return m["status"] == "done", fmt.Sprint(m)
		})
	})

	t.Run("dead unit costs one timeout per back-off period", func(t *testing.T) {
		// Let the breaker open (three timeouts) and back off at least once.
		s.eventually(t, 30*time.Second, "dead unit's breaker opened twice", func() (bool, string) {
			b := path(s.gatewayStats(), "bridges", "buses", "rs485-1", "breakers", "dead-9")
			return num(path(map[string]any{"b": b}, "b", "opens")) >= 2, fmt.Sprint(b)
		})
		st1 := s.gatewayStats()
		time.Sleep(6 * time.Second) // the observation window itself
		st2 := s.gatewayStats()
		dev := func(st map[string]any, id, k string) float64 { return num(path(st, "bridges", "devices", id, k)) }
		deadErrs := dev(st2, "dead-9", "errors") - dev(st1, "dead-9", "errors")
		busTimeouts := num(path(st2, "bridges", "buses", "rs485-1", "timeouts")) - num(path(st1, "bridges", "buses", "rs485-1", "timeouts"))
		fastFails := num(path(st2, "bridges", "buses", "rs485-1", "fastFails")) - num(path(st1, "bridges", "buses", "rs485-1", "fastFails"))
		live := dev(st2, "pump-2", "polls") - dev(st1, "pump-2", "polls")
		// Unbroken, the dead unit would time out on every 500 ms cycle (12 in 6 s, 3.6 s of the line).
		// With the breaker it costs at most one timeout per back-off period.
		if busTimeouts > 4 {
			t.Errorf("dead unit cost %v bus timeouts in 6 s; want at most one per back-off period", busTimeouts)
		}
		if fastFails < 6 {
			t.Errorf("only %v of the dead unit's poll cycles were failed fast by its open breaker", fastFails)
		}
		if live < 8 {
			t.Errorf("pump-2 polled %v times in 6 s at a 500 ms interval next to a dead unit", live)
		}
		if path(s.reported("dead-9"), "connection", "state") == "online" {
			t.Error("dead unit reported online")
		}
		t.Logf("window 6s: dead-9 failed cycles %v (fast-failed %v), bus timeouts %v, pump-2 polls %v", deadErrs, fastFails, busTimeouts, live)
	})

	t.Run("killed plugin is restarted and polling resumes", func(t *testing.T) {
		pid := childPID(t, s.gw.Cmd.Process.Pid, "drover-plugin-modbus")
		before := num(path(s.gatewayStats(), "bridges", "devices", "pump-1", "polls"))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		s.eventually(t, 30*time.Second, "plugin restarted", func() (bool, string) {
			np := harness.ChildPID(s.gw.Cmd.Process.Pid, "drover-plugin-modbus")
			return np != 0 && np != pid, strconv.Itoa(np)
		})
		s.eventually(t, 30*time.Second, "polling resumed", func() (bool, string) {
			now := num(path(s.gatewayStats(), "bridges", "devices", "pump-1", "polls"))
			return now > before+3, fmt.Sprint(before, now)
		})
		s.eventually(t, 30*time.Second, "pump-1 online again", func() (bool, string) {
			st := path(s.reported("pump-1"), "connection", "state")
			return st == "online", fmt.Sprint(st)
		})
	})

	t.Run("gateway twin and overlay", func(t *testing.T) {
		s.eventually(t, 30*time.Second, "gateway reports itself", func() (bool, string) {
			rep := s.reported(s.gwID)
			return path(rep, "config", "hash") != nil && num(path(rep, "devices", "total")) >= 4, fmt.Sprint(rep)
		})
		// A bad overlay is rejected as a whole; the gateway keeps running.
		_, err := s.svc.UpdateTwin(ctx, s.gwID, serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"config": map[string]any{
			"devices": []any{map[string]any{"id": "pump-4", "bus": "nope", "address": 4, "profile": "demo-pump"}}}}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		s.eventually(t, 30*time.Second, "overlay rejected", func() (bool, string) {
			m, _ := path(s.reported(s.gwID), "configOverlay").(map[string]any)
			return m["status"] == "rejected" && strings.Contains(fmt.Sprint(m["errors"]), "nope"), fmt.Sprint(m)
		})
		// A good one adds a device, which is provisioned and bridged.
		_, err = s.svc.UpdateTwin(ctx, s.gwID, serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"config": map[string]any{
			"devices": []any{map[string]any{"id": "pump-4", "bus": "plant-lan", "address": 2, "profile": "demo-pump", "poll": "500ms"}}}}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		s.eventually(t, 30*time.Second, "overlay applied", func() (bool, string) {
			m, _ := path(s.reported(s.gwID), "configOverlay").(map[string]any)
			return m["status"] == "applied", fmt.Sprint(m)
		})
		s.eventually(t, 30*time.Second, "pump-4 online", func() (bool, string) {
			return path(s.reported("pump-4"), "connection", "state") == "online", ""
		})

		// After a restart the hub's desired is unchanged, so the twin sync
		// applies nothing: the overlay must come back from the twin cache.
		if err := s.gw.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.gw.Exited():
		case <-time.After(30 * time.Second):
			t.Fatal("gateway did not stop within 30s of SIGTERM")
		}
		s.gw = harness.Start(t, harness.Bin(t, "drover"), "run", "-c", filepath.Join(s.dir, "gateway.yaml"), "--log-level", "info")
		s.waitAPI()
		s.eventually(t, 30*time.Second, "pump-4 bridged again after the restart", func() (bool, string) {
			resp, err := http.Get("http://" + s.api + "/v1/devices")
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			var list struct {
				Devices []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"devices"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
				return false, err.Error()
			}
			devs := list.Devices
			for _, d := range devs {
				if d.ID == "pump-4" {
					return d.State == "online", d.State
				}
			}
			return false, fmt.Sprintf("%+v", devs)
		})
	})
}

func childPID(t *testing.T, parent int, name string) int {
	pid := harness.ChildPID(parent, name)
	if pid == 0 {
		t.Fatalf("no %s child of %d", name, parent)
	}
	return pid
}
