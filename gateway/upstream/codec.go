package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Errors of the client. Compare with errors.Is.
var (
	// ErrNotConnected: there is no live connection, or it dropped before the answer came.
	ErrNotConnected = errors.New("upstream not connected")
	// ErrTimeout: the hub did not answer before the request's deadline. It is
	// wrapped together with context.DeadlineExceeded.
	ErrTimeout = errors.New("upstream request timed out")
	// ErrTokenRenewal is what Handler.Disconnected gets for a planned
	// reconnect with a fresh SAS token.
	ErrTokenRenewal = errors.New("reconnecting to renew the SAS token")
	// ErrResync is what Handler.Disconnected gets when the client dropped the
	// connection to recover from an unreadable or lost desired notification:
	// the next Connected re-reads the twin.
	ErrResync = errors.New("reconnecting to resynchronise the twin")
	// ErrUnauthorized: the hub refused the credentials (CONNACK 2, 4 or 5).
	// Not permanent: the identity may be enabled or provisioned later.
	ErrUnauthorized = errors.New("hub refused the device credentials")
	// ErrMalformed: a hub reply could not be read.
	ErrMalformed = errors.New("malformed hub reply")
)

// StatusError is a non-2xx twin reply: Status from the topic, Code and
// Message from the body's errorCode and message. [azure note 1.7]
type StatusError struct {
	Status  int
	Code    int
	Message string
}

// Error describes the reply.
func (e *StatusError) Error() string {
	s := "hub answered " + strconv.Itoa(e.Status)
	if e.Code != 0 {
		s += " (errorCode " + strconv.Itoa(e.Code) + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// maxErrorText bounds how much of a non-JSON error body goes into a StatusError.
const maxErrorText = 200

// decodeObject reads one JSON object, numbers as json.Number, and nothing after it.
func decodeObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("body is null, not an object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// decodeTwin reads a twin GET reply: {"desired":{…},"reported":{…}}. [azure note 1.7]
func decodeTwin(body []byte) (desired, reported map[string]any, err error) {
	m, err := decodeObject(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: twin: %w", ErrMalformed, err)
	}
	desired, ok1 := m["desired"].(map[string]any)
	reported, ok2 := m["reported"].(map[string]any)
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("%w: twin has no desired and reported objects", ErrMalformed)
	}
	return desired, reported, nil
}

// decodeDesired reads a desired notification body. The body's "$version" is
// authoritative; the topic's is used when the body has none. Both missing, or
// disagreeing, is an error: the client cannot place the patch in order.
func decodeDesired(body []byte, topicVersion int64) (patch map[string]any, version int64, err error) {
	m, err := decodeObject(body)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: desired notification: %w", ErrMalformed, err)
	}
	raw, ok := m["$version"]
	delete(m, "$version")
	if !ok {
		if topicVersion <= 0 {
			return nil, 0, fmt.Errorf("%w: desired notification without $version", ErrMalformed)
		}
		return m, topicVersion, nil
	}
	n, isNum := raw.(json.Number)
	if !isNum {
		return nil, 0, fmt.Errorf("%w: desired $version is %T, not a number", ErrMalformed, raw)
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v < 0 {
		return nil, 0, fmt.Errorf("%w: desired $version %s is not a non-negative integer", ErrMalformed, n)
	}
	if topicVersion != 0 && topicVersion != v {
		return nil, 0, fmt.Errorf("%w: desired $version %d in the body, %d in the topic", ErrMalformed, v, topicVersion)
	}
	return m, v, nil
}

// decodeStatusError builds the error for a non-2xx twin reply. The body is
// normally {"errorCode":…,"message":…}; anything else becomes the message.
func decodeStatusError(status int, body []byte) *StatusError {
	e := &StatusError{Status: status}
	var b struct {
		ErrorCode json.Number `json:"errorCode"`
		Message   string      `json:"message"`
	}
	if err := json.Unmarshal(body, &b); err == nil {
		if c, err := strconv.Atoi(b.ErrorCode.String()); err == nil {
			e.Code = c
		}
		e.Message = b.Message
		return e
	}
	text := strings.ToValidUTF8(strings.TrimSpace(string(body)), "?")
	if len(text) > maxErrorText {
		text = text[:maxErrorText] + "…"
	}
	e.Message = text
	return e
}

// methodPayload returns the request body as JSON: null for an empty body,
// an error for anything that is not JSON. [azure note 1.8]
func methodPayload(body []byte) (json.RawMessage, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return json.RawMessage("null"), nil
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%w: method payload is not JSON", ErrMalformed)
	}
	return json.RawMessage(b), nil
}

// methodResponse encodes a handler's response; never an empty body. [azure note 1.8]
func methodResponse(response any) ([]byte, error) {
	if response == nil {
		return []byte("null"), nil
	}
	b, err := json.Marshal(response)
	if err != nil {
		return nil, fmt.Errorf("encode method response: %w", err)
	}
	return b, nil
}

// errorBody is the JSON body the client sends with a status it chose itself.
func errorBody(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"message": msg})
	return b
}

// username is the CONNECT username: {HostName}/{DeviceID}/?api-version=…&DeviceClientType=drover%2F<version>. [azure note 1.2]
func username(hostName, deviceID, version string) string {
	return hostName + "/" + deviceID + "/?api-version=" + APIVersion + "&DeviceClientType=" + url.QueryEscape("drover/"+version)
}
