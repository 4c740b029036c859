package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub/images"
	"github.com/drover-iot/drover/localhub/store"
)

// maxImageBody bounds an upload: the largest image plus its manifest and the
// multipart framing.
const maxImageBody = firmware.MaxImageSize + firmware.MaxManifestSize + 64<<10

// ContentPath is the path devices download an image's bytes from.
func ContentPath(sha string) string { return "/firmware/content/" + sha }

// imageJSON is an image as the firmware routes show it.
type imageJSON struct {
	ID            string                   `json:"id"` // provider/name/version
	UpdateID      firmware.UpdateID        `json:"updateId"`
	Compatibility []firmware.Compatibility `json:"compatibility"`
	File          firmware.File            `json:"file"`
	CreatedAt     string                   `json:"createdAt"`
	KeyID         string                   `json:"keyId"`
	UploadedTime  string                   `json:"uploadedTime"`
	URL           string                   `json:"url"`      // path of the bytes on this hub
	Manifest      json.RawMessage          `json:"manifest"` // the signed manifest document
}

func toImageJSON(im store.FirmwareImage) (imageJSON, error) {
	m, err := firmware.Parse([]byte(im.Manifest))
	if err != nil {
		return imageJSON{}, fmt.Errorf("stored manifest of %s: %w", im.ID(), err)
	}
	return imageJSON{
		ID: im.ID(), UpdateID: m.UpdateID, Compatibility: m.Compatibility, File: m.File,
		CreatedAt: m.CreatedAt.Format(firmware.TimeLayout), KeyID: im.KeyID, UploadedTime: fmtTime(im.Uploaded),
		URL: ContentPath(im.SHA256), Manifest: json.RawMessage(im.Manifest),
	}, nil
}

// firmwareAPI serves the image routes.
type firmwareAPI struct {
	s      *Server
	images *images.Store
}

// firmwareRoutes registers the firmware image routes (docs/localhub.md, "Firmware images").
func (s *Server) firmwareRoutes(im *images.Store) {
	f := &firmwareAPI{s: s, images: im}
	read, write := store.RegistryRead, store.RegistryWrite
	s.routeLimit("POST /firmware/images", write, maxImageBody, f.upload)
	s.route("GET /firmware/images", read, f.list)
	s.route("GET /firmware/images/{provider}/{name}/{version}", read, f.show)
	s.route("DELETE /firmware/images/{provider}/{name}/{version}", write, f.delete)
	s.mux.HandleFunc("GET "+ContentPath("{sha256}"), f.content) // authorized by device or policy, below
}

// imageError maps image-store errors to answers; others go through toAPIError.
func imageError(err error) error {
	var ue *images.UploadError
	switch {
	case errors.As(err, &ue) && errors.Is(err, firmware.ErrMalformed):
		return errf(http.StatusBadRequest, "ManifestInvalid", "%v", err)
	case errors.As(err, &ue) && (errors.Is(err, firmware.ErrUnsigned) || errors.Is(err, firmware.ErrBadSignature)):
		return errf(http.StatusBadRequest, "ManifestSignatureInvalid", "%v", err)
	case errors.As(err, &ue):
		return errf(http.StatusBadRequest, "ImageDigestMismatch", "%v", err)
	case errors.Is(err, store.ErrNotFound):
		return errf(http.StatusNotFound, "ImageNotFound", "%v", err)
	case errors.Is(err, store.ErrExists):
		return errf(http.StatusConflict, "ImageAlreadyExists", "%v (delete it first, or give the new image another version)", err)
	}
	return err
}

// upload takes multipart/form-data with a "manifest" part (the signed
// manifest, first) and an "image" part (the bytes).
func (f *firmwareAPI) upload(w http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return errf(http.StatusUnsupportedMediaType, "ArgumentInvalid", "want Content-Type multipart/form-data with a manifest part, then an image part")
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "read multipart body: %v", err)
	}
	part, err := mr.NextPart()
	if errors.Is(err, io.EOF) {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "the body has no parts; want \"manifest\" (the signed manifest), then \"image\"")
	}
	if err != nil {
		return bodyError("read the manifest part", err)
	}
	if part.FormName() != "manifest" {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "the first part is %q; want \"manifest\" (the signed manifest), then \"image\"", part.FormName())
	}
	doc, err := io.ReadAll(io.LimitReader(part, firmware.MaxManifestSize+1))
	if err != nil {
		return bodyError("read the manifest part", err)
	}
	m, err := images.ParseManifest(doc)
	if err != nil {
		return imageError(err)
	}
	if part, err = mr.NextPart(); errors.Is(err, io.EOF) {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "the body has no \"image\" part after the manifest")
	} else if err != nil {
		return bodyError("read the image part", err)
	}
	if part.FormName() != "image" {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "the second part is %q; want \"image\"", part.FormName())
	}
	im, err := f.images.Put(r.Context(), m, doc, part)
	if err != nil {
		return imageError(bodyError("receive the image", err))
	}
	out, err := toImageJSON(im)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, out)
}

