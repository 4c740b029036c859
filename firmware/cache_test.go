package firmware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock hands out strictly increasing times, so last-use order is exact.
type fakeClock struct{ n atomic.Int64 }

func (c *fakeClock) Now() time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(c.n.Add(1)) * time.Minute)
}

// multiServer serves several images by digest and counts requests per digest.
type multiServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	images  map[string][]byte
	hits    map[string]int
	gate    chan struct{} // when set, each request waits for it to close
	arrived chan struct{} // gets a value per request
}

func newMultiServer(t *testing.T) *multiServer {
	m := &multiServer{images: map[string][]byte{}, hits: map[string]int{}, arrived: make(chan struct{}, 100)}
	m.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := filepath.Base(r.URL.Path)
		m.mu.Lock()
		m.hits[d]++
		b, ok := m.images[d]
		gate := m.gate
		m.mu.Unlock()
		select {
		case m.arrived <- struct{}{}:
		default:
		}
		if gate != nil {
			<-gate
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, d, time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *multiServer) add(t *testing.T, n int) File {
	b, f := randomImage(t, n)
	m.mu.Lock()
	m.images[f.SHA256] = b
	m.mu.Unlock()
	return f
}

func (m *multiServer) src(f File) Source { return Source{URL: m.srv.URL + "/" + f.SHA256} }

func (m *multiServer) hitCount(f File) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hits[f.SHA256]
}

func cached(c *Cache, f File) bool {
	_, err := os.Stat(c.imagePath(f.SHA256))
	return err == nil
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	m := newMultiServer(t)
	clk := &fakeClock{}
	c, err := OpenCache(t.TempDir(), 3000, CacheOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	d := &Downloader{Client: m.srv.Client(), Backoff: noWait}
	ctx := context.Background()
	a, b, cc, e := m.add(t, 1000), m.add(t, 1000), m.add(t, 1000), m.add(t, 1000)
	for _, f := range []File{a, b, cc} {
		im, err := c.Fetch(ctx, d, m.src(f), f)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		im.Release()
	}
	// Use a again: b is now the least recently used.
	im, err := c.Get(a.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	im.Release()
	im, err = c.Fetch(ctx, d, m.src(e), e)
	if err != nil {
		t.Fatalf("Fetch e: %v", err)
	}
	im.Release()
	if cached(c, b) || !cached(c, a) || !cached(c, cc) || !cached(c, e) {
		t.Errorf("after fetching e: a %v b %v c %v e %v; want b evicted (least recently used)", cached(c, a), cached(c, b), cached(c, cc), cached(c, e))
	}
	if _, err := c.Get(b.SHA256); !errors.Is(err, ErrNotCached) {
		t.Errorf("Get(b) = %v, want ErrNotCached", err)
	}
	if used, max, _ := c.Usage(); used != 3000 || max != 3000 {
		t.Errorf("Usage = %d/%d", used, max)
	}
	// A cached image is served without a request.
	before := m.hitCount(a)
	im, err = c.Fetch(ctx, d, m.src(a), a)
	if err != nil || m.hitCount(a) != before {
		t.Errorf("Fetch of a cached image: %v, %d requests", err, m.hitCount(a)-before)
	}
	im.Release()
}

func TestCacheNeverEvictsImagesInUse(t *testing.T) {
	m := newMultiServer(t)
	clk := &fakeClock{}
	c, _ := OpenCache(t.TempDir(), 2500, CacheOptions{Now: clk.Now})
	d := &Downloader{Client: m.srv.Client(), Backoff: noWait}
	ctx := context.Background()
	a, b, big := m.add(t, 1000), m.add(t, 1000), m.add(t, 2000)
	ima, err := c.Fetch(ctx, d, m.src(a), a)
	if err != nil {
		t.Fatal(err)
	}
	imb, err := c.Fetch(ctx, d, m.src(b), b)
	if err != nil {
		t.Fatal(err)
	}
	// Both held: 2000 in use, 500 free; big needs 2000.
	_, err = c.Fetch(ctx, d, m.src(big), big)
	if !errors.Is(err, ErrCacheFull) || ResultOf(err) != ResultOutOfStorage {
		t.Fatalf("Fetch(big) with everything in use = %v, want ErrCacheFull", err)
	}
	if !cached(c, a) || !cached(c, b) || m.hitCount(big) != 0 {
		t.Fatal("a refused fetch evicted or downloaded something")
	}
	// a (least recently used) is released, but evicting it frees only 1500: still full, nothing evicted.
	ima.Release()
	if _, err := c.Fetch(ctx, d, m.src(big), big); !errors.Is(err, ErrCacheFull) {
		t.Fatalf("Fetch(big) = %v, want ErrCacheFull", err)
	}
	if !cached(c, a) {
		t.Error("a was evicted although eviction could not make room")
	}
	imb.Release()
	im, err := c.Fetch(ctx, d, m.src(big), big)
	if err != nil {
		t.Fatalf("Fetch(big) with nothing in use: %v", err)
	}
	defer im.Release()
	if cached(c, a) || cached(c, b) {
		t.Error("a and b should have been evicted for big")
	}
	got, _ := os.ReadFile(im.Path())
	if int64(len(got)) != big.Size {
		t.Errorf("image file %d bytes", len(got))
	}
	// Larger than the bound: refused outright.
	huge := m.add(t, 3000)
	if _, err := c.Fetch(ctx, d, m.src(huge), huge); !errors.Is(err, ErrCacheFull) {
		t.Errorf("Fetch(huge) = %v", err)
	}
}

// TestCacheOneDownloadForManyDevices: concurrent fetches of one image (a
// gateway updating many devices) make one download.
func TestCacheOneDownloadForManyDevices(t *testing.T) {
	m := newMultiServer(t)
	m.gate = make(chan struct{})
	c, _ := OpenCache(t.TempDir(), 1<<20, CacheOptions{})
	d := &Downloader{Client: m.srv.Client(), Backoff: noWait}
	f := m.add(t, 50000)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			im, err := c.Fetch(context.Background(), d, m.src(f), f)
			if err == nil {
				im.Release()
			}
			errs <- err
		}()
	}
	// The server holds the first request until released: every fetch then
	// finds the download in flight (or, if late, the image cached).
	<-m.arrived
	close(m.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if h := m.hitCount(f); h != 1 {
		t.Errorf("%d downloads for %d concurrent fetches, want 1", h, n)
	}
}

// TestCacheFailedDownloadKeepsNothingUsable: a tampered image never lands in
// images/, and a partial download is resumed by the next Fetch.
func TestCacheFailedDownloadKeepsNothingUsable(t *testing.T) {
	m := newMultiServer(t)
	c, _ := OpenCache(t.TempDir(), 1<<20, CacheOptions{})
	d := &Downloader{Client: m.srv.Client(), Backoff: noWait}
	f := m.add(t, 4000)
	m.images[f.SHA256][10] ^= 0xff
	if _, err := c.Fetch(context.Background(), d, m.src(f), f); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Fetch of a tampered image = %v", err)
	}
	if cached(c, f) {
		t.Fatal("tampered image is in the cache")
	}
	if _, err := os.Stat(c.partialPath(f.SHA256)); !os.IsNotExist(err) {
		t.Errorf("tampered partial file kept: %v", err)
	}
	if _, err := c.Get(f.SHA256); !errors.Is(err, ErrNotCached) {
		t.Errorf("Get = %v", err)
	}
	if _, err := c.Get("nope"); !errors.Is(err, ErrMalformed) {
		t.Errorf("Get(bad digest) = %v", err)
	}
	if _, err := OpenCache(t.TempDir(), 0, CacheOptions{}); err == nil {
		t.Error("OpenCache with a zero bound succeeded")
	}
}

