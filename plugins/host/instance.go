package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ExecutablePrefix starts the file name of every plugin executable in
// plugins.dir: plugin "modbus" is the file drover-plugin-modbus.
const ExecutablePrefix = "drover-plugin-"

// killGrace bounds a graceful shutdown before the process is killed.
const killGrace = 5 * time.Second

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Instance is one running plugin process. It is what Start returns and what
// the supervisor restarts; most callers want Host.Plugin instead, whose
// handle survives restarts.
type Instance struct {
	name   string
	path   string
	client *plugin.Client
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	plugin *plugins.GRPCClient
	desc   plugins.Description

	lost       chan struct{} // closed when the connection leaves READY
	stopWatch  context.CancelFunc
	watchDone  chan struct{}
	closeOnce  sync.Once
	stderrTail *tail
}

// Path returns the executable path of the plugin named name in dir.
func Path(dir, name string) string { return filepath.Join(dir, ExecutablePrefix+name) }

// Start runs the plugin executable Path(opts.Dir, name), completes the
// go-plugin handshake with automatic mutual TLS, and calls Describe. The
// handshake is bounded by opts.StartTimeout (go-plugin cannot abort it, so
// ctx is only checked before it); Describe uses ctx bounded by the same
// timeout. On any failure the process is gone when Start
// returns, and the error says which step failed, including the last lines
// the plugin wrote to stderr.
func Start(ctx context.Context, opts Options, name string) (*Instance, error) {
	opts.applyDefaults()
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("start plugin %q: invalid name (want lower-case letters, digits, - and _)", name)
	}
	path := Path(opts.Dir, name)
	if err := checkExecutable(path); err != nil {
		return nil, fmt.Errorf("start plugin %q: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start plugin %q: %w", name, err)
	}
	log := opts.Logger.With("plugin", name)

	cmd := exec.Command(path)
	cmd.Env = append(cmd.Env, plugins.LogLevelEnv+"="+levelFor(opts.Logger))
	dieWithGateway(cmd) // no orphan holding a serial port after a gateway crash
	stderrTail := newTail(8)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  plugins.Handshake,
		Plugins:          plugins.PluginMap,
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     opts.StartTimeout,
		Logger:           newHCLog(log),
		Stderr:           stderrTail,
		SyncStdout:       &lineLogger{log: log, msg: "plugin stdout", level: slog.LevelInfo},
		SyncStderr:       &lineLogger{log: log, msg: "plugin stderr", level: slog.LevelWarn},
		// The supervisor pings, so an idle channel is never legitimate;
		// with idleness off, leaving READY means the connection broke.
		GRPCDialOptions: []grpc.DialOption{grpc.WithIdleTimeout(0)},
	})
	inst := &Instance{name: name, path: path, client: client, cmd: cmd, stderrTail: stderrTail}

	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start plugin %q (%s): handshake failed: %w%s", name, path, err, stderrTail.suffix())
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		client.Kill()
		return nil, fmt.Errorf("start plugin %q: unexpected protocol client %T", name, rpc)
	}
	raw, err := rpc.Dispense(plugins.PluginName)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start plugin %q: dispense %q: %w", name, plugins.PluginName, err)
	}
	inst.plugin, ok = raw.(*plugins.GRPCClient)
	if !ok {
		client.Kill()
		return nil, fmt.Errorf("start plugin %q: dispensed %T, want *plugins.GRPCClient", name, raw)
	}
	inst.conn = gc.Conn

	dctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	inst.desc, err = inst.plugin.Describe(dctx)
	if err != nil {
		inst.Kill()
		return nil, fmt.Errorf("start plugin %q: %w%s", name, err, stderrTail.suffix())
	}
	if inst.desc.Name != name {
		log.Warn("plugin describes itself under another name", "described_as", inst.desc.Name)
	}
	inst.watch()
	log.Info("plugin started", "version", inst.desc.Version, "pid", inst.PID())
	return inst, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("executable %s not found", path)
	}
	if err != nil {
		return fmt.Errorf("stat executable: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

func levelFor(l *slog.Logger) string {
	ctx := context.Background()
	switch {
	case l.Enabled(ctx, slog.LevelDebug):
		return "debug"
	case l.Enabled(ctx, slog.LevelInfo):
		return "info"
	case l.Enabled(ctx, slog.LevelWarn):
		return "warn"
	default:
		return "error"
	}
}

// watch starts the goroutine that closes lost when the gRPC connection
// leaves READY: the plugin exited or its socket broke. Close stops it.
func (i *Instance) watch() {
	ctx, cancel := context.WithCancel(context.Background())
	i.lost = make(chan struct{})
	i.stopWatch = cancel
	i.watchDone = make(chan struct{})
	go func() {
		defer close(i.watchDone)
		for {
			s := i.conn.GetState()
			if s != connectivity.Ready {
				close(i.lost)
				return
			}
			if !i.conn.WaitForStateChange(ctx, s) {
				return // Close was called
			}
		}
	}()
}

// Name returns the plugin's name.
func (i *Instance) Name() string { return i.name }

// Plugin returns the client side of the contract for this process.
func (i *Instance) Plugin() plugins.Plugin { return i.plugin }

// Description returns what the plugin said in Describe at start-up.
func (i *Instance) Description() plugins.Description { return i.desc }

// PID returns the process id.
func (i *Instance) PID() int {
	if i.cmd.Process == nil {
		return 0
	}
	return i.cmd.Process.Pid
}

// Lost is closed when the connection to the plugin breaks, which is how a
// crash shows first.
func (i *Instance) Lost() <-chan struct{} { return i.lost }

// Ping checks, within ctx, that the plugin process still answers gRPC (the
// health service go-plugin registers). A stopped or wedged process fails it;
// one RPC stuck inside the implementation does not.
func (i *Instance) Ping(ctx context.Context) error {
	_, err := healthpb.NewHealthClient(i.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return fmt.Errorf("ping plugin %q: %w", i.name, err)
	}
	return nil
}

// Close stops the plugin: a graceful shutdown first, then SIGKILL after a
// grace period. It returns when the process has exited and go-plugin's
// goroutines have stopped. It is safe to call more than once.
func (i *Instance) Close() {
	i.closeOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			i.client.Kill()
		}()
		t := time.NewTimer(killGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			i.killProcess()
			<-done
		}
		if i.stopWatch != nil {
			i.stopWatch()
			<-i.watchDone
		}
	})
}

