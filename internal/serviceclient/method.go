package serviceclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// methodSlack is how much longer than the method's own timeouts the HTTP
// call may take, so the hub's 504 arrives before the client gives up (notes 2.5).
const methodSlack = 15 * time.Second

// InvokeMethod calls a direct method on a connected device and returns the
// device's status and payload. A device that is offline fails with
// ErrNotFound (DeviceNotOnline); one that does not answer in time with ErrTimeout.
// When ctx has no deadline, one is set from the request's timeouts.
func (c *Client) InvokeMethod(ctx context.Context, deviceID string, req MethodRequest) (*MethodResponse, error) {
	if req.MethodName == "" {
		return nil, errors.New("invoke method: empty method name")
	}
	if req.Payload != nil && !json.Valid(req.Payload) {
		return nil, fmt.Errorf("invoke method %s: payload is not valid JSON", req.MethodName)
	}
	if _, ok := ctx.Deadline(); !ok {
		rt := req.ResponseTimeoutInSeconds
		if rt <= 0 {
			rt = 30
		}
		d := time.Duration(rt+req.ConnectTimeoutInSeconds)*time.Second + methodSlack
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var out MethodResponse
	if _, err := c.call(ctx, request{method: http.MethodPost, path: []string{"twins", deviceID, "methods"}, body: req}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
