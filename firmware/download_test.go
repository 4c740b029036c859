package firmware

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// imageServer is a real TLS server for one image. Each request is recorded;
// cuts[i] > 0 makes the i-th request's connection drop after that many body
// bytes (the response is flushed first, so the client gets them).
type imageServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	content  []byte
	cuts     []int
	ranges   []string // Range header of each request
	noRanges bool     // answer 200 with the whole image whatever the Range
	status   int      // answer this status instead, when set
}

func newImageServer(t testing.TB, content []byte, cuts ...int) *imageServer {
	s := &imageServer{content: content, cuts: cuts}
	newTLS(t, s)
	return s
}

// newTLS starts s on a real TLS listener until the test ends.
func newTLS(t testing.TB, s *imageServer) *httptest.Server {
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s.srv
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *imageServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.ranges)
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	cut := 0
	if n < len(s.cuts) {
		cut = s.cuts[n]
	}
	content, noRanges, status := s.content, s.noRanges, s.status
	s.mu.Unlock()
	if status != 0 {
		http.Error(w, "no such image", status)
		return
	}
	if noRanges {
		r.Header.Del("Range")
	}
	var cw http.ResponseWriter = w
	if cut > 0 {
		cw = &cutWriter{ResponseWriter: w, left: cut}
	}
	w.Header().Set("ETag", `"img"`)
	http.ServeContent(cw, r, "image.bin", time.Time{}, bytes.NewReader(content))
}

func (s *imageServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// cutWriter writes left bytes of the body, flushes them, then aborts the connection.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) >= c.left {
		n, _ := c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		_ = n
		panic(http.ErrAbortHandler) // the server closes the connection mid-body
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

func randomImage(t testing.TB, n int) ([]byte, File) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, File{Name: "img.bin", Size: int64(n), SHA256: hex.EncodeToString(sum[:])}
}

func noWait(int) time.Duration { return 0 }

func (s *imageServer) downloader() *Downloader {
	return &Downloader{Client: s.srv.Client(), Backoff: noWait}
}

