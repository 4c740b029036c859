package soak

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goburrow/modbus"
	_ "github.com/mattn/go-sqlite3"

	"github.com/drover-iot/drover/gateway/outbox"
	"github.com/drover-iot/drover/internal/crashtest"
	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/test/harness"
)

// inflightPerIdentity is how many telemetry entries of one identity can be
// sent but not yet acked in the outbox when a fault strikes: the drainer
// takes up to Batch (default 32) telemetry rows per identity per turn and
// writes the acks per turn (outbox.Drainer doc). It bounds the duplicates
// one fault may cause per identity.
const inflightPerIdentity = 32

// drainWorkers is the drainer's default number of identities sending at
// once (outbox.DrainerOptions.Workers).
const drainWorkers = 64

// soakProfile is both the simulator's profile and the gateway's device
// profile: values change faster than the 200 ms poll so telemetry flows.
const soakProfile = `name: soak-pump
plugin: modbus
points:
  - name: pressure
    table: holding
    address: 2
    type: float32
    byte_order: ABCD
    unit: bar
    sim: { kind: random_walk, value: 4.2, min: 3.5, max: 5.0, step: 0.05, period: 100ms }
  - name: setpoint
    table: holding
    address: 10
    type: float32
    byte_order: ABCD
    writable: true
    sim: { kind: constant, value: 21.5 }
  - name: uptime
    table: input
    address: 0
    type: uint32
    unit: s
    sim: { kind: counter, value: 0, step: 1, period: 200ms }
  - name: running
    table: coil
    address: 0
    type: bool
    sim: { kind: constant, value: true }
`

// witnessSQL records, inside the outbox's own transactions, every row the
// outbox commits: a message counts as accepted exactly when its row is
// committed, and the trigger's insert commits or rolls back with it, also
// across a SIGKILL. Rows are never deleted, so the table is the full list
// of message ids the gateway ever accepted.
const witnessSQL = `
CREATE TABLE IF NOT EXISTS soak_witness (
	n     INTEGER PRIMARY KEY,
	ident INTEGER NOT NULL,
	kind  INTEGER NOT NULL,
	id    TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS soak_witness_insert AFTER INSERT ON outbox_msg
BEGIN
	INSERT INTO soak_witness(ident, kind, id) VALUES (NEW.ident, NEW.kind, NEW.id);
END;
`

// env is one running system: hub, simulator and gateway, each restartable.
type env struct {
	t   *testing.T
	ctx context.Context
	rng *rand.Rand

	dir                 string // test root
	hubDir              string
	mqttAddr, httpsAddr string // fixed across hub restarts
	caFile              string
	hub                 *harness.Proc
	svc                 *serviceclient.Client

	sim    *harness.Proc
	simTCP string

	gwID     string
	gwCfg    string
	dataDir  string
	api      string
	upstream string // the gateway's upstream.address: the hub's MQTT address or a proxy in front of it
	gw       *harness.Proc
	gwLogs   []*harness.Proc // every gateway process, for stderr on failure
	devices  []string
	orphans  int // plugin processes left behind by a SIGKILLed gateway
	gwStarts int

	durability string // the gateway's outbox.durability; every_message unless a test sets it before start
}

// newEnv prepares directories, ports and the random source; it starts nothing.
func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("soak tests start real processes")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DROVER_SOAK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DROVER_SOAK_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("fault schedule seed %d (DROVER_SOAK_SEED=%d replays it)", seed, seed)
	e := &env{t: t, ctx: harness.Context(t), rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), dir: t.TempDir(), gwID: "gw-soak",
		devices: []string{"pump-1", "pump-2", "pump-3", "pump-4"}}
	e.hubDir = filepath.Join(e.dir, "hub")
	e.dataDir = filepath.Join(e.dir, "gw-data")
	// Spill log segments are kept, not deleted, so that account can read
	// every message the gateway ever spilled (the log's witness).
	t.Setenv("DROVER_TEST_SPILL_RETIRE", e.spillRetired())
	e.mqttAddr, e.httpsAddr, e.api = reservePort(t), reservePort(t), reservePort(t)
	e.upstream = e.mqttAddr
	return e
}

