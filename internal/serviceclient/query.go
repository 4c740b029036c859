package serviceclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Query headers (notes 2.6).
const (
	headerContinuation = "x-ms-continuation"
	headerMaxItemCount = "x-ms-max-item-count"
)

// ErrContinuationLoop is returned by QueryAll when the hub hands back a
// continuation token it already gave.
var ErrContinuationLoop = errors.New("hub repeated a continuation token")

// Query runs one page of an IoT Hub query ("SELECT * FROM devices WHERE …").
// pageSize <= 0 lets the hub choose; continuation is "" for the first page and
// the returned next for the following ones. next is "" on the last page.
// Items are twins for SELECT *, plain objects for projections and aggregates.
func (c *Client) Query(ctx context.Context, query string, pageSize int, continuation string) (items []json.RawMessage, next string, err error) {
	h := http.Header{}
	if pageSize > 0 {
		h.Set(headerMaxItemCount, strconv.Itoa(pageSize))
	}
	if continuation != "" {
		h.Set(headerContinuation, continuation)
	}
	r := request{
		method: http.MethodPost,
		path:   []string{"devices", "query"},
		header: h,
		body: struct {
			Query string `json:"query"`
		}{query},
	}
	rh, err := c.call(ctx, r, &items)
	if err != nil {
		return nil, "", err
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	return items, rh.Get(headerContinuation), nil
}

// QueryAll runs a query and follows continuation tokens until the last page.
func (c *Client) QueryAll(ctx context.Context, query string, pageSize int) ([]json.RawMessage, error) {
	all := []json.RawMessage{}
	seen := map[string]bool{}
	cont := ""
	for page := 1; ; page++ {
		items, next, err := c.Query(ctx, query, pageSize, cont)
		if err != nil {
			if page > 1 {
				return nil, fmt.Errorf("query page %d: %w", page, err)
			}
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("query page %d: %w", page, ErrContinuationLoop)
		}
		seen[next] = true
		cont = next
	}
}
