package localhub_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/hubtest"
	"github.com/drover-iot/drover/localhub/store"
)

// fwImage is a random image with its signed manifest.
type fwImage struct {
	bytes []byte
	doc   []byte
	m     *firmware.Signed
}

func newImage(t testing.TB, key ed25519.PrivateKey, version, model string, size int) fwImage {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return signImage(t, key, version, model, b)
}

func signImage(t testing.TB, key ed25519.PrivateKey, version, model string, b []byte) fwImage {
	t.Helper()
	sum := sha256.Sum256(b)
	s, err := firmware.Sign(firmware.Manifest{
		UpdateID:      firmware.UpdateID{Provider: "acme", Name: model, Version: version},
		Compatibility: []firmware.Compatibility{{Manufacturer: "Acme", Model: model}},
		File:          firmware.File{Name: model + "-" + version + ".bin", Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])},
		CreatedAt:     time.Now(),
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return fwImage{bytes: b, doc: doc, m: s}
}

func serviceClient(t testing.TB, env *hubtest.Env, policy string) *serviceclient.Client {
	t.Helper()
	p, err := env.Hub.Store().Policy(context.Background(), policy)
	if err != nil {
		t.Fatal(err)
	}
	cs := sas.ConnectionString{HostName: env.Hostname, KeyName: p.Name, Key: p.PrimaryKey}
	c, err := serviceclient.New(cs, serviceclient.Options{Address: env.HTTPSAddr, CAFile: env.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// imageFiles lists the files in the hub's image directory, temporary ones included.
func imageFiles(t *testing.T, env *hubtest.Env) []string {
	t.Helper()
	var out []string
	dir := filepath.Join(env.DataDir, "firmware")
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFirmwareImageLifecycle(t *testing.T) {
	env := hubtest.Start(t)
	c := serviceClient(t, env, "iothubowner")
	ctx := context.Background()
	key, _ := firmware.GenerateKey()
	a := newImage(t, key, "1.0.0", "pump-3", 100<<10)
	b := newImage(t, key, "1.0.0", "mcu-7", 10<<10)
	same := signImage(t, key, "1.0.1", "pump-3", a.bytes) // same bytes, another version

	for _, im := range []fwImage{a, b, same} {
		got, err := c.UploadImage(ctx, im.doc, bytes.NewReader(im.bytes))
		if err != nil {
			t.Fatalf("upload %s: %v", im.m.UpdateID, err)
		}
		if got.ID != im.m.UpdateID.String() || got.File != im.m.File || got.KeyID != firmware.KeyID(key.Public().(ed25519.PublicKey)) ||
			got.URL != "/firmware/content/"+im.m.File.SHA256 || !bytes.Equal(got.Manifest, im.doc) {
			t.Errorf("uploaded image %+v", got)
		}
	}
	if files := imageFiles(t, env); len(files) != 2 {
		t.Errorf("image files %v, want 2 (two updates share one file)", files)
	}
	_, err := c.UploadImage(ctx, a.doc, bytes.NewReader(a.bytes))
	if !errors.Is(err, serviceclient.ErrConflict) || !strings.Contains(err.Error(), "ImageAlreadyExists") {
		t.Errorf("second upload of %s = %v, want 409 ImageAlreadyExists", a.m.UpdateID, err)
	}
	// Refused before the hub reads the image: a large body still ends in a
	// clean answer, not a broken pipe or a hang.
	big := newImage(t, key, "1.0.0", "pump-3", 8<<20)
	_, err = c.UploadImage(ctx, big.doc, bytes.NewReader(big.bytes))
	if !errors.Is(err, serviceclient.ErrConflict) {
		t.Errorf("large upload under a taken id = %v, want 409", err)
	}

	for _, tc := range []struct {
		f    serviceclient.ImageFilter
		want []string
	}{
		{serviceclient.ImageFilter{}, []string{"acme/mcu-7/1.0.0", "acme/pump-3/1.0.0", "acme/pump-3/1.0.1"}},
		{serviceclient.ImageFilter{Version: "1.0.0"}, []string{"acme/mcu-7/1.0.0", "acme/pump-3/1.0.0"}},
		{serviceclient.ImageFilter{Model: "pump-3"}, []string{"acme/pump-3/1.0.0", "acme/pump-3/1.0.1"}},
		{serviceclient.ImageFilter{Version: "1.0.0", Model: "pump-3", Manufacturer: "Acme"}, []string{"acme/pump-3/1.0.0"}},
		{serviceclient.ImageFilter{Manufacturer: "Other"}, nil},
	} {
		ims, err := c.ListImages(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, im := range ims {
			ids = append(ids, im.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Errorf("ListImages(%+v) = %v, want %v", tc.f, ids, tc.want)
		}
	}
	got, err := c.GetImage(ctx, b.m.UpdateID)
	if err != nil || got.File.SHA256 != b.m.File.SHA256 || len(got.Compatibility) != 1 || got.Compatibility[0].Model != "mcu-7" {
		t.Fatalf("GetImage = %+v, %v", got, err)
	}
	// The manifest served is the one uploaded, still verifiable.
	s, err := firmware.Parse(got.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := firmware.NewKeySet(firmware.EncodePublicKey(key.Public().(ed25519.PublicKey)))
	if err := ks.Verify(s); err != nil {
		t.Errorf("served manifest does not verify: %v", err)
	}

	// Deleting one of two updates sharing bytes keeps the file; deleting both removes it.
	if err := c.DeleteImage(ctx, a.m.UpdateID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(env.DataDir, "firmware", a.m.File.SHA256)); err != nil {
		t.Errorf("shared file removed with the first update: %v", err)
	}
	if err := c.DeleteImage(ctx, same.m.UpdateID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(env.DataDir, "firmware", a.m.File.SHA256)); !os.IsNotExist(err) {
		t.Errorf("file kept after its last update was deleted: %v", err)
	}
	if err := c.DeleteImage(ctx, a.m.UpdateID); !errors.Is(err, serviceclient.ErrNotFound) || !strings.Contains(err.Error(), "ImageNotFound") {
		t.Errorf("delete of a deleted image = %v, want 404 ImageNotFound", err)
	}
	if _, err := c.GetImage(ctx, a.m.UpdateID); !errors.Is(err, serviceclient.ErrNotFound) {
		t.Errorf("GetImage of a deleted image = %v", err)
	}

	// A restarted hub still has b, and no longer the temporary file of an
	// upload the stopped hub was receiving.
	stale := filepath.Join(env.DataDir, "firmware", "tmp", "upload-123")
	if err := os.WriteFile(stale, []byte("half an image"), 0o600); err != nil {
		t.Fatal(err)
	}
	env.Stop(t)
	env2 := hubtest.StartWith(t, hubtest.Options{DataDir: env.DataDir})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("temporary upload file kept across a restart: %v", err)
	}
	ims, err := serviceClient(t, env2, "iothubowner").ListImages(ctx, serviceclient.ImageFilter{})
	if err != nil || len(ims) != 1 || ims[0].ID != b.m.UpdateID.String() {
		t.Errorf("after restart: %v, %v", ims, err)
	}
}

// multipartBody builds an upload body from parts (name, content) in order.
func multipartBody(t *testing.T, parts ...[2]string) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreateFormFile(p[0], p[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(p[1]))
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func TestFirmwareUploadRejects(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	key, _ := firmware.GenerateKey()
	good := newImage(t, key, "2.0.0", "pump-3", 5000)
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		json.Unmarshal(good.doc, &m)
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tampered := edit(func(m map[string]any) { m["updateId"].(map[string]any)["version"] = "2.0.1" })
	unsigned := edit(func(m map[string]any) { delete(m, "signature") })
	badBits := bytes.Clone(good.bytes)
	badBits[0] ^= 1
	img := string(good.bytes)
	cases := []struct {
		name   string
		parts  [][2]string
		ctype  string
		status int
		code   string
		msg    string
	}{
		{"not multipart", nil, "application/json", 415, "ArgumentInvalid", "multipart/form-data"},
		{"garbage manifest", [][2]string{{"manifest", "{not json"}, {"image", img}}, "", 400, "ManifestInvalid", "malformed manifest"},
		{"manifest missing a field", [][2]string{{"manifest", edit(func(m map[string]any) { delete(m, "file") })}, {"image", img}}, "", 400, "ManifestInvalid", "file is missing"},
		{"unsigned", [][2]string{{"manifest", unsigned}, {"image", img}}, "", 400, "ManifestSignatureInvalid", "not signed"},
		{"tampered manifest", [][2]string{{"manifest", tampered}, {"image", img}}, "", 400, "ManifestSignatureInvalid", "does not match"},
		{"image bits flipped", [][2]string{{"manifest", string(good.doc)}, {"image", string(badBits)}}, "", 400, "ImageDigestMismatch", "sha256"},
		{"image truncated", [][2]string{{"manifest", string(good.doc)}, {"image", img[:4000]}}, "", 400, "ImageDigestMismatch", "4000 bytes, not the manifest's 5000"},
		{"image longer", [][2]string{{"manifest", string(good.doc)}, {"image", img + "x"}}, "", 400, "ImageDigestMismatch", "more than the manifest's 5000"},
		{"image first", [][2]string{{"image", img}, {"manifest", string(good.doc)}}, "", 400, "ArgumentInvalid", `the first part is \"image\"`},
		{"no image part", [][2]string{{"manifest", string(good.doc)}}, "", 400, "ArgumentInvalid", `no \"image\" part`},
		{"no parts", nil, "", 400, "ArgumentInvalid", "the body has no parts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, ctype := multipartBody(t, tc.parts...)
			if tc.ctype != "" {
				ctype = tc.ctype
			}
			r := a.do("POST", "/firmware/images", body, "Content-Type", ctype)
			if r.Status != tc.status || r.errorCode(t) != tc.code || !strings.Contains(string(r.Body), tc.msg) {
				t.Errorf("got %d %s, want %d %s mentioning %q", r.Status, r.Body, tc.status, tc.code, tc.msg)
			}
			if files := imageFiles(t, env); len(files) != 0 {
				t.Errorf("files left behind: %v", files)
			}
		})
	}
	// A body cut off mid-image (the operator's connection dropped).
	full, ctype := multipartBody(t, [2]string{"manifest", string(good.doc)}, [2]string{"image", img})
	r := a.do("POST", "/firmware/images", full[:len(full)-2000], "Content-Type", ctype)
	if r.Status != 400 || !strings.Contains(string(r.Body), "ended early") {
		t.Errorf("cut body: %d %s", r.Status, r.Body)
	}
	if files := imageFiles(t, env); len(files) != 0 {
		t.Errorf("files left behind by a cut upload: %v", files)
	}
	var list []any
	decode(t, a.must(200, "GET", "/firmware/images", nil).Body, &list)
	if len(list) != 0 {
		t.Errorf("images after refused uploads: %v", list)
	}
	// And the good upload still goes through.
	body, ctype := multipartBody(t, [2]string{"manifest", string(good.doc)}, [2]string{"image", img})
	a.must(201, "POST", "/firmware/images", body, "Content-Type", ctype)
}

func TestFirmwareRights(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	key, _ := firmware.GenerateKey()
	im := newImage(t, key, "1.0.0", "pump-3", 1000)
	body, ctype := multipartBody(t, [2]string{"manifest", string(im.doc)}, [2]string{"image", string(im.bytes)})
	show := "/firmware/images/acme/pump-3/1.0.0"
	for _, tc := range []struct {
		policy string
		method string
		path   string
		body   []byte
		want   int
	}{
		{"registryRead", "POST", "/firmware/images", body, 403},
		{"service", "POST", "/firmware/images", body, 403},
		{"registryReadWrite", "POST", "/firmware/images", body, 201},
		{"service", "GET", "/firmware/images", nil, 403},
		{"registryRead", "GET", "/firmware/images", nil, 200},
		{"registryRead", "GET", show, nil, 200},
		{"registryRead", "DELETE", show, nil, 403},
		{"device", "GET", show, nil, 403},
		{"registryReadWrite", "DELETE", show, nil, 204},
	} {
		r := a.as(tc.policy).do(tc.method, tc.path, tc.body, "Content-Type", ctype)
		if r.Status != tc.want {
			t.Errorf("%s %s as %s: %d %s, want %d", tc.method, tc.path, tc.policy, r.Status, r.Body, tc.want)
		}
	}
	noAuth := *a
	noAuth.token = ""
	if r := noAuth.do("GET", "/firmware/images", nil); r.Status != 401 {
		t.Errorf("no token: %d", r.Status)
	}
}

// statusRecorder notes the status of every response a client gets.
type statusRecorder struct {
	rt       http.RoundTripper
	mu       sync.Mutex
	statuses []int
}

func (s *statusRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.rt.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		s.statuses = append(s.statuses, resp.StatusCode)
		s.mu.Unlock()
	}
	return resp, err
}

func TestFirmwareDeviceDownload(t *testing.T) {
	env := hubtest.Start(t)
	ctx := context.Background()
	st := env.Hub.Store()
	gw, err := st.CreateDevice(ctx, store.Device{ID: "gw-1", IoTEdge: true})
	if err != nil {
		t.Fatal(err)
	}
	gw2, _ := st.CreateDevice(ctx, store.Device{ID: "gw-2", IoTEdge: true})
	child, _ := st.CreateDevice(ctx, store.Device{ID: "mcu-1", ParentScopes: []string{gw.DeviceScope}})
	off, _ := st.CreateDevice(ctx, store.Device{ID: "mcu-off", ParentScopes: []string{gw.DeviceScope}, Status: "disabled"})
	_ = off
	key, _ := firmware.GenerateKey()
	im := newImage(t, key, "1.0.0", "mcu", 256<<10)
	if _, err := serviceClient(t, env, "iothubowner").UploadImage(ctx, im.doc, bytes.NewReader(im.bytes)); err != nil {
		t.Fatal(err)
	}
	rec := &statusRecorder{rt: &http.Transport{TLSClientConfig: env.TLSConfig()}}
	d := &firmware.Downloader{Client: &http.Client{Transport: rec}, Attempts: 1}
	url := "https://" + env.HTTPSAddr + "/firmware/content/" + im.m.File.SHA256
	deviceAuth := func(id, key string) func(*http.Request) error {
		return func(r *http.Request) error {
			r.Header.Set("Authorization", env.Token(t, id, key, time.Hour))
			return nil
		}
	}
	policyAuth := func(name string) func(*http.Request) error {
		p, _ := st.Policy(ctx, name)
		return func(r *http.Request) error {
			r.Header.Set("Authorization", env.ServiceToken(t, p.Name, p.PrimaryKey, time.Hour))
			return nil
		}
	}
	cases := []struct {
		name   string
		query  string
		auth   func(*http.Request) error
		status int // 0: the download succeeds
	}{
		{"device for itself", "", deviceAuth("mcu-1", child.PrimaryKey), 0},
		{"device for itself by name", "?deviceId=mcu-1", deviceAuth("mcu-1", child.SecondaryKey), 0},
		{"gateway for its child", "?deviceId=mcu-1", deviceAuth("gw-1", gw.PrimaryKey), 0},
		{"gateway for itself", "", deviceAuth("gw-1", gw.PrimaryKey), 0},
		{"policy with RegistryRead", "", policyAuth("registryRead"), 0},
		{"other gateway for the child", "?deviceId=mcu-1", deviceAuth("gw-2", gw2.PrimaryKey), 403},
		{"child for its gateway", "?deviceId=gw-1", deviceAuth("mcu-1", child.PrimaryKey), 403},
		{"gateway for a disabled child", "?deviceId=mcu-off", deviceAuth("gw-1", gw.PrimaryKey), 403},
		{"gateway for an unknown device", "?deviceId=nope", deviceAuth("gw-1", gw.PrimaryKey), 403},
		{"wrong key", "", deviceAuth("mcu-1", gw.PrimaryKey), 401},
		{"disabled device itself", "", deviceAuth("mcu-off", off.PrimaryKey), 401},
		{"unknown device", "", deviceAuth("ghost", gw.PrimaryKey), 401},
		{"service policy", "", policyAuth("service"), 403},
		{"no token", "", nil, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img")
			err := d.Download(ctx, firmware.Source{URL: url + tc.query, Authorize: tc.auth}, im.m.File, path)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("Download: %v", err)
				}
				got, _ := os.ReadFile(path)
				if !bytes.Equal(got, im.bytes) {
					t.Fatal("downloaded bytes differ")
				}
				return
			}
			if !errors.Is(err, firmware.ErrTransfer) || !strings.Contains(err.Error(), fmt.Sprint(tc.status)) {
				t.Fatalf("Download = %v, want HTTP %d", err, tc.status)
			}
		})
	}

	// A partial file is resumed with a Range request: the hub answers 206.
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, im.bytes[:100000], 0o600); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	rec.statuses = nil
	rec.mu.Unlock()
	if err := d.Download(ctx, firmware.Source{URL: url + "?deviceId=mcu-1", Authorize: deviceAuth("gw-1", gw.PrimaryKey)}, im.m.File, path); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, im.bytes) || fmt.Sprint(rec.statuses) != "[206]" {
		t.Errorf("resumed download: equal %v, statuses %v (want [206])", bytes.Equal(got, im.bytes), rec.statuses)
	}
	// Unknown or malformed digests are 404.
	for _, bad := range []string{strings.Repeat("0", 64), "zz"} {
		err := d.Download(ctx, firmware.Source{URL: "https://" + env.HTTPSAddr + "/firmware/content/" + bad, Authorize: deviceAuth("gw-1", gw.PrimaryKey)}, im.m.File, filepath.Join(t.TempDir(), "x"))
		if !strings.Contains(fmt.Sprint(err), "404") {
			t.Errorf("download of %s = %v, want 404", bad, err)
		}
	}
}

