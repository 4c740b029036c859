package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/localapi"
)

// maxScanLine bounds one line of the scan stream.
const maxScanLine = 1 << 20

func (t *tools) scanCmd() *cobra.Command {
	var (
		f        apiFlags
		from, to int
		force    bool
	)
	c := &cobra.Command{
		Use:   "scan BUS",
		Short: "Probe a bus for devices that answer (commissioning)",
		Long: `Probe the addresses of a bus and print each answer as it comes. Without
--from/--to the protocol's default range is scanned (Modbus: 1..247; serial:
every port, 0 being the bus's own port and 1.. those its scan_ports names). The
gateway refuses to scan a bus it is polling unless --force is given. Ctrl-C
stops the scan.`,
		Example: `  drover scan rs485-1 --from 1 --to 20
  drover scan rs485-1 --force
  drover scan mcu-uart --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bus := args[0]
			q := url.Values{}
			fl := cmd.Flags()
			if fl.Changed("from") != fl.Changed("to") {
				return errors.New("give both --from and --to, or neither for the protocol's default range")
			}
			if fl.Changed("from") {
				if from < 0 || to < from {
					return fmt.Errorf("want 0 <= --from <= --to, got --from %d --to %d", from, to)
				}
				q.Set("from", strconv.Itoa(from))
				q.Set("to", strconv.Itoa(to))
			}
			if force {
				q.Set("force", "true")
			}
			api, err := t.connect(&f, true)
			if err != nil {
				return err
			}
			defer api.close()
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			path := "/v1/buses/" + url.PathEscape(bus) + "/scan"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			body, err := api.stream(ctx, "POST", path)
			if err != nil {
				return err
			}
			defer body.Close()
			asJSON, _ := f.json()
			if !asJSON {
				what := "the protocol's default range"
				if q.Has("from") {
					what = fmt.Sprintf("addresses %d..%d", from, to)
				}
				fmt.Fprintf(t.stdout, "scanning %s, %s (Ctrl-C stops)\n", bus, what)
			}
			err = t.followScan(body, asJSON)
			if ctx.Err() != nil {
				return errors.New("scan interrupted")
			}
			return err
		},
	}
	f.add(c, true)
	c.Flags().IntVar(&from, "from", 0, "first address to probe")
	c.Flags().IntVar(&to, "to", 0, "last address to probe")
	c.Flags().BoolVar(&force, "force", false, "scan even though the bus is being polled")
	return c
}

// followScan prints the scan stream as it arrives and returns the
// summary's error, if the scan stopped early.
func (t *tools) followScan(r io.Reader, asJSON bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxScanLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return fmt.Errorf("scan stream: bad line %q: %w", truncate(string(line), 80), err)
		}
		if asJSON {
			fmt.Fprintf(t.stdout, "%s\n", line)
		}
		switch head.Type {
		case localapi.ScanLineProgress:
			var p localapi.ScanProgress
			if err := json.Unmarshal(line, &p); err != nil {
				return fmt.Errorf("scan stream: bad progress line: %w", err)
			}
			if !asJSON {
				fmt.Fprintln(t.stdout, progressText(p))
			}
		case localapi.ScanLineSummary:
			var s localapi.ScanSummary
			if err := json.Unmarshal(line, &s); err != nil {
				return fmt.Errorf("scan stream: bad summary line: %w", err)
			}
			if !asJSON {
				fmt.Fprintln(t.stdout, summaryText(s))
			}
			if s.Error != "" {
				return fmt.Errorf("scan of %s stopped: %s", s.Bus, s.Error)
			}
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("scan stream: %w", err)
	}
	return errors.New("scan stream ended without a summary (did the gateway restart?)")
}

func progressText(p localapi.ScanProgress) string {
	switch {
	case p.Found:
		s := fmt.Sprintf("  %3d  found", p.Address)
		if id := p.Identity; id != nil {
			if d := strings.TrimSpace(id.Manufacturer + " " + id.Model); d != "" {
				s += "  " + d
			}
			var extra []string
			if id.Serial != "" {
				extra = append(extra, "serial "+id.Serial)
			}
			if id.FirmwareVersion != "" {
				extra = append(extra, "firmware "+id.FirmwareVersion)
			}
			if port := id.Extra["port"]; port != "" {
				extra = append(extra, "port "+port) // serial plugin: addresses stand for ports
			}
			if len(extra) > 0 {
				s += " (" + strings.Join(extra, ", ") + ")"
			}
		}
		return s
	case p.Error != "":
		return fmt.Sprintf("  %3d  error: %s", p.Address, p.Error)
	}
	return fmt.Sprintf("  %3d  no answer", p.Address)
}

func summaryText(s localapi.ScanSummary) string {
	found := "none"
	if len(s.Found) > 0 {
		parts := make([]string, len(s.Found))
		for i, a := range s.Found {
			parts[i] = strconv.Itoa(a)
		}
		found = fmt.Sprintf("%d (%s)", len(s.Found), strings.Join(parts, ", "))
	}
	noun := "addresses"
	if s.Probed == 1 {
		noun = "address"
	}
	return fmt.Sprintf("%s: probed %d %s, found %s", s.Bus, s.Probed, noun, found)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