// bin returns a Drover binary: from $DROVER_BIN (set by `make soak`), else
// built once from ./cmd/...; when the tree does not build, the test is
// skipped with the compiler's message.
func bin(t *testing.T, name string) string {
	t.Helper()
	if d := os.Getenv("DROVER_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "drover-soak-bin-")
		if built.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", built.dir+string(os.PathSeparator), "./cmd/...")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("%w\n%s", err, tail(string(out), 20))
		}
	})
	if built.err != nil {
		t.Skipf("soak test needs the Drover binaries, and go build ./cmd/... failed: %v", built.err)
	}
	p := filepath.Join(built.dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("soak test needs %s, which go build ./cmd/... did not produce", name)
	}
	return p
}

var built struct {
	once sync.Once
	dir  string
	err  error
}

func reservePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func repoRoot() string {
	wd, _ := os.Getwd() // go test runs in the package directory
	return filepath.Join(wd, "..", "..")
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startHub runs droverhub on the env's data dir and fixed ports and waits until it is ready.
func (e *env) startHub() {
	t := e.t
	t.Helper()
	p := harness.Start(t, bin(t, "droverhub"), "serve", "--data", e.hubDir, "--mqtt-addr", e.mqttAddr, "--https-addr", e.httpsAddr,
		"--log-level", "warn", "--max-telemetry", "1000000000")
	p.Await(t, "droverhub ready", 60*time.Second)
	if got := p.Await(t, "mqtt:", 5*time.Second); got != e.mqttAddr {
		t.Fatalf("hub mqtt on %s, want %s", got, e.mqttAddr)
	}
	if got := p.Await(t, "https:", 5*time.Second); got != e.httpsAddr {
		t.Fatalf("hub https on %s, want %s", got, e.httpsAddr)
	}
	e.caFile = p.Await(t, "ca:", 5*time.Second)
	e.hub = p
	if e.svc == nil {
		b, err := os.ReadFile(filepath.Join(e.hubDir, "iothubowner.txt"))
		if err != nil {
			t.Fatal(err)
		}
		cs, err := sas.ParseConnectionString(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if e.svc, err = serviceclient.New(cs, serviceclient.Options{Address: e.httpsAddr, CAFile: e.caFile}); err != nil {
			t.Fatal(err)
		}
	}
}

// stopHub ends the hub with SIGTERM or SIGKILL and waits for it to exit.
func (e *env) stopHub(kill bool) {
	if kill {
		e.hub.Kill()
		return
	}
	if err := e.hub.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		e.t.Fatalf("SIGTERM hub: %v", err)
	}
	select {
	case <-e.hub.Exited():
	case <-time.After(30 * time.Second):
		e.t.Fatalf("hub did not exit within 30s of SIGTERM; stderr:\n%s", tail(e.hub.Stderr(), 40))
	}
}

// start brings the whole system up: hub, gateway and enrollment group in
// the hub, simulator with one unit per device, and the gateway.
func (e *env) start() {
	t := e.t
	t.Helper()
	e.startHub()
	connStr, childrenKey := harness.ProvisionGateway(t, e.svc, "localhost", e.gwID, "soak-line", e.dir)

	profiles := filepath.Join(e.dir, "profiles")
	if err := os.MkdirAll(profiles, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(profiles, "soak-pump.yaml"), soakProfile)
	e.sim = harness.Start(t, bin(t, "devsim"), "modbus", "--profile", filepath.Join(profiles, "soak-pump.yaml"),
		"--tcp", "127.0.0.1:0", "--units", fmt.Sprintf("1-%d", len(e.devices)), "--log-level", "warn")
	e.simTCP = e.sim.Await(t, "tcp:", 30*time.Second)
	e.sim.Await(t, "ready", 10*time.Second)

	var devs []harness.Device
	for i, id := range e.devices {
		devs = append(devs, harness.Device{ID: id, Bus: "plant-lan", Address: i + 1, Profile: "soak-pump", Poll: soakPoll})
	}
	e.gwCfg = filepath.Join(e.dir, "gateway.yaml")
	harness.GatewayConfig{
		ID: e.gwID, DataDir: e.dataDir, LocalAPI: e.api,
		Upstream: &harness.Upstream{ConnectionStringFile: connStr, Address: e.upstream, CAFile: e.caFile,
			ChildrenKeyFile: childrenKey, TokenTTL: time.Hour, Keepalive: 5 * time.Second},
		PluginsDir: filepath.Dir(bin(t, "drover-plugin-modbus")), RestartBackoff: [2]time.Duration{200 * time.Millisecond, 2 * time.Second},
		ProfilesDir:    profiles,
		OutboxMaxBytes: "1GiB", OutboxOnFull: "drop_oldest",
		OutboxDurability: e.durabilityOrDefault(), OutboxSpillAfter: soakSpillAfter,
		Buses:   []harness.Bus{{Name: "plant-lan", Mode: "tcp", Address: e.simTCP, Timeout: 500 * time.Millisecond}},
		Devices: devs,
	}.Write(t, e.gwCfg)
	e.installWitness()
	e.startGateway()
}

// soakSpillAfter is the spill bound under spill durability, and soakPoll
// the devices' poll period: together they bound what a gateway kill loses.
const (
	soakSpillAfter = 2 * time.Second
	soakPoll       = 200 * time.Millisecond
)

func (e *env) durabilityOrDefault() string {
	if e.durability == "" {
		return "every_message"
	}
	return e.durability
}

// installWitness creates the outbox's tables (with the outbox package, so
// the schema is the gateway's) and the witness trigger before the gateway
// first runs, so the witness sees every accepted message.
func (e *env) installWitness() {
	t := e.t
	if err := os.MkdirAll(e.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dataDir, "gateway.db")
	box, err := outbox.Open(path, outbox.Options{})
	if err != nil {
		t.Fatalf("create outbox schema: %v", err)
	}
	if err := box.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", outbox.DSN(path, outbox.SyncFull))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(witnessSQL); err != nil {
		t.Fatalf("install witness trigger: %v", err)
	}
}

