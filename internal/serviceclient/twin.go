package serviceclient

import (
	"context"
	"net/http"
)

// GetTwin reads a device twin.
func (c *Client) GetTwin(ctx context.Context, deviceID string) (*Twin, error) {
	var t Twin
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"twins", deviceID}}, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// UpdateTwin merge-patches the twin's tags and desired properties (PATCH; a
// nil map value deletes that key) and returns the whole twin. etag "" means
// "*"; a stale etag fails with ErrPreconditionFailed.
func (c *Client) UpdateTwin(ctx context.Context, deviceID string, patch Twin, etag string) (*Twin, error) {
	return c.writeTwin(ctx, http.MethodPatch, deviceID, patch, etag)
}

// ReplaceTwin replaces the twin's tags and desired properties with those of
// twin (PUT); reported properties are untouched. etag "" means "*".
func (c *Client) ReplaceTwin(ctx context.Context, deviceID string, twin Twin, etag string) (*Twin, error) {
	return c.writeTwin(ctx, http.MethodPut, deviceID, twin, etag)
}

// twinPatchBody is what PATCH sends: only the sections given.
type twinPatchBody struct {
	Tags       map[string]any `json:"tags,omitempty"`
	Properties *desiredOnly   `json:"properties,omitempty"`
}

// twinReplaceBody is what PUT sends: both sections, empty when not given, as PUT replaces them.
type twinReplaceBody struct {
	Tags       map[string]any `json:"tags"`
	Properties desiredOnly    `json:"properties"`
}

type desiredOnly struct {
	Desired map[string]any `json:"desired"`
}

func (c *Client) writeTwin(ctx context.Context, method, deviceID string, in Twin, etag string) (*Twin, error) {
	// Read-only fields stay out of the body: the hub owns them.
	var body any
	if method == http.MethodPut {
		b := twinReplaceBody{Tags: in.Tags, Properties: desiredOnly{Desired: in.Properties.Desired}}
		if b.Tags == nil {
			b.Tags = map[string]any{}
		}
		if b.Properties.Desired == nil {
			b.Properties.Desired = map[string]any{}
		}
		body = b
	} else {
		b := twinPatchBody{Tags: in.Tags}
		if in.Properties.Desired != nil {
			b.Properties = &desiredOnly{Desired: in.Properties.Desired}
		}
		body = b
	}
	r := request{
		method: method,
		path:   []string{"twins", deviceID},
		header: http.Header{"If-Match": {ifMatch(etag)}},
		body:   body,
	}
	var t Twin
	if _, err := c.call(ctx, r, &t); err != nil {
		return nil, err
	}
	return &t, nil
}
