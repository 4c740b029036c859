package firmware

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Desired is desired.firmware as a deployment writes it (docs/firmware.md,
// "Deployment"): the target version, where the bytes are, and the signed
// manifest, so that a gateway can verify before it downloads.
type Desired struct {
	Version  string          `json:"version"`
	UpdateID UpdateID        `json:"updateId"`
	URL      string          `json:"url"` // a path on the hub's HTTPS endpoint, or an https:// URL
	SHA256   string          `json:"sha256"`
	Size     int64           `json:"size"`
	Manifest json.RawMessage `json:"manifest"` // the signed manifest document
	// Deployment is the deploying job's id, echoed in reported.firmware.deployment.
	Deployment string `json:"deployment,omitempty"`
}

// Target is one update to carry out: the (not yet trusted) signed manifest,
// where to fetch the image, and the deployment it belongs to.
type Target struct {
	Manifest   *Signed
	URL        string
	Deployment string
	Force      bool // the firmwareUpdate method's force: ignore the in-use rule
}

// ParseDesired reads desired.firmware (the JSON of that object) into a
// Target. The copies of the manifest's fields outside it (version, sha256,
// size, updateId) must agree with it, so that what an operator reads in the
// twin is what gets flashed. Errors wrap ErrMalformed and name the key.
// Members it does not know are ignored (a newer hub may add some).
func ParseDesired(b []byte) (*Target, error) {
	var d Desired
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w: desired.firmware: %w", ErrMalformed, err)
	}
	t, err := target(d.Manifest, d.URL, "desired.firmware")
	if err != nil {
		return nil, err
	}
	m := t.Manifest
	switch {
	case d.Version != m.UpdateID.Version:
		return nil, fmt.Errorf("%w: desired.firmware.version %q is not the manifest's %q", ErrMalformed, d.Version, m.UpdateID.Version)
	case d.SHA256 != m.File.SHA256:
		return nil, fmt.Errorf("%w: desired.firmware.sha256 %q is not the manifest's %q", ErrMalformed, d.SHA256, m.File.SHA256)
	case d.Size != m.File.Size:
		return nil, fmt.Errorf("%w: desired.firmware.size %d is not the manifest's %d", ErrMalformed, d.Size, m.File.Size)
	case d.UpdateID != (UpdateID{}) && d.UpdateID != m.UpdateID:
		return nil, fmt.Errorf("%w: desired.firmware.updateId %s is not the manifest's %s", ErrMalformed, d.UpdateID, m.UpdateID)
	}
	t.Deployment = d.Deployment
	return t, nil
}

// UpdateRequest is the payload of the firmwareUpdate direct method: either
// a version alone (an image the gateway already knows of, from
// desired.firmware or its cache), or url, sha256 and manifest.
type UpdateRequest struct {
	Version  string          `json:"version,omitempty"`
	URL      string          `json:"url,omitempty"`
	SHA256   string          `json:"sha256,omitempty"`
	Manifest json.RawMessage `json:"manifest,omitempty"`
	Force    bool            `json:"force,omitempty"`
}

// ParseUpdateRequest reads a firmwareUpdate payload. With only a version it
// returns that version and a nil Target; otherwise a Target whose sha256
// (and version, when given) agree with the manifest. Errors wrap ErrMalformed.
func ParseUpdateRequest(b []byte) (version string, t *Target, err error) {
	var r UpdateRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return "", nil, fmt.Errorf("%w: firmwareUpdate payload: %w (want {\"version\": …} or {\"url\", \"sha256\", \"manifest\"})", ErrMalformed, err)
	}
	if r.URL == "" && r.SHA256 == "" && len(r.Manifest) == 0 {
		if r.Version == "" {
			return "", nil, fmt.Errorf("%w: firmwareUpdate payload needs version, or url, sha256 and manifest", ErrMalformed)
		}
		return r.Version, nil, nil
	}
	if t, err = target(r.Manifest, r.URL, "firmwareUpdate"); err != nil {
		return "", nil, err
	}
	if r.SHA256 != t.Manifest.File.SHA256 {
		return "", nil, fmt.Errorf("%w: firmwareUpdate.sha256 %q is not the manifest's %q", ErrMalformed, r.SHA256, t.Manifest.File.SHA256)
	}
	if r.Version != "" && r.Version != t.Manifest.UpdateID.Version {
		return "", nil, fmt.Errorf("%w: firmwareUpdate.version %q is not the manifest's %q", ErrMalformed, r.Version, t.Manifest.UpdateID.Version)
	}
	t.Force = r.Force
	return t.Manifest.UpdateID.Version, t, nil
}

func target(manifest json.RawMessage, rawURL, where string) (*Target, error) {
	if len(bytes.TrimSpace(manifest)) == 0 || string(manifest) == "null" {
		return nil, fmt.Errorf("%w: %s.manifest is missing", ErrMalformed, where)
	}
	m, err := Parse(manifest)
	if err != nil {
		return nil, fmt.Errorf("%s.manifest: %w", where, err)
	}
	if err := checkURL(rawURL); err != nil {
		return nil, fmt.Errorf("%w: %s.url %q: %w", ErrMalformed, where, rawURL, err)
	}
	return &Target{Manifest: m, URL: rawURL}, nil
}

// checkURL accepts an absolute path (on the hub) or an https:// URL.
func checkURL(s string) error {
	if s == "" {
		return errors.New("is missing")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/"):
	default:
		return errors.New("want a path on the hub (/firmware/content/…) or an https:// URL")
	}
	return nil
}

// Reported is reported.firmware (docs/firmware.md, "reported.firmware").
// Reporters send merge patches; a nil pointer leaves a key as it is.
type Reported struct {
	Status         Status  `json:"status"`
	Progress       *int    `json:"progress,omitempty"`
	CurrentVersion *string `json:"currentVersion,omitempty"`
	PendingVersion *string `json:"pendingVersion,omitempty"`
	Deployment     *string `json:"deployment,omitempty"`
	Result         *Result `json:"result,omitempty"`
	Reason         *string `json:"reason,omitempty"`
	LastUpdate     string  `json:"lastUpdate"` // UTC, RFC 3339
}

// Failed is the report of a failed attempt: status failed, the result
// ResultOf(err) and err's text as the reason.
func Failed(err error, now time.Time) Reported {
	res, reason := ResultOf(err), err.Error()
	return Reported{Status: StatusFailed, Result: &res, Reason: &reason, LastUpdate: now.UTC().Format(time.RFC3339)}
}
