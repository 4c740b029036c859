package service

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/drover-iot/drover/localhub/store"
)

// eventJSON is one telemetry message on the event stream.
type eventJSON struct {
	Seq              int64             `json:"seq"`
	DeviceID         string            `json:"deviceId"`
	EnqueuedTime     string            `json:"enqueuedTime"`
	MessageID        string            `json:"messageId,omitempty"`
	CorrelationID    string            `json:"correlationId,omitempty"`
	ContentType      string            `json:"contentType,omitempty"`
	ContentEncoding  string            `json:"contentEncoding,omitempty"`
	Properties       map[string]string `json:"properties"`
	SystemProperties map[string]string `json:"systemProperties"`
	Body             string            `json:"body"`
	BodyEncoding     string            `json:"bodyEncoding,omitempty"`
}

func toEvent(m store.Message) eventJSON {
	e := eventJSON{
		Seq: m.Seq, DeviceID: m.DeviceID, EnqueuedTime: fmtTime(m.Enqueued), MessageID: m.MessageID,
		CorrelationID: m.CorrelationID, ContentType: m.ContentType, ContentEncoding: m.ContentEncoding,
		Properties: m.Properties, SystemProperties: map[string]string{},
	}
	for k, v := range m.System {
		e.SystemProperties[k] = v
	}
	e.SystemProperties["iothub-connection-device-id"] = m.DeviceID
	e.SystemProperties["iothub-enqueuedtime"] = e.EnqueuedTime
	if e.Properties == nil {
		e.Properties = map[string]string{}
	}
	if utf8.Valid(m.Body) {
		e.Body = string(m.Body)
	} else {
		e.Body, e.BodyEncoding = base64.StdEncoding.EncodeToString(m.Body), "base64"
	}
	return e
}

// heartbeat keeps proxies and clients from timing out an idle stream.
const heartbeat = 15 * time.Second

// events streams telemetry as server-sent events. ?deviceId= filters;
// ?from=SEQ or Last-Event-ID resumes after a sequence number; without either
// the stream starts with what arrives next.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return errf(http.StatusInternalServerError, "ServerError", "streaming unsupported")
	}
	ctx := r.Context()
	device := r.URL.Query().Get("deviceId")
	from := r.URL.Query().Get("from")
	if from == "" {
		from = r.Header.Get("Last-Event-ID")
	}
	var after int64
	if from != "" {
		n, err := strconv.ParseInt(from, 10, 64)
		if err != nil || n < 0 {
			return errf(http.StatusBadRequest, "ArgumentInvalid", "from %q: must be a sequence number", from)
		}
		after = n
	} else {
		n, err := s.st.LastTelemetrySeq(ctx)
		if err != nil {
			return err
		}
		after = n
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": drover localhub telemetry stream\n\n")
	fl.Flush()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		// Everything up to last is committed, so after reading, waiting past last cannot miss a message.
		last := s.feed.Last()
		wake := s.feed.Wait(last)
		msgs, err := s.st.TelemetryAfter(ctx, device, after, 200)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("event stream read", "error", err)
			return nil
		}
		for _, m := range msgs {
			b, _ := json.Marshal(toEvent(m))
			if _, err := fmt.Fprintf(w, "event: telemetry\nid: %d\ndata: %s\n\n", m.Seq, b); err != nil {
				return nil
			}
			after = m.Seq
		}
		if len(msgs) > 0 {
			fl.Flush()
			if len(msgs) == 200 {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
			if _, err := fmt.Fprintf(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			fl.Flush()
		}
	}
}
