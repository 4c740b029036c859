package bridges

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/drover-iot/drover/bridges/bus"
	"github.com/drover-iot/drover/plugins"
)

// statusOf maps a failed call to a method status (see the package comment).
func statusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, bus.ErrBackoff):
		return http.StatusServiceUnavailable
	}
	switch plugins.CodeOf(err) {
	case plugins.CodeTimeout, plugins.CodeGatewayTarget:
		return http.StatusGatewayTimeout
	case plugins.CodeUnavailable, plugins.CodeBusy, plugins.CodeGatewayPath:
		return http.StatusServiceUnavailable
	case plugins.CodeInUse:
		return http.StatusConflict
	case plugins.CodeNotFound, plugins.CodeUnsupported:
		return http.StatusNotFound
	case plugins.CodeInvalid:
		return http.StatusBadRequest
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorBody is the response body of a failed method.
func errorBody(format string, args ...any) map[string]any {
	return map[string]any{"error": fmt.Sprintf(format, args...)}
}

// decodePayload decodes a method payload into dst. An empty payload or
// JSON null leaves dst untouched. Numbers decode as json.Number; unknown
// fields of a struct and trailing data are errors.
func decodePayload(payload json.RawMessage, dst any) error {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || string(p) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