// bodyError names a request body that was too large or cut short.
func bodyError(what string, err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "%s: request body exceeds %d bytes", what, mbe.Limit)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errf(http.StatusBadRequest, "ArgumentInvalid", "%s: the body ended early", what)
	}
	var ue *images.UploadError
	if errors.As(err, &ue) || errors.Is(err, store.ErrExists) {
		return err
	}
	if strings.Contains(err.Error(), "multipart") { // mime/multipart's framing errors have no type to match
		return errf(http.StatusBadRequest, "ArgumentInvalid", "%s: %v", what, err)
	}
	return err
}

// list answers every image, filtered by ?version=, ?model=, ?manufacturer=.
func (f *firmwareAPI) list(w http.ResponseWriter, r *http.Request) error {
	ims, err := f.s.st.ListImages(r.Context())
	if err != nil {
		return err
	}
	q := r.URL.Query()
	version, model, manufacturer := q.Get("version"), q.Get("model"), q.Get("manufacturer")
	out := []imageJSON{}
	for _, im := range ims {
		j, err := toImageJSON(im)
		if err != nil {
			return err
		}
		if version != "" && j.UpdateID.Version != version {
			continue
		}
		if (model != "" || manufacturer != "") && !slices.ContainsFunc(j.Compatibility, func(c firmware.Compatibility) bool {
			return (model == "" || c.Model == model) && (manufacturer == "" || c.Manufacturer == manufacturer)
		}) {
			continue
		}
		out = append(out, j)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (f *firmwareAPI) show(w http.ResponseWriter, r *http.Request) error {
	im, err := f.s.st.GetImage(r.Context(), r.PathValue("provider"), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		return imageError(err)
	}
	out, err := toImageJSON(im)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (f *firmwareAPI) delete(w http.ResponseWriter, r *http.Request) error {
	if _, err := f.images.Delete(r.Context(), r.PathValue("provider"), r.PathValue("name"), r.PathValue("version")); err != nil {
		return imageError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// content serves an image's bytes, with Range support (RFC 9110 §14), to a
// device with its own SAS token, to a gateway for one of its children
// (?deviceId=child), or to a shared access policy with RegistryRead.
func (f *firmwareAPI) content(w http.ResponseWriter, r *http.Request) {
	if err := f.authorizeDownload(r); err != nil {
		f.s.writeError(w, r, err)
		return
	}
	file, im, err := f.images.Open(r.Context(), r.PathValue("sha256"))
	if err != nil {
		f.s.writeError(w, r, imageError(err))
		return
	}
	defer file.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+im.SHA256+`"`)
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable") // content-addressed
	http.ServeContent(w, r, "", im.Uploaded, file)
}

// authorizeDownload accepts a policy token with RegistryRead, or a device
// token (sr = {host}/devices/{id}, signed with that device's key) when the
// device is the one named by ?deviceId= (default: itself) or its parent in
// the registry. Both devices must be enabled.
func (f *firmwareAPI) authorizeDownload(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "missing Authorization header")
	}
	tok, err := sas.Parse(h)
	if err != nil {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "%v", err)
	}
	if tok.KeyName != "" {
		return f.s.authorize(r, store.RegistryRead)
	}
	prefix := strings.ToLower(f.s.host + "/devices/")
	res := strings.TrimPrefix(strings.TrimPrefix(tok.Resource, "https://"), "http://")
	if !strings.HasPrefix(strings.ToLower(res), prefix) || strings.Contains(res[len(prefix):], "/") || len(res) == len(prefix) {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "a device token's resource must be %s/devices/{deviceId}, got %q", f.s.host, tok.Resource)
	}
	caller := res[len(prefix):]
	dev, err := f.s.st.GetDevice(r.Context(), caller)
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "unknown device %q", caller)
	}
	if err != nil {
		return err
	}
	now := f.s.now()
	if err := tok.Verify(dev.PrimaryKey, now); err != nil {
		if errors.Is(err, sas.ErrExpired) || dev.SecondaryKey == "" || tok.Verify(dev.SecondaryKey, now) != nil {
			return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "device %s: %v", caller, err)
		}
	}
	if !dev.Enabled() || dev.AuthType != "sas" {
		return errf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "device %s is disabled or does not use SAS keys", caller)
	}
	target := r.URL.Query().Get("deviceId")
	if target == "" || target == caller {
		return nil
	}
	child, err := f.s.st.GetDevice(r.Context(), target)
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusForbidden, "IotHubUnauthorizedAccess", "device %s may not download for %q: no such device", caller, target)
	}
	if err != nil {
		return err
	}
	if dev.DeviceScope == "" || !slices.Contains(child.ParentScopes, dev.DeviceScope) {
		return errf(http.StatusForbidden, "IotHubUnauthorizedAccess", "device %s may not download for %s: it is not its parent", caller, target)
	}
	if !child.Enabled() {
		return errf(http.StatusForbidden, "IotHubUnauthorizedAccess", "device %s is disabled", target)
	}
	return nil
}
