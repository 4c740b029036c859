package plugins

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// LogLevelEnv names the environment variable through which the host tells a
// plugin the lowest level worth sending: debug, info, warn or error.
const LogLevelEnv = "DROVER_PLUGIN_LOG_LEVEL"

// LevelTrace is the slog level that go-plugin's "trace" maps to.
const LevelTrace = slog.LevelDebug - 4

// hclogTimeLayout is the only @timestamp layout the host accepts; a line
// with any other layout is not parsed as JSON at all.
const hclogTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// stderr is the process's real standard error, captured before plugin.Serve
// replaces os.Stderr with a pipe that the host discards.
var stderr = os.Stderr

var logger = sync.OnceValue(func() *slog.Logger {
	return slog.New(NewLogHandler(stderr, levelFromEnv()))
})

// Logger returns the logger plugin code should use. Its records reach the
// host's log as structured records tagged with the plugin's name. It writes
// JSON lines to the process's original stderr at the level the host asked
// for (LogLevelEnv, default info).
func Logger() *slog.Logger { return logger() }

// NewLogHandler returns a slog JSON handler whose lines the host understands:
// the message is under "@message", the level under "@level" (lower case:
// trace, debug, info, warn, error) and the time under "@timestamp" in the
// layout go-plugin parses. Every other attribute becomes an attribute of the
// host's record.
func NewLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				if l, ok := a.Value.Any().(slog.Level); ok {
					a.Value = slog.StringValue(levelName(l))
				}
			case slog.TimeKey:
				a.Key = "@timestamp"
				a.Value = slog.StringValue(a.Value.Time().Format(hclogTimeLayout))
			}
			return a
		},
	})
}

func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}

func levelFromEnv() slog.Level {
	switch strings.ToLower(os.Getenv(LogLevelEnv)) {
	case "trace":
		return LevelTrace
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// ServeConfig returns the go-plugin configuration that serves impl. Serve
// uses it; a plugin that needs more (VersionedPlugins during a protocol
// rollout, a test mode) can adjust it and call plugin.Serve itself.
func ServeConfig(impl Plugin) *plugin.ServeConfig {
	return &plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:      hclog.LevelFromString(levelName(levelFromEnv())),
			Output:     stderr,
			JSONFormat: true,
		}),
	}
}

// Serve runs impl as a plugin process and returns when the host closes the
// connection or goes away, after closing every bus still open. It is the
// whole body of a plugin's main:
//
//	func main() { plugins.Serve(mydriver.New(plugins.Logger())) }
//
// Serve makes Logger the slog default, so stray slog calls reach the host
// too. Stdout belongs to the handshake: never print to it.
//
// A plugin must not outlive the gateway that started it (an orphan would
// keep its serial port open). On Linux the host has the kernel kill the
// plugin when the gateway dies; as a second line of defence Serve watches
// its parent process every second and, when the parent changes (the
// gateway died and the plugin was handed to init or a subreaper), stops
// serving exactly as the host's shutdown request would.
func Serve(impl Plugin) {
	log := Logger()
	slog.SetDefault(log)
	ignoreBrokenPipe()
	leaveStopToHost()
	log.Debug("plugin serving", "protocol_version", Handshake.ProtocolVersion)

	buses := trackBuses(impl)
	cfg := ServeConfig(buses)
	var srv stoppableServer
	cfg.GRPCServer = srv.new

	// Serve stands in for main, so the root context is made here.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	parent := os.Getppid() // noted before the handshake line tells the host we are up
	tick := time.NewTicker(parentCheckInterval)
	defer tick.Stop()
	serveWatched(ctx, func() { plugin.Serve(cfg) }, srv.stop, parent, os.Getppid, tick.C, log)

	cctx, ccancel := context.WithTimeout(ctx, busCloseGrace)
	defer ccancel()
	buses.closeAll(cctx, log)
}

// ignoreBrokenPipe keeps the plugin alive, and able to close its buses,
// when it writes to the stderr pipe of a host that has died. By default a
// Go program dies of SIGPIPE on a write to a broken stdout or stderr; with
// SIGPIPE routed to a channel (which nobody needs to read) the write fails
// with EPIPE instead, and log handlers drop the line. Notify rather than
// signal.Ignore: an ignored signal would stay ignored in any process the
// plugin starts.
func ignoreBrokenPipe() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// leaveStopToHost keeps SIGTERM from killing the plugin. A service manager
// stops the gateway by signalling its whole process group or cgroup
// (systemd's default KillMode), so the plugin gets SIGTERM at the same
// moment as the gateway; dying at once would cut the gateway's graceful
// stop short (devices reported plugin-down, buses not closed). The host
// stops its plugins itself as the last step of its stop, and a plugin never
// outlives it (parent-death signal, parent watch). SIGINT, which a
// terminal's Ctrl-C sends to the whole group, go-plugin already ignores.
func leaveStopToHost() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM)
}

