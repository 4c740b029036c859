package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/gateway/localapi"
)

func (t *tools) readCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "read ID [POINT...]",
		Short: "Read points from a device now (all points when none are named)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := json.Marshal(localapi.ReadRequest{Points: args[1:]})
			if err != nil {
				return fmt.Errorf("encode read request: %w", err)
			}
			var res localapi.ReadResponse
			if err := t.call(cmd, &f, false, "POST", devicePath(args[0], "read"), body, &res); err != nil {
				return err
			}
			return t.emit(&f, res, func(w io.Writer) {
				row(w, "POINT", "VALUE", "QUALITY", "ERROR")
				for _, v := range res.Values {
					row(w, v.Point, jsonValue(v.Value), v.Quality, v.Error)
				}
			})
		},
	}
	f.add(c, false)
	return c
}

func (t *tools) writeCmd() *cobra.Command {
	var f apiFlags
	c := &cobra.Command{
		Use:   "write ID POINT=VALUE...",
		Short: "Write point values to a device",
		Long: `Write point values to a device. VALUE is taken as JSON when it parses
(21.5, 3, true, "text") and as a plain string otherwise (auto, on).`,
		Example: `  drover write pump-1 setpoint=21.5
  drover write pump-1 mode=auto enabled=true`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			values, err := parseAssignments(args[1:])
			if err != nil {
				return err
			}
			body, err := json.Marshal(values)
			if err != nil {
				return fmt.Errorf("encode write request: %w", err)
			}
			var res localapi.WriteResponse
			if err := t.call(cmd, &f, true, "POST", devicePath(args[0], "write"), body, &res); err != nil {
				return err
			}
			if err := t.emit(&f, res, func(w io.Writer) {
				row(w, "POINT", "RESULT", "READ BACK")
				for _, r := range res.Results {
					result := "ok"
					if !r.OK {
						result = "failed: " + r.Error
					}
					row(w, r.Point, result, jsonValue(r.ReadBack))
				}
			}); err != nil {
				return err
			}
			failed := 0
			for _, r := range res.Results {
				if !r.OK {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d points not written to %s", failed, len(res.Results), args[0])
			}
			return nil
		},
	}
	f.add(c, true)
	return c
}

// parseAssignments turns POINT=VALUE arguments into the write body. VALUE
// is kept as JSON when it is valid JSON, so 21.50 stays 21.50; anything
// else becomes a JSON string.
func parseAssignments(args []string) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(args))
	for _, a := range args {
		point, value, ok := strings.Cut(a, "=")
		point = strings.TrimSpace(point)
		if !ok || point == "" {
			return nil, fmt.Errorf("%q: want POINT=VALUE", a)
		}
		if _, dup := out[point]; dup {
			return nil, fmt.Errorf("point %q given twice", point)
		}
		if json.Valid([]byte(value)) {
			out[point] = json.RawMessage(strings.TrimSpace(value))
			continue
		}
		s, err := json.Marshal(value)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", a, err)
		}
		out[point] = s
	}
	return out, nil
}
