package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/localapi"
)

func (t *tools) jobsCmd() *cobra.Command {
	c := t.jobsListCmd("jobs")
	c.Short = "List the gateway's device job queue (config writes, writes, methods, reboots, resets)"
	c.Long = `jobs lists the gateway's device jobs, newest first: every action on a field
device is one (desired config, write, custom method, reboot, factory reset).
"jobs list" is the same; "jobs show ID" prints one job in full; "jobs cancel
ID" cancels one.`
	c.AddCommand(t.jobsListCmd("list"), t.jobsShowCmd(), t.jobsCancelCmd())
	return c
}

// jobsListCmd is "jobs" and "jobs list".
func (t *tools) jobsListCmd(use string) *cobra.Command {
	var (
		f      apiFlags
		device string
	)
	c := &cobra.Command{
		Use:   use,
		Short: "List the gateway's device jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/jobs"
			if device != "" {
				path += "?" + url.Values{"device": {device}}.Encode()
			}
			var list localapi.JobList
			return t.show(cmd, &f, path, &list, func(w io.Writer) {
				row(w, "ID", "DEVICE", "KIND", "SOURCE", "STATE", "ATTEMPTS", "PROGRESS", "CREATED", "REASON")
				for _, j := range list.Jobs {
					row(w, j.ID, j.Device, j.Kind, j.Source, j.State, fmt.Sprint(j.Attempts), percent(j.Progress), ago(list.Time, j.Created), j.Reason)
				}
			})
		},
	}
	f.add(c, false)
	c.Flags().StringVar(&device, "device", "", "only this device's jobs")
	return c
}

func percent(p int) string {
	if p <= 0 {
		return ""
	}
	return fmt.Sprintf("%d%%", p)
}

// jobsShowCmd prints one job in full.
func (t *tools) jobsShowCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "show JOB_ID",
		Short: "Show one job in full: what it was asked to do, its attempts and its result",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var j localapi.JobDetail
			return t.show(cmd, &f, "/v1/jobs/"+url.PathEscape(args[0]), &j, func(w io.Writer) { renderJob(w, j) })
		},
	}
	f.add(c, false)
	return c
}

// renderJob writes a job's fields, one "Name:  value" row each; empty ones
// are left out.
func renderJob(w io.Writer, j localapi.JobDetail) {
	field := func(k, v string) {
		if v != "" {
			row(w, k+":", v)
		}
	}
	stamp := func(at time.Time) string {
		if at.IsZero() {
			return ""
		}
		return at.UTC().Format(time.RFC3339)
	}
	field("ID", j.ID)
	field("Device", j.Device)
	field("Bus", j.Bus)
	field("Kind", j.Kind)
	field("Source", j.Source)
	field("State", j.State)
	field("Reason", j.Reason)
	attempts := fmt.Sprint(j.Attempts)
	if j.MaxAttempts > 0 {
		attempts += fmt.Sprintf(" of %d", j.MaxAttempts)
	}
	field("Attempts", attempts)
	field("Progress", percent(j.Progress))
	field("Message", j.Message)
	if j.Disruptive {
		field("Disruptive", fmt.Sprintf("yes (force: %v)", j.Force))
	}
	field("Created", stamp(j.Created))
	field("Started", stamp(j.Started))
	field("Not before", stamp(j.NotBefore))
	field("Deadline", stamp(j.Deadline))
	field("Ended", stamp(j.Ended))
	field("Payload", string(j.Payload))
	field("Result", string(j.Result))
	field("Error", j.Error)
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
