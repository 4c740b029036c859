package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// fail wraps err with what was being done, naming the --timeout when that is why.
func fail(ctx context.Context, what string, err error) error {
	return fmt.Errorf("%s: %w", what, cause(ctx, err))
}

// writeJSON prints v as indented JSON, HTML characters left alone.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeTable prints rows under an upper-case header, aligned with tabwriter.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// kv is one line of a key/value listing.
type kv struct{ k, v string }

// writeKV prints "Key:  value" lines, aligned.
func writeKV(w io.Writer, pairs []kv) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s:\t%s\n", p.k, cell(p.v))
	}
	return tw.Flush()
}

// writeBlock prints a titled, indented JSON document.
func writeBlock(w io.Writer, title string, v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s:\n  %s\n", title, b)
	return err
}

// cell keeps a table cell on one line and free of control characters.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// maxCell bounds JSON shown inside a table cell.
const maxCell = 60

// compactJSON renders v compactly for a table cell, truncated to maxCell runes.
func compactJSON(v any) string {
	if v == nil {
		return ""
	}
	var b []byte
	if raw, ok := v.(json.RawMessage); ok {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) != nil {
			return string(raw)
		}
		b = buf.Bytes()
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return fmt.Sprint(v)
		}
	}
	return truncate(string(b), maxCell)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// hubTime formats a hub timestamp in UTC to the second; unset ones are "-".
func hubTime(s string) string {
	if s == "" || strings.HasPrefix(s, "0001-01-01") {
		return "-"
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Format(time.RFC3339)
		}
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// withoutMeta drops "$metadata" and "$version" from a twin section for display.
func withoutMeta(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k == "$metadata" || k == "$version" {
			continue
		}
		out[k] = v
	}
	return out
}

// sectionVersion is a twin section's "$version", or "-".
func sectionVersion(m map[string]any) string {
	switch v := m["$version"].(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	}
	return "-"
}

// sortedProps renders a string map as "k=v k2=v2", keys sorted, values quoted when needed.
func sortedProps(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, quoteIfNeeded(k)+"="+quoteIfNeeded(m[k]))
	}
	return strings.Join(parts, " ")
}

// quoteIfNeeded quotes s when it is empty or holds spaces, quotes, '=' or non-printable runes.
func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == '"' || r == '=' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
