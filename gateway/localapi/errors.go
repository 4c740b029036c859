package localapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/drover-iot/drover/plugins"
)

// Error codes of the API's own refusals (besides the plugins.Code names).
const (
	CodeBadRequest   = "bad-request"
	CodeTooLarge     = "too-large"
	CodeUnauthorized = "unauthorized"
	CodeNoRoute      = "no-route"
	CodeMethod       = "method-not-allowed"
	CodeInternal     = "internal"
)

// StatusOf maps a Backend error to an HTTP status and an error code. The
// code is the plugins.Code name ("not-found", "busy", ...), so clients see
// the same vocabulary as the plugins use.
func StatusOf(err error) (int, string) {
	c := plugins.CodeOf(err)
	switch c {
	case plugins.CodeNotFound:
		return http.StatusNotFound, c.String()
	case plugins.CodeInvalid:
		return http.StatusBadRequest, c.String()
	case plugins.CodeBusy, plugins.CodeInUse:
		return http.StatusConflict, c.String()
	case plugins.CodeUnavailable:
		return http.StatusServiceUnavailable, c.String()
	case plugins.CodeTimeout, plugins.CodeGatewayTarget:
		return http.StatusGatewayTimeout, c.String()
	case plugins.CodeDeviceError, plugins.CodeGatewayPath:
		return http.StatusBadGateway, c.String()
	case plugins.CodeUnsupported:
		return http.StatusNotImplemented, c.String()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, plugins.CodeTimeout.String()
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, plugins.CodeUnavailable.String()
	}
	return http.StatusInternalServerError, CodeInternal
}
