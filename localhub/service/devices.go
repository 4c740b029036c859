package service

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/localhub/store"
)

// deviceJSON is the Azure Device shape (swagger `Device`).
type deviceJSON struct {
	DeviceID                   string        `json:"deviceId"`
	GenerationID               string        `json:"generationId,omitempty"`
	Etag                       string        `json:"etag,omitempty"`
	ConnectionState            string        `json:"connectionState,omitempty"`
	Status                     string        `json:"status,omitempty"`
	StatusReason               *string       `json:"statusReason"`
	ConnectionStateUpdatedTime string        `json:"connectionStateUpdatedTime,omitempty"`
	StatusUpdatedTime          string        `json:"statusUpdatedTime,omitempty"`
	LastActivityTime           string        `json:"lastActivityTime,omitempty"`
	CloudToDeviceMessageCount  int           `json:"cloudToDeviceMessageCount"`
	Authentication             *authJSON     `json:"authentication,omitempty"`
	Capabilities               *capabilities `json:"capabilities,omitempty"`
	DeviceScope                string        `json:"deviceScope,omitempty"`
	ParentScopes               []string      `json:"parentScopes"`
}

type authJSON struct {
	Type           string          `json:"type"`
	SymmetricKey   *symmetricKey   `json:"symmetricKey,omitempty"`
	X509Thumbprint *x509Thumbprint `json:"x509Thumbprint,omitempty"`
}

type symmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

type x509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

type capabilities struct {
	IotEdge bool `json:"iotEdge"`
}

const zeroTime = "0001-01-01T00:00:00Z"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toDeviceJSON(d store.Device) deviceJSON {
	reason := d.StatusReason
	return deviceJSON{
		DeviceID: d.ID, GenerationID: d.GenerationID, Etag: d.Etag, ConnectionState: d.ConnectionState,
		Status: d.Status, StatusReason: &reason,
		ConnectionStateUpdatedTime: fmtTime(d.ConnectionStateUpdated), StatusUpdatedTime: fmtTime(d.StatusUpdated),
		LastActivityTime: fmtTime(d.LastActivity), CloudToDeviceMessageCount: d.C2DCount,
		Authentication: &authJSON{
			Type:           d.AuthType,
			SymmetricKey:   &symmetricKey{PrimaryKey: d.PrimaryKey, SecondaryKey: d.SecondaryKey},
			X509Thumbprint: &x509Thumbprint{PrimaryThumbprint: nullable(d.PrimaryThumbprint), SecondaryThumbprint: nullable(d.SecondaryThumbprint)},
		},
		Capabilities: &capabilities{IotEdge: d.IoTEdge},
		DeviceScope:  d.DeviceScope, ParentScopes: d.ParentScopes,
	}
}

// fromDeviceJSON validates a request body and turns it into a store.Device.
// The id comes from the path; a body id that disagrees is an error.
func fromDeviceJSON(id string, in deviceJSON) (store.Device, error) {
	if err := store.ValidateDeviceID(id); err != nil {
		return store.Device{}, errf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	if in.DeviceID != "" && in.DeviceID != id {
		return store.Device{}, errf(http.StatusBadRequest, "ArgumentInvalid", "deviceId %q in the body does not match %q in the path", in.DeviceID, id)
	}
	d := store.Device{ID: id, Status: strings.ToLower(in.Status), DeviceScope: in.DeviceScope, ParentScopes: in.ParentScopes}
	switch d.Status {
	case "", "enabled", "disabled":
	default:
		return d, errf(http.StatusBadRequest, "ArgumentInvalid", "status %q: must be enabled or disabled", in.Status)
	}
	if in.StatusReason != nil {
		if len(*in.StatusReason) > 128 {
			return d, errf(http.StatusBadRequest, "ArgumentInvalid", "statusReason is longer than 128 characters")
		}
		d.StatusReason = *in.StatusReason
	}
	if in.Capabilities != nil {
		d.IoTEdge = in.Capabilities.IotEdge
	}
	if len(d.ParentScopes) > 1 {
		return d, errf(http.StatusBadRequest, "ArgumentInvalid", "a device has at most one parent (parentScopes has %d)", len(d.ParentScopes))
	}
	if a := in.Authentication; a != nil {
		d.AuthType = a.Type
		switch a.Type {
		case "", "sas", "selfSigned", "certificateAuthority", "none":
		default:
			return d, errf(http.StatusBadRequest, "ArgumentInvalid", "authentication.type %q: must be sas, selfSigned, certificateAuthority or none", a.Type)
		}
		if k := a.SymmetricKey; k != nil {
			for name, v := range map[string]string{"primaryKey": k.PrimaryKey, "secondaryKey": k.SecondaryKey} {
				if err := checkKey(v); err != nil {
					return d, errf(http.StatusBadRequest, "ArgumentInvalid", "authentication.symmetricKey.%s: %v", name, err)
				}
			}
			d.PrimaryKey, d.SecondaryKey = k.PrimaryKey, k.SecondaryKey
		}
		if t := a.X509Thumbprint; t != nil {
			if t.PrimaryThumbprint != nil {
				d.PrimaryThumbprint = *t.PrimaryThumbprint
			}
			if t.SecondaryThumbprint != nil {
				d.SecondaryThumbprint = *t.SecondaryThumbprint
			}
		}
	}
	return d, nil
}

// checkKey accepts "" (generate) or base64 of 16 to 64 bytes, as Azure does.
func checkKey(k string) error {
	if k == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return errors.New("not valid base64")
	}
	if len(b) < 16 || len(b) > 64 {
		return fmt.Errorf("key is %d bytes; must be 16 to 64", len(b))
	}
	return nil
}

