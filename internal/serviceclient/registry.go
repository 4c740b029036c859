package serviceclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// GetDevice reads a device identity.
func (c *Client) GetDevice(ctx context.Context, deviceID string) (*Device, error) {
	var d Device
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"devices", deviceID}}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// CreateDevice creates d (PUT without If-Match). A nil Authentication, or
// empty keys, ask the hub to generate the keys. Creating an existing id
// fails with ErrConflict.
func (c *Client) CreateDevice(ctx context.Context, d Device) (*Device, error) {
	if d.DeviceID == "" {
		return nil, errors.New("create device: empty device id")
	}
	if d.Authentication == nil {
		// What the Node SDK sends: the hub generates the keys (notes 2.3).
		d.Authentication = &Authentication{Type: AuthSAS, SymmetricKey: &SymmetricKey{}}
	}
	d.ETag = ""
	var out Device
	if _, err := c.call(ctx, request{method: http.MethodPut, path: []string{"devices", d.DeviceID}, body: d}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateDevice replaces the identity d.DeviceID with d (PUT with If-Match).
// Fields left out are reset, so read, modify and write back. etag "" means
// "*" (unconditional); a stale etag fails with ErrPreconditionFailed.
func (c *Client) UpdateDevice(ctx context.Context, d Device, etag string) (*Device, error) {
	if d.DeviceID == "" {
		return nil, errors.New("update device: empty device id")
	}
	var out Device
	r := request{
		method: http.MethodPut,
		path:   []string{"devices", d.DeviceID},
		header: http.Header{"If-Match": {ifMatch(etag)}},
		body:   d,
	}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteDevice deletes a device identity and its twin. etag "" means "*".
func (c *Client) DeleteDevice(ctx context.Context, deviceID, etag string) error {
	r := request{
		method: http.MethodDelete,
		path:   []string{"devices", deviceID},
		header: http.Header{"If-Match": {ifMatch(etag)}},
	}
	_, err := c.call(ctx, r, nil)
	return err
}

// ListDevices returns up to top identities (top <= 0: the hub's maximum, 1000).
// Prefer Query for large registries.
func (c *Client) ListDevices(ctx context.Context, top int) ([]Device, error) {
	r := request{method: http.MethodGet, path: []string{"devices"}}
	if top > 0 {
		r.query = map[string][]string{"top": {strconv.Itoa(top)}}
	}
	var out []Device
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// MaxBulkDevices is the most entries one bulk call accepts (notes 2.3).
const MaxBulkDevices = 100

// BulkDevices creates, updates or deletes up to MaxBulkDevices identities in
// one call. A partial failure is not an error: the hub answers 400 with a
// BulkResult whose Errors name the failed entries, and that result is returned.
func (c *Client) BulkDevices(ctx context.Context, devices []ExportImportDevice) (*BulkResult, error) {
	if len(devices) == 0 || len(devices) > MaxBulkDevices {
		return nil, fmt.Errorf("bulk devices: %d entries, want 1 to %d", len(devices), MaxBulkDevices)
	}
	r := request{method: http.MethodPost, path: []string{"devices"}, body: devices, alsoOK: []int{http.StatusBadRequest}}
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if err != nil {
		return nil, err
	}
	out, ok := asBulkResult(b)
	if !ok {
		if resp.StatusCode == http.StatusBadRequest {
			return nil, parseError(resp.StatusCode, resp.Header, b)
		}
		return nil, fmt.Errorf("decode POST /devices response: not a bulk operation result")
	}
	return out, nil
}

// asBulkResult reads a 400 body that is a BulkRegistryOperationResult.
func asBulkResult(body []byte) (*BulkResult, bool) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) != nil {
		return nil, false
	}
	if _, ok := probe["isSuccessful"]; !ok {
		return nil, false
	}
	var r BulkResult
	if json.Unmarshal(body, &r) != nil {
		return nil, false
	}
	return &r, true
}
