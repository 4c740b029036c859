package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/store"
)

// twinJSON renders a twin in Azure's shape (swagger `Twin`).
func twinJSON(t store.Twin) map[string]any {
	reason := t.StatusReason
	return map[string]any{
		"deviceId":                  t.ID,
		"etag":                      t.TwinEtag,
		"deviceEtag":                t.Etag,
		"version":                   t.Version,
		"status":                    t.Status,
		"statusReason":              reason,
		"statusUpdateTime":          fmtTime(t.StatusUpdated),
		"connectionState":           t.ConnectionState,
		"lastActivityTime":          fmtTime(t.LastActivity),
		"cloudToDeviceMessageCount": t.C2DCount,
		"authenticationType":        t.AuthType,
		"x509Thumbprint":            x509Thumbprint{PrimaryThumbprint: nullable(t.PrimaryThumbprint), SecondaryThumbprint: nullable(t.SecondaryThumbprint)},
		"modelId":                   "",
		"capabilities":              capabilities{IotEdge: t.IoTEdge},
		"deviceScope":               t.DeviceScope,
		"parentScopes":              t.ParentScopes,
		"tags":                      t.Tags.Document(twin.Tags, false),
		"properties": map[string]any{
			"desired":  t.Desired.Document(twin.Desired, true),
			"reported": t.Reported.Document(twin.Reported, true),
		},
	}
}

// readTwinPatch decodes a service twin body: {"tags": {...}, "properties": {"desired": {...}}}.
// Reported properties belong to the device; a body that tries to write them is refused.
func readTwinPatch(r *http.Request) (tags, desired map[string]any, err error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, errf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "request body exceeds %d bytes", mbe.Limit)
		}
		return nil, nil, errf(http.StatusBadRequest, "ArgumentInvalid", "read request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil, errf(http.StatusBadRequest, "ArgumentInvalid", "request body is empty")
	}
	doc, err := twin.DecodeObject(b)
	if err != nil {
		return nil, nil, errf(http.StatusBadRequest, "IotHubFormatError", "twin body: %v", err)
	}
	for k, v := range doc {
		switch k {
		case "tags":
			if v == nil {
				tags = map[string]any{}
				continue
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, nil, errf(http.StatusBadRequest, "ArgumentInvalid", "tags must be a JSON object")
			}
			tags = m
		case "properties":
			p, ok := v.(map[string]any)
			if !ok {
				return nil, nil, errf(http.StatusBadRequest, "ArgumentInvalid", "properties must be a JSON object")
			}
			for pk, pv := range p {
				switch pk {
				case "desired":
					m, ok := pv.(map[string]any)
					if !ok {
						return nil, nil, errf(http.StatusBadRequest, "ArgumentInvalid", "properties.desired must be a JSON object")
					}
					delete(m, "$version") // the SDK echoes these back from a GET; they are read-only
					delete(m, "$metadata")
					desired = m
				case "reported":
					return nil, nil, errf(http.StatusBadRequest, "ArgumentInvalid", "properties.reported is written by the device, not the service")
				default:
					return nil, nil, errf(http.StatusBadRequest, "ArgumentInvalid", "properties.%s: unknown section (want desired)", pk)
				}
			}
		default:
			// Read-only twin fields (deviceId, etag, status, ...) are ignored, as the SDKs send whole twins back.
		}
	}
	return tags, desired, nil
}

func (s *Server) getTwin(w http.ResponseWriter, r *http.Request) error {
	t, err := s.st.GetTwin(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, twinJSON(t))
}

func (s *Server) patchTwin(w http.ResponseWriter, r *http.Request) error {
	tags, desired, err := readTwinPatch(r)
	if err != nil {
		return err
	}
	ch, err := s.st.PatchTwin(r.Context(), r.PathValue("id"), tags, desired, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	if tags != nil {
		s.metrics.TwinUpdate("tags")
	}
	if ch.DesiredPatch != nil {
		s.sessions.DesiredChanged(ch.Twin.ID, ch.DesiredPatch, ch.Twin.Desired.Version)
	}
	return writeJSON(w, http.StatusOK, twinJSON(ch.Twin))
}

func (s *Server) putTwin(w http.ResponseWriter, r *http.Request) error {
	tags, desired, err := readTwinPatch(r)
	if err != nil {
		return err
	}
	ch, err := s.st.ReplaceTwin(r.Context(), r.PathValue("id"), tags, desired, r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	s.metrics.TwinUpdate("tags") // PUT replaces the tags too
	s.sessions.DesiredChanged(ch.Twin.ID, ch.DesiredPatch, ch.Twin.Desired.Version)
	return writeJSON(w, http.StatusOK, twinJSON(ch.Twin))
}

// methodRequest is the body of POST /twins/{id}/methods.
type methodRequest struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload"`
	ResponseTimeoutInSeconds *int            `json:"responseTimeoutInSeconds"`
	ConnectTimeoutInSeconds  *int            `json:"connectTimeoutInSeconds"`
}

// maxMethodPayload is Azure's limit for method request and response payloads.
const maxMethodPayload = 128 * 1024

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var in methodRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := validMethodName(in.MethodName); err != nil {
		return err
	}
	if len(in.Payload) > maxMethodPayload {
		return errf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "method payload is %d bytes; the limit is %d", len(in.Payload), maxMethodPayload)
	}
	if len(in.Payload) == 0 {
		in.Payload = json.RawMessage("null")
	}
	resp, conn := 30, 0
	if in.ResponseTimeoutInSeconds != nil {
		resp = *in.ResponseTimeoutInSeconds
	}
	if in.ConnectTimeoutInSeconds != nil {
		conn = *in.ConnectTimeoutInSeconds
	}
	if resp < 1 || resp > 300 {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "responseTimeoutInSeconds %d: must be 1 to 300", resp)
	}
	if conn < 0 || conn > 300 {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "connectTimeoutInSeconds %d: must be 0 to 300", conn)
	}
	// A connected device exists; only a device that is not connected needs the
	// registry lookup that tells "not found" from "not online".
	if !s.sessions.Connected(id) {
		if _, err := s.st.GetDevice(r.Context(), id); err != nil {
			return err
		}
	}
	status, body, err := s.sessions.InvokeMethod(r.Context(), id, in.MethodName, in.Payload, secs(resp), secs(conn))
	switch {
	case errors.Is(err, ErrDeviceNotOnline):
		return errf(http.StatusNotFound, "DeviceNotOnline", "device %s is not online or has not subscribed to direct methods", id)
	case errors.Is(err, ErrMethodTimeout):
		return errf(http.StatusGatewayTimeout, "GatewayTimeout", "device %s did not answer %s within %ds", id, in.MethodName, resp)
	case errors.Is(err, ErrBadResponse):
		return errf(http.StatusBadGateway, "BadDeviceResponse", "%v", err)
	case err != nil:
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"status": status, "payload": body})
}

// validMethodName applies Azure's rule: printable ASCII letters and digits, excluding separators.
func validMethodName(n string) error {
	if n == "" {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "methodName is required")
	}
	if len(n) > 128 {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "methodName is longer than 128 characters")
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`$()<>@,;:\"/[]?={}`), c) >= 0 {
			return errf(http.StatusBadRequest, "ArgumentInvalid", "methodName %q: character %q is not allowed", n, c)
		}
	}
	return nil
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }
