package e2e

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/localhub/certs"
	"github.com/drover-iot/drover/test/harness"
)

// TestDroverhubProcess: the real binary creates its CA and owner connection
// string on first start, answers /healthz once both listeners are up, stops
// cleanly on SIGTERM, and keeps everything across a restart.
func TestDroverhubProcess(t *testing.T) {
	dir := t.TempDir()
	h := harness.StartHub(t, dir)
	if fi, err := os.Stat(filepath.Join(dir, "iothubowner.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("iothubowner.txt: %v %v", fi, err)
	}
	if h.CAFile != filepath.Join(dir, "tls", "ca.crt") {
		t.Fatalf("CA at %s", h.CAFile)
	}
	pool, err := certs.Pool(h.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + h.HTTPSAddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	ca1, _ := os.ReadFile(h.CAFile)
	owner1 := h.OwnerConnectionString

	if err := h.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Exited():
		if err := h.ExitErr(); err != nil {
			t.Fatalf("droverhub exited with %v after SIGTERM; stderr:\n%s", err, h.Stderr())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("droverhub did not stop within 15s of SIGTERM")
	}

	h2 := harness.StartHub(t, dir)
	ca2, _ := os.ReadFile(h2.CAFile)
	if string(ca1) != string(ca2) || h2.OwnerConnectionString != owner1 {
		t.Fatal("CA or owner key changed across a restart")
	}
}
