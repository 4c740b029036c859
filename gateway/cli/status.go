package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/localapi"
)

func (t *tools) statusCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the gateway's health: uplink, plugins, buses, outbox",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st localapi.Status
			return t.show(cmd, &f, "/v1/status", &st, func(w io.Writer) { renderStatus(w, st) })
		},
	}
	f.add(c, false)
	return c
}

// renderStatus writes the status as aligned rows.
func renderStatus(w io.Writer, st localapi.Status) {
	row(w, "gateway", fmt.Sprintf("%s (version %s, up %s)", st.GatewayID, st.Version, time.Duration(st.Uptime).Round(time.Second)))
	row(w, "uplink", upstreamLine(st))
	row(w, "devices", fmt.Sprint(st.Devices))
	row(w, "config", st.ConfigHash)
	if o := st.Outbox; o != nil {
		line := fmt.Sprintf("%d waiting, %s, %d dropped", o.Depth, bytesString(o.Bytes), o.Dropped)
		if o.Durability != "" {
			line += fmt.Sprintf("; durability %s, %d in memory", o.Durability, o.InMemory)
			if o.InSpillLog > 0 {
				line += fmt.Sprintf(", %d in the spill log", o.InSpillLog)
			}
		}
		if o.LostInMemory > 0 {
			line += fmt.Sprintf(", %d lost in memory by crashes", o.LostInMemory)
		}
		row(w, "outbox", line)
	}
	if d := st.Disk; d != nil {
		row(w, "disk writes", fmt.Sprintf("%s/hour, %s since start", bytesString(d.BytesPerHour), bytesString(d.WrittenBytes)))
	}
	fmt.Fprintln(w)
	if len(st.Plugins) > 0 {
		row(w, "PLUGIN", "VERSION", "STATE", "RESTARTS", "LAST ERROR")
		for _, p := range st.Plugins {
			row(w, p.Name, p.Version, p.State, fmt.Sprint(p.Restarts), p.LastError)
		}
		fmt.Fprintln(w)
	}
	if len(st.Buses) > 0 {
		row(w, "BUS", "PLUGIN", "STATE", "TRANSACTIONS", "TIMEOUTS", "ERRORS", "QUEUE")
		for _, b := range st.Buses {
			row(w, b.Name, b.Plugin, b.State, fmt.Sprint(b.Transactions), fmt.Sprint(b.Timeouts), fmt.Sprint(b.Errors), fmt.Sprint(b.Queue))
		}
	}
}

func upstreamLine(st localapi.Status) string {
	u := st.Upstream
	var s string
	switch {
	case !u.Configured:
		return "none configured (offline by design)"
	case u.Connected:
		s = "connected to " + u.Hub
	default:
		s = "not connected to " + u.Hub
	}
	if !u.Since.IsZero() {
		s += " for " + st.Time.Sub(u.Since).Round(time.Second).String()
	}
	if u.LastError != "" {
		s += " (last error: " + u.LastError + ")"
	}
	return s
}

// bytesString prints a size in binary units.
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