// spillRetired is where the gateway moves spill log segments it is done with.
func (e *env) spillRetired() string { return filepath.Join(e.dir, "spill-retired") }

// startGateway runs `drover run` and waits for its local API.
func (e *env) startGateway() {
	t := e.t
	t.Helper()
	e.gw = harness.Start(t, bin(t, "drover"), "run", "-c", e.gwCfg, "--log-level", "info")
	e.gwLogs = append(e.gwLogs, e.gw)
	e.gwStarts++
	e.eventually(60*time.Second, "gateway local API up", func() (bool, string) {
		select {
		case <-e.gw.Exited():
			t.Fatalf("gateway exited at start: %v; stderr:\n%s", e.gw.ExitErr(), tail(e.gw.Stderr(), 60))
		default:
		}
		st, err := e.status()
		if err != nil {
			return false, err.Error()
		}
		return true, fmt.Sprint(st)
	})
}

// killGateway SIGKILLs the gateway. Its plugin processes must die with it
// (the kernel's parent-death signal, or the plugin's own parent watch): one
// still alive 10 s later is counted as an orphan, killed, and fails the test.
func (e *env) killGateway() {
	pids := childPIDs(e.gw.Cmd.Process.Pid)
	e.gw.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // another process's exit: nothing to wait on but /proc
		}
		if alive(pid) {
			e.orphans++
			_ = syscall.Kill(pid, syscall.SIGKILL)
			e.t.Errorf("plugin process %d outlived the SIGKILLed gateway by 10 s", pid)
		}
	}
}

// stopGateway ends the gateway with SIGTERM and waits for its exit.
func (e *env) stopGateway() {
	if err := e.gw.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		e.t.Fatalf("SIGTERM gateway: %v", err)
	}
	select {
	case <-e.gw.Exited():
	case <-time.After(30 * time.Second):
		e.t.Fatalf("gateway did not exit within 30s of SIGTERM; stderr:\n%s", tail(e.gw.Stderr(), 60))
	}
}

