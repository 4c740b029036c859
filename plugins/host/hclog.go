package host

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/drover-iot/drover/plugins"
	"github.com/hashicorp/go-hclog"
)

// hclogTimeFormat is the layout go-plugin uses for the "timestamp" argument
// it adds to every line it forwards from a plugin's stderr.
const hclogTimeFormat = "2006-01-02T15:04:05.000Z0700"

// slogHCLog adapts a *slog.Logger to the hclog.Logger that go-plugin wants.
// go-plugin uses it for its own messages and for every line a plugin writes
// to stderr (parsed from JSON into message, level and key/value pairs), so
// both arrive in the gateway's log as ordinary slog records with the
// attributes of the logger given (plugin=<name>).
//
// hclog's naming is dropped: the "plugin" attribute already says where a
// record came from, and a "plugin" argument is renamed "executable" (that is
// what go-plugin means by it). The "timestamp" argument go-plugin adds to
// forwarded lines becomes the record's time.
type slogHCLog struct {
	l    *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*slogHCLog)(nil)

func newHCLog(l *slog.Logger) hclog.Logger { return &slogHCLog{l: l} }

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return plugins.LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *slogHCLog) enabled(level hclog.Level) bool {
	return a.l.Enabled(context.Background(), slogLevel(level))
}

// Log implements hclog.Logger.
func (a *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	sl := slogLevel(level)
	ctx := context.Background()
	if !a.l.Enabled(ctx, sl) {
		return
	}
	when := time.Now()
	r := slog.NewRecord(when, sl, msg, 0)
	all := append(append([]any(nil), a.args...), args...)
	for i := 0; i < len(all); i += 2 {
		if i+1 >= len(all) {
			r.AddAttrs(slog.Any(hclog.MissingKey, all[i]))
			break
		}
		key, ok := all[i].(string)
		if !ok {
			key = fmt.Sprint(all[i])
		}
		val := all[i+1]
		if key == "plugin" {
			// go-plugin's own messages put the executable path under
			// "plugin", which would clash with our plugin=<name>.
			key = "executable"
		}
		if key == "timestamp" {
			if s, ok := val.(string); ok {
				if t, err := time.Parse(hclogTimeFormat, s); err == nil && t.Year() > 1 {
					r.Time = t
				}
				continue
			}
		}
		r.AddAttrs(slog.Any(key, val))
	}
	_ = a.l.Handler().Handle(ctx, r)
}

// Trace implements hclog.Logger.
func (a *slogHCLog) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (a *slogHCLog) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (a *slogHCLog) Info(msg string, args ...any) { a.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (a *slogHCLog) Warn(msg string, args ...any) { a.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (a *slogHCLog) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (a *slogHCLog) IsTrace() bool { return a.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (a *slogHCLog) IsDebug() bool { return a.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (a *slogHCLog) IsInfo() bool { return a.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (a *slogHCLog) IsWarn() bool { return a.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (a *slogHCLog) IsError() bool { return a.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (a *slogHCLog) ImpliedArgs() []any { return a.args }

// With implements hclog.Logger.
func (a *slogHCLog) With(args ...any) hclog.Logger {
	return &slogHCLog{l: a.l, name: a.name, args: append(append([]any(nil), a.args...), args...)}
}

// Name implements hclog.Logger.
func (a *slogHCLog) Name() string { return a.name }

// Named implements hclog.Logger.
func (a *slogHCLog) Named(name string) hclog.Logger {
	n := name
	if a.name != "" {
		n = a.name + "." + name
	}
	return &slogHCLog{l: a.l, name: n, args: a.args}
}

// ResetNamed implements hclog.Logger.
func (a *slogHCLog) ResetNamed(name string) hclog.Logger {
	return &slogHCLog{l: a.l, name: name, args: a.args}
}

// SetLevel implements hclog.Logger. The slog handler owns the level, so this
// does nothing.
func (a *slogHCLog) SetLevel(hclog.Level) {}

// GetLevel implements hclog.Logger: the lowest level the slog handler lets
// through. go-plugin uses it to skip parsing plugin lines nobody will see.
func (a *slogHCLog) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger implements hclog.Logger.
func (a *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger.
func (a *slogHCLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := slog.LevelInfo
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = slogLevel(opts.ForceLevel)
	}
	return slog.NewLogLogger(a.l.Handler(), level).Writer()
}