// parentCheckInterval is how often Serve checks that its parent process is
// still the one that started it.
const parentCheckInterval = time.Second

// busCloseGrace bounds closing the buses left open when a plugin stops. It
// stays under the 2 s go-plugin's Kill waits for a graceful exit.
const busCloseGrace = time.Second

// serveWatched runs serve (plugin.Serve) and, beside it, watches the
// parent process. When getppid no longer returns parent, it logs why and
// calls stop, which must make serve return. serveWatched returns once serve
// has returned and the watch has ended, and says whether the parent went.
//
// A changed parent pid is the portable sign that the parent died: the
// orphan is handed to init or the nearest subreaper, whose pid differs,
// while a dead parent's pid cannot be reused before that. Windows is the
// exception: there getppid keeps returning the creator's pid after it
// exits, so the watch never fires.
func serveWatched(ctx context.Context, serve, stop func(), parent int, getppid func() int, tick <-chan time.Time, log *slog.Logger) (orphaned bool) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		now, gone := awaitNewParent(ctx, parent, getppid, tick)
		if !gone {
			return
		}
		orphaned = true
		log.Warn("host process gone, stopping plugin", "parent_pid", parent, "new_parent_pid", now)
		stop()
	}()
	serve()
	cancel()
	wg.Wait()
	return orphaned
}

// awaitNewParent checks getppid on every tick and returns the new parent
// pid once it differs from parent, or ok false when ctx ends first.
func awaitNewParent(ctx context.Context, parent int, getppid func() int, tick <-chan time.Time) (now int, ok bool) {
	for {
		select {
		case <-ctx.Done():
			return 0, false
		case <-tick:
			if now := getppid(); now != parent {
				return now, true
			}
		}
	}
}

// stoppableServer makes the gRPC server go-plugin serves on and can stop it
// from outside go-plugin: the same Stop go-plugin's own Shutdown RPC calls,
// after which plugin.Serve returns. Its new method is a
// plugin.ServeConfig.GRPCServer.
type stoppableServer struct {
	mu      sync.Mutex
	srv     *grpc.Server
	stopped bool
}

func (s *stoppableServer) new(opts []grpc.ServerOption) *grpc.Server {
	srv := plugin.DefaultGRPCServer(opts)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv = srv
	if s.stopped {
		srv.Stop() // stopped before go-plugin got this far: it serves nothing
	}
	return srv
}

func (s *stoppableServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.srv != nil {
		s.srv.Stop()
	}
}

// busTracker passes every call to the plugin and remembers which buses are
// open, so that Serve can close them when the plugin stops. It hides any
// optional interface the plugin implements; the gRPC adapter asks for none.
type busTracker struct {
	Plugin

	mu   sync.Mutex
	open map[string]bool
}

func trackBuses(p Plugin) *busTracker { return &busTracker{Plugin: p, open: map[string]bool{}} }

// OpenBus implements Plugin.
func (b *busTracker) OpenBus(ctx context.Context, bus BusConfig) error {
	err := b.Plugin.OpenBus(ctx, bus)
	if err == nil {
		b.mu.Lock()
		b.open[bus.Name] = true
		b.mu.Unlock()
	}
	return err
}

// CloseBus implements Plugin.
func (b *busTracker) CloseBus(ctx context.Context, name string) error {
	err := b.Plugin.CloseBus(ctx, name)
	if err == nil || CodeOf(err) == CodeNotFound {
		b.mu.Lock()
		delete(b.open, name)
		b.mu.Unlock()
	}
	return err
}

// closeAll closes every bus still open, in name order, and returns when
// that is done or ctx ends, whichever is first: a CloseBus that hangs must
// not keep a stopping plugin, and its serial port, alive. A close still
// running then is abandoned to the process exit that follows.
func (b *busTracker) closeAll(ctx context.Context, log *slog.Logger) {
	b.mu.Lock()
	names := slices.Sorted(maps.Keys(b.open))
	b.mu.Unlock()
	if len(names) == 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, name := range names {
			if err := b.CloseBus(ctx, name); err != nil && CodeOf(err) != CodeNotFound {
				log.Warn("close bus on shutdown", "bus", name, "error", err)
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("buses still closing, exiting anyway", "buses", names, "error", ctx.Err())
	}
}