func childPIDs(parent int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", parent))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", parent, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

// alive says whether pid is a running (not zombie) process.
func alive(pid int) bool {
	started, _ := crashtest.ProcStat(pid)
	return started != ""
}

// gatewayStatus is the part of GET /v1/status the soak tests read.
type gatewayStatus struct {
	Upstream struct {
		Connected bool   `json:"connected"`
		LastError string `json:"lastError"`
	} `json:"upstream"`
	Outbox *struct {
		Depth   int    `json:"depth"`
		Bytes   int64  `json:"bytes"`
		Dropped uint64 `json:"dropped"`
	} `json:"outbox"`
}

func (e *env) status() (gatewayStatus, error) {
	var st gatewayStatus
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.api+"/v1/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/status: %s: %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode /v1/status: %w: %s", err, b)
	}
	return st, nil
}

// apiGet returns the body of a GET on the gateway's local API, for diagnostics.
func (e *env) apiGet(p string) string {
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.api+p, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	return resp.Status + " " + string(b)
}

// outboxDepth returns the gateway's outbox depth and drop count; it fails
// the test when the status has no outbox object.
func (e *env) outboxDepth() (depth int, dropped uint64, err error) {
	st, err := e.status()
	if err != nil {
		return 0, 0, err
	}
	if st.Outbox == nil {
		e.t.Fatalf("GET /v1/status has no \"outbox\" object: the gateway does not expose its outbox")
	}
	return st.Outbox.Depth, st.Outbox.Dropped, nil
}

// waitFlowing waits until every device has telemetry stored at the hub.
func (e *env) waitFlowing() {
	for _, id := range e.devices {
		e.eventually(60*time.Second, id+" telemetry at the hub", func() (bool, string) {
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			defer cancel()
			ev, err := e.svc.Events(ctx, id, 1)
			if err != nil {
				return false, err.Error()
			}
			defer ev.Close()
			m, err := ev.Next()
			return err == nil && m.MessageID != "", fmt.Sprint(m.MessageID, err)
		})
	}
}

// eventually polls cond until it holds: the processes offer no event to
// await for these conditions, so this polls with a deadline.
func (e *env) eventually(timeout time.Duration, what string, cond func() (bool, string)) {
	e.t.Helper()
	if ok, last := e.poll(timeout, cond); !ok {
		e.t.Fatalf("%s: not within %s (last: %s)\ngateway stderr:\n%s", what, timeout, last, e.gatewayTail())
	}
}

// poll is eventually without failing: it says whether cond held in time and what it said last.
func (e *env) poll(timeout time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, info := cond()
		if ok {
			return true, info
		}
		last = info
		select {
		case <-time.After(100 * time.Millisecond):
		case <-e.ctx.Done():
			return false, "test ended; " + last
		}
	}
	return false, last
}

func (e *env) gatewayTail() string {
	if e.gw == nil {
		return ""
	}
	return tail(e.gw.Stderr(), 60)
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// unit is the Modbus unit id of a device: pump-N is unit N.
func (e *env) unit(id string) byte {
	for i, d := range e.devices {
		if d == id {
			return byte(i + 1)
		}
	}
	e.t.Fatalf("unknown device %s", id)
	return 0
}

// deviceState reads the setpoint register and the running coil straight from the simulator.
func (e *env) deviceState(id string) (setpoint float64, running bool, err error) {
	h := modbus.NewTCPClientHandler(e.simTCP)
	h.SlaveId = e.unit(id)
	h.Timeout = 2 * time.Second
	defer h.Close()
	c := modbus.NewClient(h)
	b, err := c.ReadHoldingRegisters(10, 2)
	if err != nil {
		return 0, false, fmt.Errorf("read setpoint of %s: %w", id, err)
	}
	coils, err := c.ReadCoils(0, 1)
	if err != nil {
		return 0, false, fmt.Errorf("read running of %s: %w", id, err)
	}
	return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), coils[0]&1 == 1, nil
}

// setDesired writes desired.config.setpoint of a device and returns the desired version.
func (e *env) setDesired(id string, v float64) int64 {
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	tw, err := e.svc.UpdateTwin(ctx, id, serviceclient.Twin{Properties: serviceclient.TwinProperties{Desired: map[string]any{"config": map[string]any{"setpoint": v}}}}, "")
	if err != nil {
		e.t.Fatalf("write desired setpoint %v of %s: %v", v, id, err)
	}
	return int64(num(tw.Properties.Desired["$version"]))
}

