package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/store"
)

// apiError is an error with the HTTP status and Azure error code to answer with.
type apiError struct {
	Status int
	Code   string // e.g. DeviceNotFound
	Msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Msg) }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// writeError answers in Azure's error shape, which the Node service SDK parses
// ("ErrorCode:<Name>;<text>"), plus the iothub-errorcode header.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.Status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	} else {
		s.log.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "code", ae.Code, "error", ae.Msg)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("iothub-errorcode", ae.Code)
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"Message":          "ErrorCode:" + ae.Code + ";" + ae.Msg,
		"ExceptionMessage": "Tracking ID:" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-TimeStamp:" + time.Now().UTC().Format("01/02/2006 15:04:05"),
	})
}

func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var le *twin.LimitError
	switch {
	case errors.As(err, &le):
		return errf(http.StatusBadRequest, "ArgumentInvalid", "%s", err.Error())
	case errors.Is(err, store.ErrNotFound):
		return errf(http.StatusNotFound, "DeviceNotFound", "%s", err.Error())
	case errors.Is(err, store.ErrExists):
		return errf(http.StatusConflict, "DeviceAlreadyExists", "%s", err.Error())
	case errors.Is(err, store.ErrPrecondition):
		return errf(http.StatusPreconditionFailed, "PreconditionFailed", "%s", err.Error())
	case errors.Is(err, store.ErrInvalidID):
		return errf(http.StatusBadRequest, "ArgumentInvalid", "%s", err.Error())
	}
	return errf(http.StatusInternalServerError, "ServerError", "%s", err.Error())
}
