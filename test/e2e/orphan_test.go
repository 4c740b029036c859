package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/crashtest"
	"github.com/drover-iot/drover/test/harness"
)

// The orphan tests crash a gateway with SIGKILL, as a power cut or systemd's
// final kill would, and check that its Modbus plugin does not live on with
// the serial port open.

const modbusPlugin = "drover-plugin-modbus"

// TestOrphanPluginDiesWithGateway: after SIGKILL of the gateway, its plugin
// process goes too, and nothing holds the RTU port any more.
func TestOrphanPluginDiesWithGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	g := newRTUGateway(t, startRTUSim(t))
	p := g.start()
	g.crash()
	awaitGone(t, p)
	if h := portHolders(g.port); len(h) > 0 {
		t.Errorf("%s still held by %s processes %v after the gateway and its plugin died", g.port, modbusPlugin, h)
	}
}

// TestOrphanRestartedGatewayReopensBus: a gateway restarted after a crash
// opens the same RTU port again, reads through it, and its new plugin is the
// only plugin process holding the port.
func TestOrphanRestartedGatewayReopensBus(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test starts real processes")
	}
	g := newRTUGateway(t, startRTUSim(t))
	first := g.start()
	g.crash()
	awaitGone(t, first)

	second := g.start() // same config, data dir and port
	if second.pid == first.pid {
		t.Fatalf("restarted gateway reports the old plugin %d", first.pid)
	}
	var last string
	poll(t, 20*time.Second, "pump-1 read through the reopened bus", g.stderr, func() (bool, string) {
		q, info := g.readQuality("pump-1", "temperature")
		last = info
		return q == "good", info
	})
	t.Logf("read after restart: %s", last)
	if h := portHolders(g.port); !slices.Equal(h, []int{second.pid}) {
		t.Errorf("%s held by %s processes %v, want only the new plugin %d", g.port, modbusPlugin, h, second.pid)
	}
}

// rtuGateway is the smallest gateway that starts the Modbus plugin with a
// serial port open: offline (no upstream section), one RTU bus on a devsim
// pseudo-terminal, one device.
type rtuGateway struct {
	t    *testing.T
	dir  string
	port string
	proc *harness.Proc
	api  string
}

// startRTUSim runs devsim serving unit 1 of the demo pump on a new
// pseudo-terminal and returns its path.
func startRTUSim(t *testing.T) string {
	t.Helper()
	sim := harness.Start(t, harness.Bin(t, "devsim"), "modbus", "--profile", filepath.Join(repoRoot(), "configs", "devsim", "demo-pump.yaml"),
		"--rtu", "--unit", "1", "--baud", "115200")
	port := sim.Await(t, "rtu:", 30*time.Second)
	sim.Await(t, "ready", 10*time.Second)
	return port
}

func newRTUGateway(t *testing.T, port string) *rtuGateway {
	return &rtuGateway{t: t, dir: t.TempDir(), port: port}
}

// pluginProc names one plugin process; started tells it from a later
// process that reuses its pid.
type pluginProc struct {
	pid     int
	started string
}