// checkConverged waits until the hub's twin of every device says what the
// device really is: the last desired setpoint is in the register, reported
// config says applied at the current desired version, and reported points
// equal the registers.
func (e *env) checkConverged(want map[string]float64) {
	for _, id := range e.devices {
		e.eventually(90*time.Second, id+" twin converged with the device", func() (bool, string) {
			sp, running, err := e.deviceState(id)
			if err != nil {
				return false, err.Error()
			}
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			defer cancel()
			tw, err := e.svc.GetTwin(ctx, id)
			if err != nil {
				return false, err.Error()
			}
			rep, des := tw.Properties.Reported, tw.Properties.Desired
			info := fmt.Sprintf("register setpoint=%v running=%v; desired=%v; reported.config=%v reported.points.setpoint=%v running=%v",
				sp, running, des["config"], path(rep, "config"), path(rep, "points", "setpoint"), path(rep, "points", "running"))
			if w, ok := want[id]; ok {
				if sp != w {
					return false, info
				}
				cfg, _ := path(rep, "config").(map[string]any)
				if cfg["status"] != "applied" || int64(num(cfg["version"])) != int64(num(des["$version"])) {
					return false, info
				}
			}
			if num(path(rep, "points", "setpoint")) != sp || path(rep, "points", "running") != running {
				return false, info
			}
			return true, info
		})
	}
}

// checkJobs asserts every job of the gateway's local queue ended in a final state.
func (e *env) checkJobs() {
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.api+"/v1/jobs", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Errorf("GET /v1/jobs: %v", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotImplemented {
		e.t.Logf("jobs: the gateway has no job queue (GET /v1/jobs: %s)", resp.Status)
		return
	}
	var list struct {
		Jobs []struct {
			ID, Device, Kind, State, Reason string
		} `json:"jobs"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &list) != nil {
		e.t.Errorf("GET /v1/jobs: %s: %s", resp.Status, b)
		return
	}
	byState := map[string]int{}
	for _, j := range list.Jobs {
		byState[j.State]++
		switch j.State {
		case "succeeded", "failed", "cancelled":
		default:
			e.t.Errorf("job %s (%s on %s) ended in state %q (%s), not a final state", j.ID, j.Kind, j.Device, j.State, j.Reason)
		}
	}
	e.t.Logf("jobs by state: %v", byState)
}

// drain stops the simulator (no new telemetry), waits for the gateway's
// outbox to empty, then stops the gateway and the hub with SIGTERM. It
// returns when the outbox was seen empty. On the way it checks that the hub
// learns the devices are gone (the twin must say what the device is).
func (e *env) drain() time.Time {
	e.sim.Stop()
	ok, info := e.poll(10*time.Second, func() (bool, string) {
		for _, id := range e.devices {
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			tw, err := e.svc.GetTwin(ctx, id)
			cancel()
			if err != nil {
				return false, err.Error()
			}
			if st := path(tw.Properties.Reported, "connection", "state"); st == nil || st == "online" {
				return false, fmt.Sprintf("hub: %s reported.connection %v; gateway: GET /v1/devices %s", id, path(tw.Properties.Reported, "connection"), e.apiGet("/v1/devices"))
			}
		}
		return true, ""
	})
	if !ok {
		e.t.Errorf("the simulator stopped 10s ago, but its devices are still reported online: %s", info)
	}
	var at time.Time
	e.eventually(120*time.Second, "gateway outbox drained", func() (bool, string) {
		at = time.Now()
		d, dropped, err := e.outboxDepth()
		if err != nil {
			return false, err.Error()
		}
		return d == 0, fmt.Sprintf("depth %d, dropped %d", d, dropped)
	})
	e.stopGateway()
	e.stopHub(false)
	return at
}

func num(v any) float64 {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case float64:
		return x
	case int64:
		return float64(x)
	}
	return math.NaN()
}

// path walks a twin section along keys.
var path = harness.Field