func (s *Server) putDevice(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var in deviceJSON
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	d, err := fromDeviceJSON(id, in)
	if err != nil {
		return err
	}
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		out, err := s.st.CreateDevice(r.Context(), d)
		if err != nil {
			return err
		}
		s.log.Info("device created", "device", id)
		return writeJSON(w, http.StatusOK, toDeviceJSON(out))
	}
	before, after, err := s.st.UpdateDevice(r.Context(), d, ifMatch)
	if err != nil {
		return err
	}
	s.sessions.IdentityChanged(before, after)
	s.log.Info("device updated", "device", id, "status", after.Status)
	return writeJSON(w, http.StatusOK, toDeviceJSON(after))
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) error {
	d, err := s.st.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toDeviceJSON(d))
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.st.DeleteDevice(r.Context(), id, r.Header.Get("If-Match")); err != nil {
		return err
	}
	s.sessions.IdentityDeleted(id)
	s.log.Info("device deleted", "device", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) error {
	top := 1000
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errf(http.StatusBadRequest, "ArgumentInvalid", "top %q is not a number", v)
		}
		if n >= 1 && n <= 1000 {
			top = n
		}
	}
	ds, err := s.st.ListDevices(r.Context(), top)
	if err != nil {
		return err
	}
	out := make([]deviceJSON, len(ds))
	for i, d := range ds {
		out[i] = toDeviceJSON(d)
	}
	return writeJSON(w, http.StatusOK, out)
}

// bulkEntry is an ExportImportDevice entry of a bulk registry call.
type bulkEntry struct {
	ID             string        `json:"id"`
	ETag           string        `json:"eTag"`
	ImportMode     string        `json:"importMode"`
	Status         string        `json:"status"`
	StatusReason   *string       `json:"statusReason"`
	Authentication *authJSON     `json:"authentication"`
	Capabilities   *capabilities `json:"capabilities"`
	DeviceScope    string        `json:"deviceScope"`
	ParentScopes   []string      `json:"parentScopes"`
}

type bulkError struct {
	DeviceID    string `json:"deviceId"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
	Operation   string `json:"operation,omitempty"`
}

func (s *Server) bulkDevices(w http.ResponseWriter, r *http.Request) error {
	var entries []bulkEntry
	if err := decodeJSON(r, &entries); err != nil {
		return err
	}
	if len(entries) < 1 || len(entries) > 100 {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "a bulk call takes 1 to 100 devices, got %d", len(entries))
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.ID] {
			return errf(http.StatusBadRequest, "DeviceDefinedMultipleTimes", "device %q appears more than once", e.ID)
		}
		seen[e.ID] = true
	}
	errs := []bulkError{}
	for _, e := range entries {
		mode := strings.ToLower(e.ImportMode)
		if err := s.bulkOne(r, e, mode); err != nil {
			ae := toAPIError(err)
			errs = append(errs, bulkError{DeviceID: e.ID, ErrorCode: ae.Code, ErrorStatus: ae.Msg, Operation: e.ImportMode})
		}
	}
	status := http.StatusOK
	if len(errs) > 0 {
		status = http.StatusBadRequest
	}
	return writeJSON(w, status, map[string]any{"isSuccessful": len(errs) == 0, "errors": errs, "warnings": []any{}})
}

func (s *Server) bulkOne(r *http.Request, e bulkEntry, mode string) error {
	ctx := r.Context()
	switch mode {
	case "create", "":
		d, err := fromDeviceJSON(e.ID, deviceJSON{Status: e.Status, StatusReason: e.StatusReason, Authentication: e.Authentication, Capabilities: e.Capabilities, DeviceScope: e.DeviceScope, ParentScopes: e.ParentScopes})
		if err != nil {
			return err
		}
		_, err = s.st.CreateDevice(ctx, d)
		return err
	case "update", "updateifmatchetag", "createorupdate", "createorupdateifmatchetag":
		d, err := fromDeviceJSON(e.ID, deviceJSON{Status: e.Status, StatusReason: e.StatusReason, Authentication: e.Authentication, Capabilities: e.Capabilities, DeviceScope: e.DeviceScope, ParentScopes: e.ParentScopes})
		if err != nil {
			return err
		}
		ifMatch := "*"
		if strings.HasSuffix(mode, "ifmatchetag") {
			ifMatch = e.ETag
			if ifMatch == "" {
				return errf(http.StatusBadRequest, "ArgumentInvalid", "importMode %s needs eTag", e.ImportMode)
			}
		}
		before, after, err := s.st.UpdateDevice(ctx, d, ifMatch)
		if errors.Is(err, store.ErrNotFound) && strings.HasPrefix(mode, "createorupdate") {
			_, err = s.st.CreateDevice(ctx, d)
			return err
		}
		if err == nil {
			s.sessions.IdentityChanged(before, after)
		}
		return err
	case "delete", "deleteifmatchetag":
		ifMatch := "*"
		if mode == "deleteifmatchetag" {
			ifMatch = e.ETag
		}
		if err := s.st.DeleteDevice(ctx, e.ID, ifMatch); err != nil {
			return err
		}
		s.sessions.IdentityDeleted(e.ID)
		return nil
	default:
		return errf(http.StatusBadRequest, "ArgumentInvalid", "importMode %q: want create, update, updateIfMatchETag, delete or deleteIfMatchETag", e.ImportMode)
	}
}
