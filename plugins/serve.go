package plugins

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
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
// connection. It is the whole body of a plugin's main:
//
//	func main() { plugins.Serve(mydriver.New(plugins.Logger())) }
//
// Serve makes Logger the slog default, so stray slog calls reach the host
// too. Stdout belongs to the handshake: never print to it.
func Serve(impl Plugin) {
	slog.SetDefault(Logger())
	Logger().Debug("plugin serving", "protocol_version", Handshake.ProtocolVersion)
	plugin.Serve(ServeConfig(impl))
}
