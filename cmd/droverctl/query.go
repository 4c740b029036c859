package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/serviceclient"
)

func (a *app) queryCmd() *cobra.Command {
	var pageSize int
	cmd := &cobra.Command{
		Use:   `query "SELECT … FROM devices [WHERE …]"`,
		Short: "Run an IoT Hub query over twins and print every page",
		Long: `Run an IoT Hub query and follow continuation tokens until the last
page. SELECT * prints one row per twin; projections and aggregates print one
column per selected name. -o json prints the items as one JSON array.`,
		Example: `  droverctl query "SELECT * FROM devices WHERE tags.site = 'plant1'"
  droverctl query "SELECT properties.reported.firmware.status AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.firmware.status"`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := strings.Join(args, " ")
			if pageSize < 0 {
				return fmt.Errorf("query: --page-size must not be negative")
			}
			return show(cmd.Context(), a, "query", func(ctx context.Context, c *serviceclient.Client) ([]json.RawMessage, error) {
				return c.QueryAll(ctx, q, pageSize)
			}, renderQuery)
		},
	}
	cmd.Flags().IntVar(&pageSize, "page-size", 0, "items per page `N` asked of the hub (default: the hub's choice)")
	return cmd
}

// renderQuery prints twins (items with deviceId, etag and properties) as
// DEVICE ID, STATUS, CONNECTION, LAST ACTIVITY, TAGS; anything else with one
// column per top-level key, in the order the keys first appear.
func renderQuery(w io.Writer, items []json.RawMessage) error {
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "(no results)")
		return err
	}
	objs := make([]orderedObject, len(items))
	allTwins := true
	for i, it := range items {
		objs[i] = parseOrdered(it)
		if !objs[i].isTwin() {
			allTwins = false
		}
	}
	if allTwins {
		rows := make([][]string, 0, len(objs))
		for _, o := range objs {
			rows = append(rows, []string{
				o.str("deviceId"), o.str("status"), o.str("connectionState"),
				hubTime(o.str("lastActivityTime")), o.cell("tags"),
			})
		}
		return writeTable(w, []string{"DEVICE ID", "STATUS", "CONNECTION", "LAST ACTIVITY", "TAGS"}, rows)
	}
	var cols []string
	seen := map[string]bool{}
	for _, o := range objs {
		for _, k := range o.keys {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	rows := make([][]string, 0, len(objs))
	for _, o := range objs {
		row := make([]string, len(cols))
		for i, k := range cols {
			row[i] = o.cell(k)
		}
		rows = append(rows, row)
	}
	return writeTable(w, cols, rows)
}

// orderedObject is a JSON object's top-level members in document order. A
// non-object item becomes a single member named "value".
type orderedObject struct {
	keys   []string
	values map[string]json.RawMessage
}

func parseOrdered(raw json.RawMessage) orderedObject {
	o := orderedObject{values: map[string]json.RawMessage{}}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return orderedObject{keys: []string{"value"}, values: map[string]json.RawMessage{"value": raw}}
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			break
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			break
		}
		if _, dup := o.values[k]; !dup {
			o.keys = append(o.keys, k)
		}
		o.values[k] = v
	}
	return o
}

func (o orderedObject) isTwin() bool {
	_, id := o.values["deviceId"]
	_, etag := o.values["etag"]
	_, props := o.values["properties"]
	return id && etag && props
}

// str is a string member's value, or the member as compact JSON.
func (o orderedObject) str(k string) string {
	v, ok := o.values[k]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return o.cell(k)
}

// cell renders a member for a table: strings bare, null empty, the rest compact JSON.
func (o orderedObject) cell(k string) string {
	v, ok := o.values[k]
	if !ok {
		return ""
	}
	v = bytes.TrimSpace(v)
	switch {
	case bytes.Equal(v, []byte("null")):
		return ""
	case len(v) > 0 && v[0] == '"':
		var s string
		if json.Unmarshal(v, &s) == nil {
			return truncate(s, maxCell)
		}
	case len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')):
		if _, err := strconv.ParseFloat(string(v), 64); err == nil {
			return string(v)
		}
	}
	return compactJSON(v)
}
