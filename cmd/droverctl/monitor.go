package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/serviceclient"
)

// Reconnect backoff of monitor after the stream drops.
const (
	monitorBackoffMin = 500 * time.Millisecond
	monitorBackoffMax = 10 * time.Second
)

// eventSource opens a telemetry stream; *serviceclient.Client is one.
type eventSource interface {
	Events(ctx context.Context, deviceID string, fromSeq int64) (*serviceclient.EventStream, error)
}

func (a *app) monitorCmd() *cobra.Command {
	var from int64
	var count int
	cmd := &cobra.Command{
		Use:   "monitor [DEVICE]",
		Short: "Stream device-to-cloud telemetry until Ctrl-C (localhub)",
		Long: `Stream telemetry messages from localhub, one line per message, or one
JSON object per line with -o json. Without DEVICE, every device's messages.
--from SEQ starts at that sequence number (older messages the hub still keeps);
by default only new messages are shown. When the stream drops, monitor
reconnects and resumes after the last message it printed.

It runs until Ctrl-C, until --count messages were printed, or, when --timeout
is given explicitly, until that time has passed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev := ""
			if len(args) == 1 {
				dev = args[0]
			}
			if from < 0 || count < 0 {
				return errors.New("monitor: --from and --count must not be negative")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if a.timeoutSet {
				var cancel context.CancelFunc
				ctx, cancel = a.withTimeout(ctx)
				defer cancel()
			}
			m := monitor{src: c, out: a.stdout, warn: a.stderr, json: a.wantJSON(), device: dev, count: count}
			err = m.run(ctx, from)
			if err != nil && ctx.Err() != nil && cmd.Context().Err() == nil && count == 0 {
				return nil // --timeout ended an open-ended monitor: that is success
			}
			if err != nil {
				return fail(ctx, "monitor", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&from, "from", 0, "start at sequence number `SEQ` (default: new messages only)")
	f.IntVar(&count, "count", 0, "stop after `N` messages (default: never)")
	return cmd
}

// monitor prints a telemetry stream and reconnects when it drops.
type monitor struct {
	src    eventSource
	out    io.Writer
	warn   io.Writer
	json   bool
	device string
	count  int // stop after this many events; 0: never
	seen   int
}

// run streams from fromSeq until ctx ends (nil when the caller cancelled it),
// count events were printed, or the hub refuses the stream.
func (m *monitor) run(ctx context.Context, fromSeq int64) error {
	backoff := monitorBackoffMin
	next := fromSeq
	for first := true; ; first = false {
		s, err := m.src.Events(ctx, m.device, next)
		if err != nil {
			if ctx.Err() != nil {
				return m.ended(ctx)
			}
			// A refusal (4xx) will not change by retrying; a hub that is down
			// or restarting (network errors, 5xx) may come back.
			var ae *serviceclient.APIError
			if first || (errors.As(err, &ae) && ae.Status < 500) {
				return fmt.Errorf("open stream: %w", err)
			}
			fmt.Fprintf(m.warn, "droverctl: monitor: reconnect: %s\n", errorLine(err))
		} else {
			last, done, err := m.drain(s)
			_ = s.Close()
			if last > 0 {
				next = last + 1
				backoff = monitorBackoffMin
			}
			if done {
				return nil
			}
			if ctx.Err() != nil {
				return m.ended(ctx)
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("hub closed the stream")
			}
			fmt.Fprintf(m.warn, "droverctl: monitor: stream lost: %s; reconnecting\n", errorLine(err))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return m.ended(ctx)
		case <-t.C:
		}
		backoff = min(2*backoff, monitorBackoffMax)
	}
}

// ended is the result of a monitor whose context ended: success after
// Ctrl-C or an open-ended --timeout, an error when --count was not reached.
func (m *monitor) ended(ctx context.Context) error {
	if m.count > 0 && m.seen < m.count {
		return fmt.Errorf("got %d of %d messages: %w", m.seen, m.count, context.Cause(ctx))
	}
	return nil
}

// drain prints events until the stream fails. It returns the last sequence
// number printed and whether --count is reached.
func (m *monitor) drain(s *serviceclient.EventStream) (last int64, done bool, err error) {
	for {
		ev, err := s.Next()
		if errors.Is(err, serviceclient.ErrBadEvent) {
			fmt.Fprintf(m.warn, "droverctl: monitor: skipped event: %s\n", errorLine(err))
			continue
		}
		if err != nil {
			return last, false, err
		}
		if m.json {
			_, err = fmt.Fprintf(m.out, "%s\n", ev.Raw)
		} else {
			_, err = fmt.Fprintln(m.out, formatEvent(&ev))
		}
		if err != nil {
			return last, true, fmt.Errorf("write output: %w", err)
		}
		if ev.Seq > last {
			last = ev.Seq
		}
		m.seen++
		if m.count > 0 && m.seen >= m.count {
			return last, true, nil
		}
	}
}

// formatEvent renders one message on one line:
// "TIME DEVICE #SEQ BODY [k=v …]". Text bodies print as they are unless
// they hold control characters (then quoted); binary bodies as base64.
func formatEvent(e *serviceclient.Event) string {
	var b strings.Builder
	b.WriteString(eventTime(e.EnqueuedTime))
	b.WriteString(" " + cell(e.DeviceID))
	b.WriteString(" #" + strconv.FormatInt(e.Seq, 10))
	b.WriteString(" " + eventBody(e))
	if len(e.Properties) > 0 {
		b.WriteString(" [" + sortedProps(e.Properties) + "]")
	}
	return b.String()
}

func eventTime(s string) string {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	if s == "" {
		return "-"
	}
	return cell(s)
}

func eventBody(e *serviceclient.Event) string {
	body, err := e.BodyBytes()
	if err != nil {
		return "base64:" + cell(e.Body) + " (undecodable)"
	}
	if e.BodyEncoding == "base64" && !printableText(body) {
		return "base64:" + e.Body
	}
	if len(body) == 0 {
		return `""`
	}
	if !printableText(body) {
		return strconv.Quote(string(body))
	}
	return string(body)
}

// printableText reports whether b is UTF-8 text without control characters.
func printableText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