// BenchmarkFirmwareHub measures, against a real hub over TLS, the upload of
// a 16 MiB image (hashed while streamed, fsynced, recorded) and a gateway's
// download of it for a child (docs/benchmarks.md).
func BenchmarkFirmwareHub(b *testing.B) {
	env := hubtest.Start(b)
	ctx := context.Background()
	st := env.Hub.Store()
	gw, _ := st.CreateDevice(ctx, store.Device{ID: "gw-1", IoTEdge: true})
	if _, err := st.CreateDevice(ctx, store.Device{ID: "mcu-1", ParentScopes: []string{gw.DeviceScope}}); err != nil {
		b.Fatal(err)
	}
	key, _ := firmware.GenerateKey()
	c := serviceClient(b, env, "iothubowner")
	d := &firmware.Downloader{Client: &http.Client{Transport: &http.Transport{TLSClientConfig: env.TLSConfig()}}}
	const size = 16 << 20
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			im := newImage(b, key, fmt.Sprintf("1.0.%d", i), "mcu", size)
			b.StartTimer()
			if _, err := c.UploadImage(ctx, im.doc, bytes.NewReader(im.bytes)); err != nil {
				b.Fatal(err)
			}
		}
	})
	im := newImage(b, key, "2.0.0", "mcu", size)
	if _, err := c.UploadImage(ctx, im.doc, bytes.NewReader(im.bytes)); err != nil {
		b.Fatal(err)
	}
	src := firmware.Source{URL: "https://" + env.HTTPSAddr + "/firmware/content/" + im.m.File.SHA256 + "?deviceId=mcu-1",
		Authorize: func(r *http.Request) error {
			r.Header.Set("Authorization", env.Token(b, "gw-1", gw.PrimaryKey, time.Hour))
			return nil
		}}
	b.Run("download", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := d.Download(ctx, src, im.m.File, filepath.Join(b.TempDir(), "img")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
