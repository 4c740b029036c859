package serviceclient

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseError(t *testing.T) {
	cases := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   APIError
		str    string
	}{
		{
			name:   "classic azure body",
			status: 404,
			body:   `{"Message":"ErrorCode:DeviceNotFound;device pump-9 not found","ExceptionMessage":"Tracking ID:abc-G:1-TimeStamp:05/01/2026 10:00:00"}`,
			want:   APIError{Status: 404, Code: "DeviceNotFound", Message: "device pump-9 not found"},
			str:    "hub: 404 DeviceNotFound: device pump-9 not found",
		},
		{
			name:   "classic body, text with semicolons",
			status: 400,
			body:   `{"Message":"ErrorCode:ArgumentInvalid;bad key;too short","ExceptionMessage":""}`,
			want:   APIError{Status: 400, Code: "ArgumentInvalid", Message: "bad key;too short"},
			str:    "hub: 400 ArgumentInvalid: bad key;too short",
		},
		{
			name:   "structured message with known six-digit code",
			status: 404,
			body:   `{"Message":"{\"errorCode\":404103,\"trackingId\":\"t\",\"message\":\"Timed out waiting for device to connect.\",\"timestampUtc\":\"2026-01-01T00:00:00Z\"}","ExceptionMessage":""}`,
			want:   APIError{Status: 404, Code: "DeviceNotOnline", Message: "Timed out waiting for device to connect."},
			str:    "hub: 404 DeviceNotOnline: Timed out waiting for device to connect.",
		},
		{
			name:   "structured message with unknown code",
			status: 500,
			body:   `{"Message":"{\"errorCode\":500999,\"message\":\"odd\"}"}`,
			want:   APIError{Status: 500, Code: "500999", Message: "odd"},
		},
		{
			name:   "bare structured body",
			status: 504,
			body:   `{"errorCode":504101,"message":"device did not answer"}`,
			want:   APIError{Status: 504, Code: "GatewayTimeout", Message: "device did not answer"},
		},
		{
			name:   "lower-case message key",
			status: 401,
			body:   `{"message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}`,
			want:   APIError{Status: 401, Code: "IotHubUnauthorizedAccess", Message: "Unauthorized"},
		},
		{
			name:   "plain message without code, code from header",
			status: 412,
			header: http.Header{"Iothub-Errorcode": {"PreconditionFailed"}},
			body:   `{"Message":"etag mismatch"}`,
			want:   APIError{Status: 412, Code: "PreconditionFailed", Message: "etag mismatch"},
		},
		{
			name:   "exception message used when Message is empty",
			status: 500,
			body:   `{"Message":"","ExceptionMessage":"database locked"}`,
			want:   APIError{Status: 500, Message: "database locked"},
		},
		{
			name:   "tracking id is not a message",
			status: 500,
			body:   `{"ExceptionMessage":"Tracking ID:x"}`,
			want:   APIError{Status: 500},
			str:    "hub: 500: internal server error",
		},
		{
			name:   "empty body",
			status: 403,
			want:   APIError{Status: 403},
			str:    "hub: 403: forbidden",
		},
		{
			name:   "plain text body, first line only",
			status: 502,
			body:   "upstream broke\nstack trace line 1\nline 2",
			want:   APIError{Status: 502, Message: "upstream broke"},
		},
		{
			name:   "html body",
			status: 404,
			body:   "<html><body>nope</body></html>",
			want:   APIError{Status: 404, Message: "<html><body>nope</body></html>"},
		},
		{
			name:   "truncated json",
			status: 400,
			body:   `{"Message":"ErrorCode:Argument`,
			want:   APIError{Status: 400, Message: `{"Message":"ErrorCode:Argument`},
		},
		{
			name:   "json but not an object",
			status: 400,
			body:   `["a"]`,
			want:   APIError{Status: 400, Message: `["a"]`},
		},
		{
			name:   "Message is not a string",
			status: 400,
			body:   `{"Message":42}`,
			want:   APIError{Status: 400, Message: `{"Message":42}`},
		},
		{
			name:   "structured message that is not json",
			status: 400,
			body:   `{"Message":"{not json"}`,
			want:   APIError{Status: 400, Message: "{not json"},
		},
		{
			name:   "ErrorCode prefix without text",
			status: 409,
			body:   `{"Message":"ErrorCode:DeviceAlreadyExists"}`,
			want:   APIError{Status: 409, Code: "DeviceAlreadyExists"},
			str:    "hub: 409 DeviceAlreadyExists",
		},
		{
			name:   "invalid utf-8",
			status: 400,
			body:   "bad \xff\xfe byte",
			want:   APIError{Status: 400, Message: "bad ? byte"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			got := parseError(tc.status, h, []byte(tc.body))
			if *got != tc.want {
				t.Errorf("parseError(%d, %q)\n got %#v\nwant %#v", tc.status, tc.body, *got, tc.want)
			}
			if tc.str != "" && got.Error() != tc.str {
				t.Errorf("Error() = %q, want %q", got.Error(), tc.str)
			}
			if strings.ContainsAny(got.Error(), "\r\n") {
				t.Errorf("Error() spans lines: %q", got.Error())
			}
		})
	}
}

func TestParseErrorBoundsLongMessages(t *testing.T) {
	body := `{"Message":"ErrorCode:X;` + strings.Repeat("é", 1000) + `"}`
	got := parseError(400, http.Header{}, []byte(body))
	if len(got.Message) > maxMessage+len("…") {
		t.Fatalf("message not bounded: %d bytes", len(got.Message))
	}
	if !strings.HasSuffix(got.Message, "…") {
		t.Errorf("truncated message %q has no ellipsis", got.Message)
	}
}

func TestAPIErrorIs(t *testing.T) {
	cases := []struct {
		status int
		want   error
	}{
		{404, ErrNotFound}, {409, ErrConflict}, {412, ErrPreconditionFailed}, {401, ErrUnauthorized},
		{403, ErrForbidden}, {400, ErrBadRequest}, {429, ErrThrottled}, {504, ErrTimeout},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			var err error = &APIError{Status: tc.status}
			if !errors.Is(err, tc.want) {
				t.Errorf("errors.Is(%d, %v) = false", tc.status, tc.want)
			}
			if tc.want != ErrNotFound && errors.Is(err, ErrNotFound) {
				t.Errorf("status %d matches ErrNotFound", tc.status)
			}
		})
	}
}
