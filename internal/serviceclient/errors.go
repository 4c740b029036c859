package serviceclient

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinels matched by an *APIError with the corresponding HTTP status, for errors.Is.
var (
	ErrBadRequest         = errors.New("bad request")         // 400
	ErrUnauthorized       = errors.New("unauthorized")        // 401
	ErrForbidden          = errors.New("forbidden")           // 403
	ErrNotFound           = errors.New("not found")           // 404
	ErrConflict           = errors.New("conflict")            // 409
	ErrPreconditionFailed = errors.New("precondition failed") // 412
	ErrThrottled          = errors.New("throttled")           // 429
	ErrTimeout            = errors.New("gateway timeout")     // 504
)

var statusSentinels = map[int]error{
	http.StatusBadRequest:         ErrBadRequest,
	http.StatusUnauthorized:       ErrUnauthorized,
	http.StatusForbidden:          ErrForbidden,
	http.StatusNotFound:           ErrNotFound,
	http.StatusConflict:           ErrConflict,
	http.StatusPreconditionFailed: ErrPreconditionFailed,
	http.StatusTooManyRequests:    ErrThrottled,
	http.StatusGatewayTimeout:     ErrTimeout,
}

// APIError is a non-2xx answer from the hub.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the IoT Hub error code name, e.g. "DeviceNotFound"; empty when the hub gave none.
	Code string
	// Message is the hub's description.
	Message string
}

// Error formats the error as "hub: 404 DeviceNotFound: device pump-9 not found".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("hub: ")
	b.WriteString(strconv.Itoa(e.Status))
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	msg := e.Message
	if msg == "" && e.Code == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
	}
	if msg != "" {
		b.WriteString(": " + msg)
	}
	return b.String()
}

// Is matches the status sentinels (ErrNotFound and friends).
func (e *APIError) Is(target error) bool {
	s, ok := statusSentinels[e.Status]
	return ok && s == target
}

// errorCodes names the six-digit codes newer hubs put in structured messages
// (notes 2.2, from the troubleshooting doc and the C# enum).
var errorCodes = map[int]string{
	400001: "InvalidProtocolVersion", 400004: "ArgumentInvalid", 400006: "IotHubFormatError",
	400011: "DeviceDefinedMultipleTimes", 400027: "ConnectionForcefullyClosedOnNewConnection",
	401002: "IotHubUnauthorizedAccess", 401003: "IoTHubUnauthorized",
	403001: "JobQuotaExceeded", 403002: "IotHubQuotaExceeded", 403004: "DeviceMaximumQueueDepthExceeded",
	404001: "DeviceNotFound", 404002: "JobNotFound", 404010: "ModuleNotFound",
	404103: "DeviceNotOnline", 404104: "DeviceConnectionClosedRemotely",
	409001: "DeviceAlreadyExists", 409002: "LinkCreationConflict", 409301: "ModuleAlreadyExistsOnDevice",
	412001: "PreconditionFailed", 412002: "DeviceMessageLockLost",
	413001: "MessageTooLarge", 413002: "TooManyDevices",
	429001: "ThrottlingException", 429003: "ThrottlingBacklogTimeout",
	500001: "ServerError", 500008: "GenericTimeout", 503001: "ServiceUnavailable", 504101: "GatewayTimeout",
}

// maxMessage bounds how much of an error body ends up in an error string.
const maxMessage = 300

// parseError turns a hub error response into an *APIError. It understands
// the classic body {"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"…"},
// the structured form with a JSON object inside Message, an iothub-errorcode
// header, and falls back to the first line of a non-JSON body (notes 2.2).
func parseError(status int, h http.Header, body []byte) *APIError {
	e := &APIError{Status: status, Code: h.Get("iothub-errorcode")}
	var env struct {
		Message          string `json:"Message"`
		ExceptionMessage string `json:"ExceptionMessage"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		e.Message = firstLine(string(body))
		return e
	}
	var probe struct {
		ErrorCode json.RawMessage `json:"errorCode"`
	}
	_ = json.Unmarshal(body, &probe) // body is known to be a JSON object here
	switch {
	case len(probe.ErrorCode) > 0:
		// A bare structured object ({"errorCode":404001,"message":…}) as the whole body.
		if code, msg, ok := parseStructured(string(body)); ok {
			if code != "" {
				e.Code = code
			}
			e.Message = msg
		}
	case strings.HasPrefix(strings.TrimSpace(env.Message), "{"):
		if code, msg, ok := parseStructured(env.Message); ok {
			if code != "" {
				e.Code = code
			}
			e.Message = msg
		} else {
			e.Message = firstLine(env.Message)
		}
	case strings.HasPrefix(env.Message, "ErrorCode:"):
		rest := strings.TrimPrefix(env.Message, "ErrorCode:")
		code, msg, _ := strings.Cut(rest, ";")
		if code = strings.TrimSpace(code); code != "" {
			e.Code = code
		}
		e.Message = firstLine(strings.TrimSpace(msg))
	default:
		e.Message = firstLine(env.Message)
	}
	if e.Message == "" && env.ExceptionMessage != "" && !strings.HasPrefix(env.ExceptionMessage, "Tracking ID:") {
		e.Message = firstLine(env.ExceptionMessage)
	}
	return e
}

// parseStructured reads {"errorCode":404001,"message":"…",…}.
func parseStructured(s string) (code, msg string, ok bool) {
	var v struct {
		ErrorCode json.RawMessage `json:"errorCode"`
		Message   string          `json:"message"`
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return "", "", false
	}
	if len(v.ErrorCode) == 0 && v.Message == "" {
		return "", "", false
	}
	raw := strings.Trim(string(v.ErrorCode), `"`)
	if n, err := strconv.Atoi(raw); err == nil {
		if name, known := errorCodes[n]; known {
			code = name
		} else {
			code = raw
		}
	} else if raw != "null" {
		code = raw
	}
	return code, firstLine(v.Message), true
}

// firstLine keeps error strings on one line and bounded.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