// Kill kills the process at once (a hung plugin would never finish a
// graceful shutdown) and then cleans up like Close.
func (i *Instance) Kill() {
	i.killProcess()
	i.Close()
}

func (i *Instance) killProcess() {
	if i.cmd.Process != nil {
		_ = i.cmd.Process.Kill() // os.ErrProcessDone when it already exited
	}
}

// ExitStatus describes how the process ended ("exit status 3", "signal:
// killed"), or "" while it runs. Valid after Close.
func (i *Instance) ExitStatus() string {
	if i.cmd.ProcessState == nil {
		return ""
	}
	return i.cmd.ProcessState.String()
}

// tail keeps the last lines a plugin wrote to stderr, for error messages.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func newTail(max int) *tail { return &tail{max: max} }

// Write implements io.Writer. go-plugin writes one line at a time, the
// newline separately.
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		n := bytes.IndexByte(t.part, '\n')
		if n < 0 {
			break
		}
		if line := strings.TrimSpace(string(t.part[:n])); line != "" {
			t.lines = append(t.lines, line)
			if len(t.lines) > t.max {
				t.lines = t.lines[1:]
			}
		}
		t.part = t.part[n+1:]
	}
	if len(t.part) > 4096 {
		t.part = t.part[:0]
	}
	return len(p), nil
}

// suffix renders the kept lines for an error message.
func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return "; plugin stderr: " + strings.Join(t.lines, " | ")
}

// lineLogger logs every complete line written to it; go-plugin sends a
// plugin's os.Stdout and os.Stderr writes (not its logger) here.
type lineLogger struct {
	log   *slog.Logger
	msg   string
	level slog.Level
	mu    sync.Mutex
	part  []byte
}

// Write implements io.Writer.
func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		n := bytes.IndexByte(l.part, '\n')
		if n < 0 {
			break
		}
		if line := strings.TrimRight(string(l.part[:n]), "\r"); line != "" {
			l.log.Log(context.Background(), l.level, l.msg, "line", line)
		}
		l.part = l.part[n+1:]
	}
	if len(l.part) > 64<<10 {
		l.log.Log(context.Background(), l.level, l.msg, "line", string(l.part))
		l.part = l.part[:0]
	}
	return len(p), nil
}
