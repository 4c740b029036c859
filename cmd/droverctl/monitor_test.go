package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeEventHub serves /events over TLS with a certificate for example.com and
// returns the global flags that reach it. It fakes only what localhub cannot
// be made to do on demand: drop a stream mid-way and send a broken event.
func fakeEventHub(t *testing.T, h http.HandlerFunc) []string {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--connection-string", "HostName=example.com;SharedAccessKeyName=iothubowner;SharedAccessKey=aGVsbG8=",
		"--ca-file", ca, "--address", srv.Listener.Addr().String()}
}

// TestMonitorReconnects (fake hub): after the hub closes the stream, monitor
// reopens it after the last sequence number it printed, retries while the hub
// answers 503, and skips an event it cannot decode with a warning.
func TestMonitorReconnects(t *testing.T) {
	var (
		mu    sync.Mutex
		froms []string
	)
	globals := fakeEventHub(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		froms = append(froms, r.URL.Query().Get("from"))
		n := len(froms)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1: // two good events, one broken, then the stream ends
			fmt.Fprint(w, ": hello\n\nevent: telemetry\nid: 7\ndata: {\"seq\":7,\"deviceId\":\"p\",\"body\":\"a\"}\n\n")
			fmt.Fprint(w, "event: telemetry\nid: 8\ndata: {broken\n\n")
			fmt.Fprint(w, "event: telemetry\nid: 9\ndata: {\"seq\":9,\"deviceId\":\"p\",\"body\":\"b\"}\n\n")
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable) // a hub restarting: retried
		default:
			fmt.Fprint(w, "event: telemetry\nid: 10\ndata: {\"seq\":10,\"deviceId\":\"p\",\"body\":\"c\"}\n\n")
		}
	})
	var out, errb bytes.Buffer
	code := run(context.Background(), append(globals, "monitor", "p", "--from", "7", "--count", "3", "--timeout", "30s"), &out, &errb, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(froms, ",") != "6,9,9" {
		t.Errorf("from parameters %q, want 6 (inclusive start), then 9 (after the last printed) twice", froms)
	}
	if !strings.Contains(out.String(), "#7 a") || !strings.Contains(out.String(), "#9 b") || !strings.Contains(out.String(), "#10 c") {
		t.Errorf("stdout:\n%s", out.String())
	}
	if !strings.Contains(errb.String(), "skipped event") || !strings.Contains(errb.String(), "stream lost") ||
		!strings.Contains(errb.String(), "reconnect: ") {
		t.Errorf("stderr:\n%s", errb.String())
	}
}
