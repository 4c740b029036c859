package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/plugins/host"
)

func (t *tools) configCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Work with gateway.yaml and device profiles",
	}
	c.AddCommand(t.configCheckCmd())
	return c
}

// checkReport is the -o json form of config check.
type checkReport struct {
	File     string           `json:"file"`
	OK       bool             `json:"ok"`
	Problems []config.Problem `json:"problems"`
}

func (t *tools) configCheckCmd() *cobra.Command {
	var output, pluginsDir string
	var pluginTimeout time.Duration
	c := &cobra.Command{
		Use:   "check FILE",
		Short: "Check gateway.yaml and the profiles it names; print every problem",
		Long: `Check gateway.yaml and every device profile it names, offline, and print
each problem as file:line: key: message. Exits non-zero when there is any.
The protocol plugins (drover-plugin-*) in the file's plugins.dir, or in
--plugins DIR, are started to check their own keys (bus settings, points,
byte orders); --plugins none skips them.`,
		Example: `  drover config check /etc/drover/gateway.yaml
  drover config check gateway.yaml --plugins /usr/lib/drover/plugins`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var asJSON bool
			switch output {
			case "table", "text", "":
			case "json":
				asJSON = true
			default:
				return fmt.Errorf("unknown output format %q (use table or json)", output)
			}
			ctx := cmdContext(cmd)
			var validators map[string]config.PluginValidator
			dir, explicit := pluginsDir, cmd.Flags().Changed("plugins")
			if !explicit {
				dir = config.PluginsDirOf(args[0]) // "" when the file cannot be read: that error says enough
				if dir != "" && !hasPlugins(dir) {
					fmt.Fprintf(t.stderr, "drover: note: no %s* in %q: plugin keys (bus settings, points) not checked; use --plugins DIR\n", host.ExecutablePrefix, dir)
				}
				if !hasPlugins(dir) {
					dir = ""
				}
			}
			if dir != "" && dir != "none" {
				vs, stop, err := t.startValidators(ctx, dir, pluginTimeout)
				if err != nil {
					return err
				}
				defer stop()
				validators = vs
			}
			problems, err := config.Check(ctx, args[0], validators)
			if err != nil {
				return fmt.Errorf("check %s: %w", args[0], err)
			}
			if asJSON {
				if problems == nil {
					problems = []config.Problem{}
				}
				if err := t.printJSON(checkReport{File: args[0], OK: len(problems) == 0, Problems: problems}); err != nil {
					return err
				}
			} else if err := config.FormatProblems(t.stdout, problems); err != nil {
				return err
			}
			if len(problems) > 0 {
				return fmt.Errorf("%s is not valid", args[0])
			}
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	c.Flags().StringVar(&pluginsDir, "plugins", "", "validate with the plugin executables in this directory (default: the file's plugins.dir; none: skip)")
	c.Flags().DurationVar(&pluginTimeout, "plugin-timeout", host.DefaultStartTimeout, "how long each plugin may take to start (raise it on slow boards or under emulation)")
	return c
}

// hasPlugins says whether dir holds at least one plugin executable.
func hasPlugins(dir string) bool {
	if dir == "" {
		return false
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), host.ExecutablePrefix) && !e.IsDir() {
			return true
		}
	}
	return false
}

// startValidators starts every drover-plugin-* executable in dir. A plugin
// that does not start is skipped with a warning; its buses then show up as
// "no plugin" problems. stop ends every started plugin.
func (t *tools) startValidators(ctx context.Context, dir string, timeout time.Duration) (map[string]config.PluginValidator, func(), error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read plugins directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutPrefix(e.Name(), host.ExecutablePrefix); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("no %s* executables in %s", host.ExecutablePrefix, dir)
	}
	log := slog.New(slog.NewTextHandler(t.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var started []*host.Instance
	vs := map[string]config.PluginValidator{}
	for _, n := range names {
		inst, err := host.Start(ctx, host.Options{Dir: dir, Logger: log, StartTimeout: timeout}, n)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				for _, s := range started {
					s.Close()
				}
				return nil, nil, err
			}
			fmt.Fprintf(t.stderr, "drover: warning: %v; its buses and profiles are not checked\n", err)
			continue
		}
		started = append(started, inst)
		vs[n] = inst.Plugin()
	}
	stop := func() {
		for _, s := range started {
			s.Close()
		}
	}
	return vs, stop, nil
}
