package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/serviceclient"
)

// jobPoll is how often import and export jobs are polled for progress.
const jobPoll = 250 * time.Millisecond

// importModes are the importMode values an import accepts (notes 2.3).
var importModes = []string{
	serviceclient.ImportCreate, serviceclient.ImportCreateOrUpdate, serviceclient.ImportCreateOrUpdateIfMatchETag,
	serviceclient.ImportUpdate, serviceclient.ImportUpdateIfMatchETag, serviceclient.ImportUpdateTwin,
	serviceclient.ImportUpdateTwinIfMatchETag, serviceclient.ImportDelete, serviceclient.ImportDeleteIfMatchETag,
}

func (a *app) deviceImportCmd() *cobra.Command {
	var mode string
	var progress bool
	cmd := &cobra.Command{
		Use:   "import FILE.jsonl",
		Short: "Create, update or delete identities in bulk (an import job)",
		Long: `Upload FILE.jsonl ("-" for stdin) and run it as an import job. Each line
is an ExportImportDevice object, as an export writes them:

  {"id":"pump-1","importMode":"create","status":"enabled","tags":{"site":"plant1"},
   "properties":{"desired":{"interval":30}},"capabilities":{"iotEdge":false}}

importMode is create, createOrUpdate, update, updateTwin, delete, or one of
their IfMatchETag forms (these need "eTag", updateTwinIfMatchETag needs
"twinETag"). --mode sets the mode of lines that name none (the hub's default
is createOrUpdate). Missing keys are generated; tags and desired properties
given replace the twin's; reported properties are ignored.

Lines that cannot be applied are listed with their line number and the
others are applied; the command then exits 1. Progress goes to stderr when it
is a terminal (or with --progress). The import is not bounded by --timeout
unless --timeout is given.`,
		Example: `  droverctl device import fleet.jsonl
  droverctl device import retired.jsonl --mode delete`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "import devices from " + args[0]
			if mode != "" {
				m, ok := lookupMode(mode)
				if !ok {
					return fmt.Errorf("%s: --mode %q: want one of %s", what, mode, strings.Join(importModes, ", "))
				}
				mode = m
			}
			input, err := readInput(cmd.InOrStdin(), args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.jobContext(cmd.Context())
			defer cancel()
			job, err := c.StartImport(ctx, input, mode)
			if err != nil {
				return fail(ctx, what, err)
			}
			job, err = c.WaitImportExportJob(ctx, job.JobID, jobPoll, a.jobProgress("import", progress))
			if err != nil {
				return fail(ctx, what+": job "+jobID(job), err)
			}
			errs, err := c.ImportErrors(ctx, job.JobID)
			if err != nil {
				return fail(ctx, what+": read the errors of job "+job.JobID, err)
			}
			if a.wantJSON() {
				if err := writeJSON(a.stdout, map[string]any{"job": job, "errors": errs}); err != nil {
					return err
				}
			} else if err := renderImport(a.stdout, job, errs); err != nil {
				return err
			}
			switch {
			case job.Status != serviceclient.JobCompleted:
				return fmt.Errorf("%s: job %s %s: %s", what, job.JobID, job.Status, job.FailureReason)
			case len(errs) > 0:
				return fmt.Errorf("%s: %d of %d lines failed (listed above)", what, len(errs), job.DeviceCount)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "", "import `MODE` of lines that name none: create, update, delete, createOrUpdate, updateTwin, …")
	f.BoolVar(&progress, "progress", false, "print progress lines to stderr even when it is not a terminal")
	return cmd
}

func (a *app) deviceExportCmd() *cobra.Command {
	var noKeys, progress bool
	cmd := &cobra.Command{
		Use:   "export [FILE.jsonl]",
		Short: "Export every identity with its twin as JSONL (an export job)",
		Long: `Run an export job and write its devices.txt: one ExportImportDevice line
per identity, with tags and desired and reported properties, to FILE.jsonl
(created with mode 0600: it holds the device keys) or to stdout. --no-keys
leaves the keys out. The output can be given to 'device import' as it is
(its lines name no importMode: createOrUpdate).`,
		Example: `  droverctl device export fleet.jsonl
  droverctl device export --no-keys | jq -r .id`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "export devices"
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.jobContext(cmd.Context())
			defer cancel()
			job, err := c.StartExport(ctx, noKeys)
			if err != nil {
				return fail(ctx, what, err)
			}
			job, err = c.WaitImportExportJob(ctx, job.JobID, jobPoll, a.jobProgress("export", progress))
			if err != nil {
				return fail(ctx, what+": job "+jobID(job), err)
			}
			if job.Status != serviceclient.JobCompleted {
				return fmt.Errorf("%s: job %s %s: %s", what, job.JobID, job.Status, job.FailureReason)
			}
			if len(args) == 0 {
				if _, err := c.ExportOutput(ctx, job.JobID, a.stdout); err != nil {
					return fail(ctx, what, err)
				}
				return nil
			}
			return a.exportToFile(ctx, c, job, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&noKeys, "no-keys", false, "leave the symmetric keys out (excludeKeysInExport)")
	f.BoolVar(&progress, "progress", false, "print progress lines to stderr even when it is not a terminal")
	return cmd
}

// exportToFile writes the export next to path and renames it into place, so
// that a failed download never leaves a truncated file under the name.
func (a *app) exportToFile(ctx context.Context, c *serviceclient.Client, job *serviceclient.ImportExportJob, path string) error {
	what := "export devices to " + path
	tmp, err := os.CreateTemp(filepath.Dir(path), ".drover-export-*")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(tmp.Name()) // after the rename this fails harmlessly
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := c.ExportOutput(ctx, job.JobID, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(ctx, what, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if a.wantJSON() {
		return writeJSON(a.stdout, map[string]any{"job": job, "file": path, "bytes": n})
	}
	_, err = fmt.Fprintf(a.stdout, "exported %d devices to %s (job %s)\n", job.ProcessedCount, path, job.JobID)
	return err
}

// jobContext bounds a job command by --timeout only when it was given: an
// import or export of a large fleet takes longer than the default.
func (a *app) jobContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeoutSet {
		return a.withTimeout(ctx)
	}
	return context.WithCancel(ctx)
}

func jobID(j *serviceclient.ImportExportJob) string {
	if j == nil {
		return "?"
	}
	return j.JobID
}

func lookupMode(m string) (string, bool) {
	for _, x := range importModes {
		if strings.EqualFold(m, x) {
			return x, true
		}
	}
	return "", false
}

// readInput reads a file, or stdin for "-".
func readInput(stdin io.Reader, path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	return b, nil
}

// jobProgress returns a progress printer for stderr: one line rewritten in
// place on a terminal, a line per change with force, nothing otherwise.
func (a *app) jobProgress(what string, force bool) func(*serviceclient.ImportExportJob) {
	tty := isTerminal(a.stderr)
	if !tty && !force {
		return nil
	}
	last := ""
	return func(j *serviceclient.ImportExportJob) {
		line := fmt.Sprintf("%s %s: %s %d/%d (%d%%), %d failed", what, j.JobID, j.Status, j.ProcessedCount, j.DeviceCount, j.Progress, j.FailedCount)
		if line == last {
			return
		}
		last = line
		if !tty {
			fmt.Fprintln(a.stderr, line)
			return
		}
		fmt.Fprintf(a.stderr, "\r%s\x1b[K", line)
		if j.Finished() {
			fmt.Fprintln(a.stderr)
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// renderImport prints an import's outcome and its failed lines.
func renderImport(w io.Writer, j *serviceclient.ImportExportJob, errs []serviceclient.ImportError) error {
	applied := j.ProcessedCount - j.FailedCount
	if _, err := fmt.Fprintf(w, "import job %s %s: %d lines, %d applied, %d failed\n", j.JobID, j.Status, j.DeviceCount, applied, j.FailedCount); err != nil {
		return err
	}
	if len(errs) == 0 {
		return nil
	}
	rows := make([][]string, 0, len(errs))
	for _, e := range errs {
		rows = append(rows, []string{strconv.Itoa(e.Line), e.DeviceID, e.ImportMode, e.ErrorCode, e.ErrorStatus})
	}
	return writeTable(w, []string{"LINE", "DEVICE ID", "MODE", "ERROR", "MESSAGE"}, rows)
}
