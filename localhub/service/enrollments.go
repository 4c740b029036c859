package service

import (
	"errors"
	"net/http"

	"github.com/drover-iot/drover/localhub/store"
)

// enrollmentJSON is localhub's enrollment group (shaped like Azure DPS's).
type enrollmentJSON struct {
	EnrollmentGroupID string `json:"enrollmentGroupId"`
	Attestation       struct {
		Type         string        `json:"type"`
		SymmetricKey *symmetricKey `json:"symmetricKey,omitempty"`
	} `json:"attestation"`
	ParentDeviceID         string `json:"parentDeviceId,omitempty"`
	ProvisioningStatus     string `json:"provisioningStatus,omitempty"`
	ETag                   string `json:"etag,omitempty"`
	CreatedDateTimeUTC     string `json:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC string `json:"lastUpdatedDateTimeUtc,omitempty"`
}

func toEnrollmentJSON(e store.Enrollment) enrollmentJSON {
	var out enrollmentJSON
	out.EnrollmentGroupID = e.ID
	out.Attestation.Type = "symmetricKey"
	out.Attestation.SymmetricKey = &symmetricKey{PrimaryKey: e.PrimaryKey, SecondaryKey: e.SecondaryKey}
	out.ParentDeviceID, out.ProvisioningStatus, out.ETag = e.Parent, e.Status, e.Etag
	out.CreatedDateTimeUTC, out.LastUpdatedDateTimeUTC = fmtTime(e.Created), fmtTime(e.Updated)
	return out
}

func (s *Server) putEnrollment(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var in enrollmentJSON
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.EnrollmentGroupID != "" && in.EnrollmentGroupID != id {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "enrollmentGroupId %q in the body does not match %q in the path", in.EnrollmentGroupID, id)
	}
	if t := in.Attestation.Type; t != "" && t != "symmetricKey" {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "attestation.type %q: only symmetricKey is supported", t)
	}
	switch in.ProvisioningStatus {
	case "", "enabled", "disabled":
	default:
		return errf(http.StatusBadRequest, "ArgumentInvalid", "provisioningStatus %q: must be enabled or disabled", in.ProvisioningStatus)
	}
	e := store.Enrollment{ID: id, Parent: in.ParentDeviceID, Status: in.ProvisioningStatus}
	if k := in.Attestation.SymmetricKey; k != nil {
		for name, v := range map[string]string{"primaryKey": k.PrimaryKey, "secondaryKey": k.SecondaryKey} {
			if err := checkKey(v); err != nil {
				return errf(http.StatusBadRequest, "ArgumentInvalid", "attestation.symmetricKey.%s: %v", name, err)
			}
		}
		e.PrimaryKey, e.SecondaryKey = k.PrimaryKey, k.SecondaryKey
	}
	out, err := s.st.PutEnrollment(r.Context(), e)
	if errors.Is(err, store.ErrInvalidParent) {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	if err != nil {
		return err
	}
	s.log.Info("enrollment group written", "enrollment", id, "parent", out.Parent)
	return writeJSON(w, http.StatusOK, toEnrollmentJSON(out))
}

func (s *Server) getEnrollment(w http.ResponseWriter, r *http.Request) error {
	e, err := s.st.GetEnrollment(r.Context(), r.PathValue("id"))
	if err != nil {
		return enrollmentErr(err)
	}
	return writeJSON(w, http.StatusOK, toEnrollmentJSON(e))
}

func (s *Server) listEnrollments(w http.ResponseWriter, r *http.Request) error {
	es, err := s.st.ListEnrollments(r.Context())
	if err != nil {
		return err
	}
	out := make([]enrollmentJSON, len(es))
	for i, e := range es {
		out[i] = toEnrollmentJSON(e)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteEnrollment(w http.ResponseWriter, r *http.Request) error {
	if err := s.st.DeleteEnrollment(r.Context(), r.PathValue("id"), r.Header.Get("If-Match")); err != nil {
		return enrollmentErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func enrollmentErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusNotFound, "EnrollmentNotFound", "%v", err)
	}
	return err
}
