package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/localapi"
)

func (t *tools) devicesCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "devices",
		Short: "List the field devices and their connection state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list localapi.DeviceList
			return t.show(cmd, &f, "/v1/devices", &list, func(w io.Writer) {
				row(w, "ID", "BUS", "ADDRESS", "PROFILE", "STATE", "LAST SEEN", "LAST ERROR")
				for _, d := range list.Devices {
					row(w, d.ID, d.Bus, fmt.Sprint(d.Address), d.Profile, d.State, ago(list.Time, d.LastSeen), d.LastError)
				}
			})
		},
	}
	f.add(c, false)
	return c
}