// TestCacheWaiterTakesOver: the fetch that owns a download gives up (its
// context ends); another fetch of the image still gets it.
func TestCacheWaiterTakesOver(t *testing.T) {
	m := newMultiServer(t)
	m.gate = make(chan struct{})
	c, _ := OpenCache(t.TempDir(), 1<<20, CacheOptions{})
	d := &Downloader{Client: m.srv.Client(), Backoff: noWait}
	f := m.add(t, 50000)
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx1, d, m.src(f), f)
		first <- err
	}()
	<-m.arrived
	second := make(chan error, 1)
	go func() {
		im, err := c.Fetch(context.Background(), d, m.src(f), f)
		if err == nil {
			im.Release()
		}
		second <- err
	}()
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first fetch = %v, want context.Canceled", err)
	}
	close(m.gate)
	if err := <-second; err != nil {
		t.Fatalf("second fetch = %v, want the image", err)
	}
	if !cached(c, f) {
		t.Error("image not cached")
	}
}

// TestImageVerify: a cached image that changed on disk since it was
// downloaded is refused and dropped, so the next fetch downloads it again.
func TestImageVerify(t *testing.T) {
	c, err := OpenCache(t.TempDir(), 1<<20, CacheOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("an image that will rot on the card")
	sum := sha256.Sum256(body)
	want := File{Name: "x.bin", Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
	if err := os.WriteFile(c.imagePath(want.SHA256), body, 0o600); err != nil {
		t.Fatal(err)
	}
	im, err := c.Get(want.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Verify(want); err != nil {
		t.Fatalf("intact image: %v", err)
	}
	rotten := bytes.Clone(body)
	rotten[3] ^= 0x10
	if err := os.WriteFile(im.Path(), rotten, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := im.Verify(want); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("rotten image: %v, want ErrDigestMismatch", err)
	}
	im.Release()
	if _, err := c.Get(want.SHA256); !errors.Is(err, ErrNotCached) {
		t.Fatalf("after a failed verify: %v, want ErrNotCached", err)
	}
	if err := os.WriteFile(c.imagePath(want.SHA256), body[:5], 0o600); err != nil {
		t.Fatal(err)
	}
	im, _ = c.Get(want.SHA256)
	defer im.Release()
	if err := im.Verify(want); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("short image: %v, want ErrSizeMismatch", err)
	}
}