func TestDownloadResumesAfterCuts(t *testing.T) {
	img, want := randomImage(t, 300<<10)
	s := newImageServer(t, img, 70000, 100000)
	d := s.downloader()
	var last int64
	d.Progress = func(done, total int64) { last = done }
	path := filepath.Join(t.TempDir(), "part")
	if err := d.Download(context.Background(), Source{URL: s.srv.URL}, want, path); err != nil {
		t.Fatalf("Download: %v", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, img) {
		t.Fatal("downloaded bytes differ")
	}
	if r := s.requests(); len(r) != 3 || r[0] != "" || r[1] != "bytes=70000-" || r[2] != "bytes=170000-" {
		t.Errorf("Range headers %q, want none, then bytes=70000-, then bytes=170000-", r)
	}
	if last != want.Size {
		t.Errorf("last progress %d, want %d", last, want.Size)
	}
}

// TestDownloadResumesPartialFile: a download cut off and given up (the
// gateway stopped) leaves its partial file; the next Download asks only for
// the rest.
func TestDownloadResumesPartialFile(t *testing.T) {
	img, want := randomImage(t, 200<<10)
	s := newImageServer(t, img, 50000)
	d := s.downloader()
	d.Attempts = 1
	path := filepath.Join(t.TempDir(), "part")
	err := d.Download(context.Background(), Source{URL: s.srv.URL}, want, path)
	if !errors.Is(err, ErrTransfer) || ResultOf(err) != ResultTransferError {
		t.Fatalf("first Download = %v, want ErrTransfer", err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 50000 {
		t.Fatalf("partial file after the cut: %v, %v (want 50000 bytes kept)", st, err)
	}
	if err := d.Download(context.Background(), Source{URL: s.srv.URL}, want, path); err != nil {
		t.Fatalf("second Download: %v", err)
	}
	if r := s.requests(); len(r) != 2 || r[1] != "bytes=50000-" {
		t.Errorf("Range headers %q, want the second to be bytes=50000-", r)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, img) {
		t.Fatal("resumed bytes differ")
	}
}

func TestDownloadFailures(t *testing.T) {
	img, want := randomImage(t, 64<<10)
	tampered := bytes.Clone(img)
	tampered[1000] ^= 1
	cases := []struct {
		name     string
		content  []byte
		partial  []byte // already on disk
		setup    func(*imageServer)
		want     error
		result   Result
		keepFile bool
	}{
		{name: "tampered image", content: tampered, want: ErrDigestMismatch, result: ResultDigestMismatch},
		{name: "tampered partial prefix", content: img, partial: tampered[:30000], want: ErrDigestMismatch, result: ResultDigestMismatch},
		{name: "server image truncated", content: img[:40000], want: ErrSizeMismatch, result: ResultDigestMismatch},
		{name: "server image longer", content: append(bytes.Clone(img), 1, 2, 3), want: ErrSizeMismatch, result: ResultDigestMismatch},
		{name: "not found", content: img, setup: func(s *imageServer) { s.status = http.StatusNotFound }, want: ErrTransfer, result: ResultTransferError, keepFile: true},
		{name: "server error every time", content: img, setup: func(s *imageServer) { s.status = http.StatusServiceUnavailable }, want: ErrTransfer, result: ResultTransferError, keepFile: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newImageServer(t, tc.content)
			if tc.setup != nil {
				tc.setup(s)
			}
			path := filepath.Join(t.TempDir(), "part")
			if tc.partial != nil {
				if err := os.WriteFile(path, tc.partial, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := s.downloader().Download(context.Background(), Source{URL: s.srv.URL}, want, path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Download = %v, want %v", err, tc.want)
			}
			if ResultOf(err) != tc.result {
				t.Errorf("ResultOf = %s, want %s", ResultOf(err), tc.result)
			}
			_, statErr := os.Stat(path)
			if tc.keepFile != (statErr == nil) {
				t.Errorf("partial file exists = %v, want %v (error %v)", statErr == nil, tc.keepFile, err)
			}
		})
	}
}

// TestDownloadServerIgnoresRange: a server without Range support answers 200;
// the partial file is restarted, not appended to.
func TestDownloadServerIgnoresRange(t *testing.T) {
	img, want := randomImage(t, 100<<10)
	s := newImageServer(t, img, 30000)
	s.noRanges = true
	path := filepath.Join(t.TempDir(), "part")
	if err := s.downloader().Download(context.Background(), Source{URL: s.srv.URL}, want, path); err != nil {
		t.Fatalf("Download: %v", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, img) {
		t.Fatal("bytes differ")
	}
	if r := s.requests(); len(r) != 2 || r[1] != "bytes=30000-" {
		t.Errorf("requests %q", r)
	}
}

func TestDownloadAuthorizeAndCancel(t *testing.T) {
	img, want := randomImage(t, 1000)
	var auth []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(img))
	}))
	defer srv.Close()
	d := &Downloader{Client: srv.Client()}
	src := Source{URL: srv.URL, Authorize: func(r *http.Request) error { r.Header.Set("Authorization", "token-1"); return nil }}
	if err := d.Download(context.Background(), src, want, filepath.Join(t.TempDir(), "p")); err != nil {
		t.Fatal(err)
	}
	if len(auth) != 1 || auth[0] != "token-1" {
		t.Errorf("Authorization headers %q", auth)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := d.Download(ctx, src, want, filepath.Join(t.TempDir(), "p"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Download = %v", err)
	}
	if err := d.Download(context.Background(), src, File{Size: 1, SHA256: "x"}, filepath.Join(t.TempDir(), "p")); !errors.Is(err, ErrMalformed) {
		t.Errorf("Download with a bad File = %v", err)
	}
	if !strings.Contains(DefaultBackoff(10).String(), "30s") || DefaultBackoff(1) != time.Second {
		t.Errorf("DefaultBackoff: %s %s", DefaultBackoff(1), DefaultBackoff(10))
	}
}
