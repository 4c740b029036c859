package cli

import (
	"github.com/spf13/cobra"
)

func (t *tools) twinCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "twin ID",
		Short: "Show the cached twin of a device (or of the gateway: its own id)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tw map[string]any
			if err := t.get(cmd, &f, devicePath(args[0], "twin"), &tw); err != nil {
				return err
			}
			// A twin is a JSON document; the table view is the same indented JSON.
			return t.printJSON(tw)
		},
	}
	f.add(c, false)
	return c
}
