package serviceclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"

	"github.com/drover-iot/drover/firmware"
)

// Image is a firmware image on the hub (localhub extension, /firmware/images).
type Image struct {
	ID            string                   `json:"id"` // provider/name/version
	UpdateID      firmware.UpdateID        `json:"updateId"`
	Compatibility []firmware.Compatibility `json:"compatibility"`
	File          firmware.File            `json:"file"`
	CreatedAt     string                   `json:"createdAt"`
	KeyID         string                   `json:"keyId"`
	UploadedTime  string                   `json:"uploadedTime"`
	// URL is the path of the image's bytes on the hub (/firmware/content/{sha256}).
	URL string `json:"url"`
	// Manifest is the signed manifest document.
	Manifest json.RawMessage `json:"manifest"`
}

// ImageFilter narrows ListImages; empty fields match everything.
type ImageFilter struct {
	Version, Model, Manufacturer string
}

// UploadImage uploads a signed manifest document and the image bytes it
// describes, streamed from image. The hub checks the manifest, its signature
// and the bytes' size and SHA-256 before it keeps anything.
func (c *Client) UploadImage(ctx context.Context, manifest []byte, image io.Reader) (*Image, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() { // owned: ends when the body is written or the request gives up on it
		defer close(done)
		err := writeUpload(mw, manifest, image)
		pw.CloseWithError(err)
	}()
	var out Image
	_, err := c.call(ctx, request{
		method: http.MethodPost, path: []string{"firmware", "images"},
		header: http.Header{"Content-Type": {mw.FormDataContentType()}},
		stream: pr,
	}, &out)
	pr.CloseWithError(io.ErrClosedPipe) // unblocks the writer if the request ended early
	<-done
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func writeUpload(mw *multipart.Writer, manifest []byte, image io.Reader) error {
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="manifest"; filename="manifest.json"`)
	h.Set("Content-Type", "application/json")
	p, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := p.Write(manifest); err != nil {
		return err
	}
	p, err = mw.CreateFormFile("image", "image.bin")
	if err != nil {
		return err
	}
	if _, err := io.Copy(p, image); err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	return mw.Close()
}

// ListImages lists the hub's firmware images.
func (c *Client) ListImages(ctx context.Context, f ImageFilter) ([]Image, error) {
	q := url.Values{}
	for k, v := range map[string]string{"version": f.Version, "model": f.Model, "manufacturer": f.Manufacturer} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out []Image
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"firmware", "images"}, query: q}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// GetImage returns one image by its update id.
func (c *Client) GetImage(ctx context.Context, id firmware.UpdateID) (*Image, error) {
	var out Image
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"firmware", "images", id.Provider, id.Name, id.Version}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteImage deletes one image by its update id.
func (c *Client) DeleteImage(ctx context.Context, id firmware.UpdateID) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: []string{"firmware", "images", id.Provider, id.Name, id.Version}}, nil)
	return err
}
