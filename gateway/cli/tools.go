package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/config"
)

// tools builds the technician's commands. They talk only to the gateway's
// local API (or, for config check, read files), so they work without
// uplink.
type tools struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	defaultDataDir string // where the token is looked for without -c
}

// technicianCmds returns the technician commands for the root command.
func technicianCmds(stdout, stderr io.Writer) []*cobra.Command {
	t := &tools{stdout: stdout, stderr: stderr, getenv: os.Getenv, defaultDataDir: config.DefaultDataDir}
	return t.commands()
}

func (t *tools) commands() []*cobra.Command {
	return []*cobra.Command{
		t.statusCmd(), t.devicesCmd(), t.twinCmd(), t.readCmd(), t.writeCmd(),
		t.invokeCmd(), t.scanCmd(), t.jobsCmd(), t.configCmd(),
	}
}

// connect resolves the API (and, when needsToken, the token) from f.
func (t *tools) connect(f *apiFlags, needsToken bool) (*apiClient, error) {
	if _, err := f.json(); err != nil {
		return nil, err
	}
	ep, err := resolveEndpoint(f.api, f.config, t.getenv, t.defaultDataDir)
	if err != nil {
		return nil, err
	}
	c := newAPIClient(ep, f.timeout)
	if needsToken {
		tok, src, err := resolveToken(f.token, ep, t.getenv)
		if err != nil {
			return nil, err
		}
		c.token, c.tokenSource = tok, src
	}
	return c, nil
}

// call sends one request to the local API and decodes the answer into out.
// A write carries the token.
func (t *tools) call(cmd *cobra.Command, f *apiFlags, write bool, method, path string, body []byte, out any) error {
	api, err := t.connect(f, write)
	if err != nil {
		return err
	}
	defer api.close()
	return api.request(cmdContext(cmd), method, path, body, out)
}

// get reads one resource of the local API into out (no token needed).
func (t *tools) get(cmd *cobra.Command, f *apiFlags, path string, out any) error {
	return t.call(cmd, f, false, "GET", path, nil, out)
}

// show reads one resource into out and prints it (see emit).
func (t *tools) show(cmd *cobra.Command, f *apiFlags, path string, out any, render func(w io.Writer)) error {
	if err := t.get(cmd, f, path, out); err != nil {
		return err
	}
	return t.emit(f, out, render)
}

// emit prints v as indented JSON with -o json, else as the aligned table
// render writes.
func (t *tools) emit(f *apiFlags, v any, render func(w io.Writer)) error {
	if asJSON, _ := f.json(); asJSON {
		return t.printJSON(v)
	}
	w := t.table()
	render(w)
	return w.Flush()
}

// printJSON writes v indented, for -o json.
func (t *tools) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = fmt.Fprintf(t.stdout, "%s\n", b)
	return err
}

// table writes aligned columns; call flush when done.
func (t *tools) table() *tabwriter.Writer {
	return tabwriter.NewWriter(t.stdout, 0, 0, 2, ' ', 0)
}

// row writes one tab-separated row; empty cells print as "-".
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// ago says how long before now t was, to the second; "never" for zero.
// now is the gateway's clock, so the laptop's clock does not matter.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "just now"
	}
	return d.String() + " ago"
}

// jsonValue formats a point value: JSON text, "-" for none.
func jsonValue(v any) string {
	if v == nil {
		return "-"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// cmdContext is the command's context (background when run without one).
func cmdContext(c *cobra.Command) context.Context {
	if ctx := c.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