// start writes the configuration (with a fresh local API address), runs
// `drover run`, and returns the plugin process once the gateway's API
// answers and the plugin holds the port.
func (g *rtuGateway) start() pluginProc {
	t := g.t
	t.Helper()
	g.api = freeAddr(t)
	path := filepath.Join(g.dir, "gateway.yaml")
	harness.GatewayConfig{
		ID: "gw-orphan", DataDir: filepath.Join(g.dir, "data"), LocalAPI: g.api,
		PluginsDir: filepath.Dir(harness.Bin(t, modbusPlugin)), RestartBackoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second},
		ProfilesDir: filepath.Join(repoRoot(), "configs", "devsim"),
		Buses:       []harness.Bus{{Name: "rs485-1", Mode: "rtu", Port: g.port, Baud: 115200, Timeout: 300 * time.Millisecond}},
		Devices:     []harness.Device{{ID: "pump-1", Bus: "rs485-1", Address: 1, Profile: "demo-pump", Poll: 500 * time.Millisecond}},
	}.Write(t, path)
	g.proc = harness.Start(t, harness.Bin(t, "drover"), "run", "-c", path, "--log-level", "info")

	client := http.Client{Timeout: 2 * time.Second}
	poll(t, 60*time.Second, "gateway local API up", g.stderr, func() (bool, string) {
		resp, err := client.Get("http://" + g.api + "/v1/status")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	var p pluginProc
	poll(t, 30*time.Second, "plugin holds the port", g.stderr, func() (bool, string) {
		p.pid = harness.ChildPID(g.proc.Cmd.Process.Pid, modbusPlugin)
		h := portHolders(g.port)
		return p.pid != 0 && slices.Contains(h, p.pid), fmt.Sprintf("plugin %d, holders %v", p.pid, h)
	})
	if p.started = procStarted(p.pid); p.started == "" {
		t.Fatalf("plugin %d gone right after it opened %s", p.pid, g.port)
	}
	return p
}

// crash kills the gateway with SIGKILL: no shutdown code runs.
func (g *rtuGateway) crash() { g.proc.Kill() }

func (g *rtuGateway) stderr() string {
	if g.proc == nil {
		return ""
	}
	return harness.Tail(g.proc.Stderr(), 40)
}

// readQuality reads one point through the local API and returns its quality
// plus a description for failure messages.
func (g *rtuGateway) readQuality(device, point string) (string, string) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+g.api+"/v1/devices/"+device+"/read", "application/json",
		strings.NewReader(`{"points":["`+point+`"]}`))
	if err != nil {
		return "", err.Error()
	}
	defer resp.Body.Close()
	var rr struct {
		Values []struct {
			Point   string `json:"point"`
			Value   any    `json:"value"`
			Quality string `json:"quality"`
			Error   string `json:"error"`
		} `json:"values"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rr); err != nil {
		return "", fmt.Sprintf("%s: %v", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || len(rr.Values) != 1 {
		return "", fmt.Sprintf("%s: %+v", resp.Status, rr)
	}
	v := rr.Values[0]
	return v.Quality, fmt.Sprintf("%s=%v (%s%s)", v.Point, v.Value, v.Quality, v.Error)
}

// awaitGone waits for a plugin process to end. It is not our child, so
// there is no exit to wait on: poll /proc with a generous deadline.
func awaitGone(t *testing.T, p pluginProc) {
	t.Helper()
	t.Cleanup(func() { // leave no orphan behind when the test fails
		if procStarted(p.pid) == p.started {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	poll(t, 10*time.Second, fmt.Sprintf("plugin %d gone after the gateway was killed", p.pid), nil, func() (bool, string) {
		return procStarted(p.pid) != p.started, "still running"
	})
}

// poll checks cond every 25 ms until it holds or timeout passes; these
// conditions concern other processes, which send no event to wait on.
func poll(t *testing.T, timeout time.Duration, what string, logs func() string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, info := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s: not within %s (last: %s)", what, timeout, info)
			if logs != nil {
				msg += "\ngateway stderr:\n" + logs()
			}
			t.Fatal(msg)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// procStarted returns the start time of a live process, "" when pid is
// gone or a zombie: an orphan's new parent may be slow to reap it, or never do.
func procStarted(pid int) string {
	started, _ := crashtest.ProcStat(pid)
	return started
}

// portHolders lists the live Modbus plugin processes that have path open,
// in pid order. (devsim keeps the pseudo-terminal's slave end open too; it
// is not counted.)
func portHolders(path string) []int {
	var pids []int
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err != nil || target != path {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err != nil || slices.Contains(pids, pid) || procStarted(pid) == "" {
			continue
		}
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmd), modbusPlugin) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}
