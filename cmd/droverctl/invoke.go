package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/serviceclient"
)

// methodSlack is how much longer than the method's timeouts droverctl waits
// for the hub's answer, so the hub's own 504 arrives first.
const methodSlack = 15 * time.Second

func (a *app) invokeCmd() *cobra.Command {
	var timeout, connectTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "invoke DEVICE METHOD [JSON]",
		Short: "Call a direct method on a device and print its status and payload",
		Long: `Call a direct method on a connected device and print the status and
payload it answers with. The exit code is 1 when the device answers with a
status of 400 or more, or when the hub cannot deliver the call (the device is
offline: 404; it did not answer within --timeout: 504).

--timeout here is the method's response timeout; the command as a whole
waits that long plus --connect-timeout plus a margin.`,
		Example: `  droverctl invoke pump-1 reboot
  droverctl invoke pump-1 write '{"setpoint":21.5}' --timeout 10s`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, method := args[0], args[1]
			what := fmt.Sprintf("invoke %s on %s", method, dev)
			req := serviceclient.MethodRequest{
				MethodName:               method,
				ResponseTimeoutInSeconds: seconds(timeout),
				ConnectTimeoutInSeconds:  seconds(connectTimeout),
			}
			if timeout <= 0 {
				return fmt.Errorf("%s: --timeout must be positive", what)
			}
			if connectTimeout < 0 {
				return fmt.Errorf("%s: --connect-timeout must not be negative", what)
			}
			if len(args) == 3 {
				if !json.Valid([]byte(args[2])) {
					return fmt.Errorf("%s: payload is not valid JSON", what)
				}
				req.Payload = json.RawMessage(args[2])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			limit := time.Duration(req.ResponseTimeoutInSeconds+req.ConnectTimeoutInSeconds)*time.Second + methodSlack
			ctx, cancel := context.WithTimeoutCause(cmd.Context(), limit,
				fmt.Errorf("no answer from the hub within %s", limit))
			defer cancel()
			resp, err := c.InvokeMethod(ctx, dev, req)
			if err != nil {
				return fail(ctx, what, err)
			}
			if err := emit(a, resp, renderMethodResponse); err != nil {
				return err
			}
			if resp.Status >= 400 {
				return fmt.Errorf("%s: device answered with status %d", what, resp.Status)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long the hub waits for the device's answer")
	f.DurationVar(&connectTimeout, "connect-timeout", 0, "how long the hub waits for a disconnected device to connect")
	return cmd
}

// seconds rounds a duration up to whole seconds, the unit of the method API.
func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// renderMethodResponse prints the status and the pretty-printed payload.
func renderMethodResponse(w io.Writer, r *serviceclient.MethodResponse) error {
	if _, err := fmt.Fprintf(w, "Status: %s\n", strconv.Itoa(r.Status)); err != nil {
		return err
	}
	payload := json.RawMessage("null")
	if len(r.Payload) > 0 {
		payload = r.Payload
	}
	return writeBlock(w, "Payload", payload)
}
