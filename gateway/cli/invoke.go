package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/localapi"
)

func (t *tools) invokeCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "invoke ID METHOD [JSON]",
		Short: "Run a direct method on a device (reboot, factoryReset, identify, ...)",
		Long: `Run a direct method on a device, as the hub would, through the gateway's
local API. The method's status and response payload are printed; a status of
400 or more makes drover exit non-zero.`,
		Example: `  drover invoke pump-1 identify
  drover invoke pump-1 reboot '{"force":true}'`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var payload []byte
			if len(args) == 3 {
				payload = []byte(args[2])
				if !json.Valid(payload) {
					return fmt.Errorf("payload %q is not JSON (quote strings: '\"text\"')", args[2])
				}
			}
			var res localapi.MethodResponse
			if err := t.call(cmd, &f, true, "POST", devicePath(args[0], "methods", args[1]), payload, &res); err != nil {
				return err
			}
			if asJSON, _ := f.json(); asJSON {
				if err := t.printJSON(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(t.stdout, "status %d\n", res.Status)
				if res.Payload != nil {
					if err := t.printJSON(res.Payload); err != nil {
						return err
					}
				}
			}
			if res.Status >= 400 {
				return fmt.Errorf("method %s on %s answered status %d", args[1], args[0], res.Status)
			}
			return nil
		},
	}
	f.add(c, true)
	return c
}
