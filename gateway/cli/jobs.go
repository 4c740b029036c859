package cli

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/localapi"
)

func (t *tools) jobsCmd() *cobra.Command {
	var (
		f      apiFlags
		device string
	)
	c := &cobra.Command{
		Use:   "jobs",
		Short: "List the gateway's device job queue (config writes, reboots, firmware)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := t.connect(&f, false)
			if err != nil {
				return err
			}
			defer api.close()
			path := "/v1/jobs"
			if device != "" {
				path += "?" + url.Values{"device": {device}}.Encode()
			}
			var list localapi.JobList
			if err := api.request(cmdContext(cmd), "GET", path, nil, &list); err != nil {
				return err
			}
			if asJSON, _ := f.json(); asJSON {
				return t.printJSON(list)
			}
			w := t.table()
			row(w, "ID", "DEVICE", "KIND", "SOURCE", "STATE", "ATTEMPTS", "PROGRESS", "CREATED", "REASON")
			for _, j := range list.Jobs {
				progress := ""
				if j.Progress > 0 {
					progress = fmt.Sprintf("%d%%", j.Progress)
				}
				row(w, j.ID, j.Device, j.Kind, j.Source, j.State, fmt.Sprint(j.Attempts), progress, ago(list.Time, j.Created), j.Reason)
			}
			return w.Flush()
		},
	}
	f.add(c, false)
	c.Flags().StringVar(&device, "device", "", "only this device's jobs")
	c.AddCommand(t.jobsCancelCmd())
	return c
}

// jobsCancelCmd cancels a job through the gateway's own cancelJob method.
func (t *tools) jobsCancelCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "cancel JOB_ID",
		Short: "Cancel a queued, waiting or running job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := t.connect(&f, true)
			if err != nil {
				return err
			}
			defer api.close()
			var st localapi.Status
			if err := api.request(cmdContext(cmd), "GET", "/v1/status", nil, &st); err != nil {
				return err
			}
			payload, _ := json.Marshal(map[string]string{"jobId": args[0]})
			var res localapi.MethodResponse
			if err := api.request(cmdContext(cmd), "POST", devicePath(st.GatewayID, "methods", "cancelJob"), payload, &res); err != nil {
				return err
			}
			if res.Status >= 400 {
				b, _ := json.Marshal(res.Payload)
				return fmt.Errorf("cancel job %s: status %d: %s", args[0], res.Status, b)
			}
			fmt.Fprintf(t.stdout, "job %s cancelled\n", args[0])
			return nil
		},
	}
	f.add(c, true)
	return c
}
