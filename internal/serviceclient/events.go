package serviceclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// ErrBadEvent wraps the error for an event whose data cannot be decoded.
// The stream stays usable: call Next again.
var ErrBadEvent = errors.New("undecodable event")

// Event is one device-to-cloud telemetry message from localhub's event stream.
type Event struct {
	Seq             int64  `json:"seq"`
	DeviceID        string `json:"deviceId"`
	EnqueuedTime    string `json:"enqueuedTime"`
	MessageID       string `json:"messageId,omitempty"`
	CorrelationID   string `json:"correlationId,omitempty"`
	ContentType     string `json:"contentType,omitempty"`
	ContentEncoding string `json:"contentEncoding,omitempty"`
	// Properties are the application properties.
	Properties map[string]string `json:"properties,omitempty"`
	// SystemProperties are the other system properties the device sent.
	SystemProperties map[string]any `json:"systemProperties,omitempty"`
	// Body is UTF-8 text, or base64 when BodyEncoding is "base64".
	Body         string `json:"body"`
	BodyEncoding string `json:"bodyEncoding,omitempty"`
	// Raw is the event's JSON exactly as the hub sent it, compacted to one line.
	Raw json.RawMessage `json:"-"`
}

// BodyBytes returns the message body, decoding base64 when needed.
func (e *Event) BodyBytes() ([]byte, error) {
	if e.BodyEncoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(e.Body)
		if err != nil {
			return nil, fmt.Errorf("decode body of event %d: %w", e.Seq, err)
		}
		return b, nil
	}
	return []byte(e.Body), nil
}

// EventStream is an open telemetry stream. Its owner calls Next until it
// fails and then Close. Cancelling the context given to Events ends a Next
// that is waiting.
type EventStream struct {
	body io.ReadCloser
	sse  *sseReader
}

// Events opens localhub's telemetry stream (GET /events, a localhub
// extension): messages of deviceID ("" for all devices) starting at sequence
// number fromSeq, inclusive, as far as the hub still keeps them; fromSeq <= 0
// means only messages that arrive from now on. (The hub's "from" parameter
// means "after", so fromSeq-1 is sent.)
func (c *Client) Events(ctx context.Context, deviceID string, fromSeq int64) (*EventStream, error) {
	q := map[string][]string{}
	if deviceID != "" {
		q["deviceId"] = []string{deviceID}
	}
	if fromSeq > 0 {
		q["from"] = []string{strconv.FormatInt(fromSeq-1, 10)}
	}
	r := request{
		method: http.MethodGet,
		path:   []string{"events"},
		query:  q,
		header: http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}},
	}
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	return newEventStream(resp.Body), nil
}

func newEventStream(body io.ReadCloser) *EventStream {
	return &EventStream{body: body, sse: newSSEReader(body)}
}

// Next blocks until the next telemetry event. It returns io.EOF when the hub
// ends the stream, an error wrapping ErrBadEvent for an event it cannot
// decode (the stream stays usable), or the read error (the context's error
// after cancellation).
func (s *EventStream) Next() (Event, error) {
	for {
		ev, err := s.sse.Next()
		if err != nil {
			return Event{}, err
		}
		switch ev.Type {
		case "telemetry", "message":
		default:
			continue // keep-alives and event types this client does not know
		}
		return decodeEvent(ev)
	}
}

func decodeEvent(ev sseEvent) (Event, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(ev.Data)); err != nil {
		return Event{}, fmt.Errorf("%w id %q: %w", ErrBadEvent, ev.ID, err)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return Event{}, fmt.Errorf("%w id %q: data is not a JSON object", ErrBadEvent, ev.ID)
	}
	var e Event
	if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
		return Event{}, fmt.Errorf("%w id %q: %w", ErrBadEvent, ev.ID, err)
	}
	if e.Seq == 0 {
		if n, err := strconv.ParseInt(ev.ID, 10, 64); err == nil {
			e.Seq = n
		}
	}
	e.Raw = buf.Bytes()
	return e, nil
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }
