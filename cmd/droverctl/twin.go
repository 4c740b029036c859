package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/serviceclient"
)

func (a *app) twinCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "twin",
		Short: "Read and update device twins",
	}
	cmd.AddCommand(a.twinShowCmd(), a.twinUpdateCmd())
	return cmd
}

func (a *app) twinShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a device twin: tags, desired and reported properties",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), a, "show twin "+args[0], func(ctx context.Context, c *serviceclient.Client) (*serviceclient.Twin, error) {
				return c.GetTwin(ctx, args[0])
			}, renderTwin)
		},
	}
}

func (a *app) twinUpdateCmd() *cobra.Command {
	var tags, desired, patch, etag string
	cmd := &cobra.Command{
		Use:   "update ID {--tags JSON --desired JSON | --patch JSON}",
		Short: "Merge-patch a twin's tags and desired properties (null deletes a key)",
		Example: `  droverctl twin update pump-1 --tags '{"site":"plant1"}'
  droverctl twin update pump-1 --desired '{"config":{"setpoint":21.5,"old":null}}'
  droverctl twin update pump-1 --patch '{"tags":{"line":"A"},"properties":{"desired":{"x":1}}}' --etag AAAAAAAAAAc=`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			what := "update twin " + id
			var p serviceclient.Twin
			var err error
			if cmd.Flags().Changed("patch") {
				var patchETag string
				p, patchETag, err = parseTwinPatch(patch)
				if err != nil {
					return fmt.Errorf("%s: --patch: %w", what, err)
				}
				if etag == "" {
					etag = patchETag
				}
			} else {
				if cmd.Flags().Changed("tags") {
					if p.Tags, err = parseObject(tags); err != nil {
						return fmt.Errorf("%s: --tags: %w", what, err)
					}
				}
				if cmd.Flags().Changed("desired") {
					if p.Properties.Desired, err = parseObject(desired); err != nil {
						return fmt.Errorf("%s: --desired: %w", what, err)
					}
				}
			}
			return show(cmd.Context(), a, what, func(ctx context.Context, c *serviceclient.Client) (*serviceclient.Twin, error) {
				t, err := c.UpdateTwin(ctx, id, p, etag)
				if errors.Is(err, serviceclient.ErrPreconditionFailed) {
					return nil, fmt.Errorf("the twin changed since etag %s: %w", etag, err)
				}
				return t, err
			}, renderTwin)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tags, "tags", "", "JSON object merged into the tags")
	f.StringVar(&desired, "desired", "", "JSON object merged into the desired properties")
	f.StringVar(&patch, "patch", "", `whole patch {"tags":{…},"properties":{"desired":{…}}}`)
	f.StringVar(&etag, "etag", "", "apply only if the twin's etag is still `E` (default: unconditional)")
	cmd.MarkFlagsMutuallyExclusive("patch", "tags")
	cmd.MarkFlagsMutuallyExclusive("patch", "desired")
	cmd.MarkFlagsOneRequired("patch", "tags", "desired")
	return cmd
}

// parseObject reads a JSON object, keeping numbers exactly as written.
func parseObject(s string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a JSON object: trailing data")
	}
	if m == nil {
		return nil, errors.New("not a JSON object: null")
	}
	return m, nil
}

// parseTwinPatch reads {"tags":{…},"properties":{"desired":{…}},"etag":"…"};
// any other key is refused, since a service may change nothing else.
func parseTwinPatch(s string) (serviceclient.Twin, string, error) {
	var t serviceclient.Twin
	top, err := parseObject(s)
	if err != nil {
		return t, "", err
	}
	etag := ""
	for k, v := range top {
		switch k {
		case "tags":
			m, ok := v.(map[string]any)
			if !ok {
				return t, "", errors.New(`"tags" is not an object`)
			}
			t.Tags = m
		case "properties":
			props, ok := v.(map[string]any)
			if !ok {
				return t, "", errors.New(`"properties" is not an object`)
			}
			for pk, pv := range props {
				if pk != "desired" {
					return t, "", fmt.Errorf("properties.%s cannot be patched by a service, only properties.desired", pk)
				}
				m, ok := pv.(map[string]any)
				if !ok {
					return t, "", errors.New(`"properties.desired" is not an object`)
				}
				t.Properties.Desired = m
			}
		case "etag":
			e, ok := v.(string)
			if !ok {
				return t, "", errors.New(`"etag" is not a string`)
			}
			etag = e
		default:
			return t, "", fmt.Errorf("key %q cannot be patched: only tags and properties.desired", k)
		}
	}
	if t.Tags == nil && t.Properties.Desired == nil {
		return t, "", errors.New("nothing to patch: give tags and/or properties.desired")
	}
	return t, etag, nil
}

// renderTwin prints a twin's header fields and its three sections.
func renderTwin(w io.Writer, t *serviceclient.Twin) error {
	edge := t.Capabilities != nil && t.Capabilities.IoTEdge
	if err := writeKV(w, []kv{
		{"Device ID", t.DeviceID},
		{"Status", t.Status},
		{"Connection", t.ConnectionState},
		{"Last activity", hubTime(t.LastActivityTime)},
		{"Edge", yesNo(edge)},
		{"Version", strconv.FormatInt(t.Version, 10)},
		{"ETag", t.ETag},
	}); err != nil {
		return err
	}
	tags := t.Tags
	if tags == nil {
		tags = map[string]any{}
	}
	if err := writeBlock(w, "Tags", tags); err != nil {
		return err
	}
	if err := writeBlock(w, "Desired ($version "+sectionVersion(t.Properties.Desired)+")", withoutMeta(t.Properties.Desired)); err != nil {
		return err
	}
	return writeBlock(w, "Reported ($version "+sectionVersion(t.Properties.Reported)+")", withoutMeta(t.Properties.Reported))
}
