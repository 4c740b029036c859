// Package harness starts Drover's real binaries for end-to-end tests and
// benchmarks: each runs as its own process, as it would in production.
package harness

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Bin returns the path of a Drover binary: from $DROVER_BIN (set by the
// Makefile after `make build`), else built once into a temp dir.
func Bin(t testing.TB, name string) string {
	t.Helper()
	if d := os.Getenv("DROVER_BIN"); d != "" {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "drover-bin-")
		if buildErr != nil {
			return
		}
		root := moduleRoot()
		cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", binDir+string(os.PathSeparator), "./cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Proc is a running child process whose stdout lines can be awaited.
type Proc struct {
	Cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	done   chan struct{}
	err    error // from Wait, valid once done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs bin with args; the process is killed when the test ends.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	p := &Proc{Cmd: cmd, lines: make(chan string, 1024), stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, out)
		close(p.lines)
	}()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Await returns the first stdout line with prefix (the prefix removed).
func (p *Proc) Await(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("%s exited before printing %q; stderr:\n%s", p.Cmd.Path, prefix, p.stderr.String())
			}
			if rest, found := strings.CutPrefix(strings.TrimSpace(l), prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-deadline:
			t.Fatalf("%s did not print %q within %s; stderr:\n%s", p.Cmd.Path, prefix, timeout, p.stderr.String())
		}
	}
}

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// ExitErr is the process's exit error (nil for status 0); valid after Exited.
func (p *Proc) ExitErr() error { return p.err }

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Stop sends SIGTERM and waits (then SIGKILL after 10s).
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Hub is a droverhub process.
type Hub struct {
	*Proc
	DataDir, MQTTAddr, HTTPSAddr, CAFile, OwnerConnectionString, Hostname string
}

// StartHub runs `droverhub serve` on loopback ports in dataDir (t.TempDir() when empty).
func StartHub(t testing.TB, dataDir string) *Hub {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	return StartHubOn(t, dataDir, "127.0.0.1:0", "127.0.0.1:0")
}

// StartHubOn runs `droverhub serve` in dataDir on the given MQTT and HTTPS
// addresses (port 0: any free one), with extra flags, and waits until it is
// ready. A rig that restarts its hub gives the same addresses each time.
func StartHubOn(t testing.TB, dataDir, mqttAddr, httpsAddr string, extra ...string) *Hub {
	t.Helper()
	args := append([]string{"serve", "--data", dataDir, "--mqtt-addr", mqttAddr, "--https-addr", httpsAddr, "--log-level", "warn"}, extra...)
	p := Start(t, Bin(t, "droverhub"), args...)
	h := &Hub{Proc: p, DataDir: dataDir, Hostname: "localhost"}
	p.Await(t, "droverhub ready", 60*time.Second)
	h.MQTTAddr = p.Await(t, "mqtt:", 5*time.Second)
	h.HTTPSAddr = p.Await(t, "https:", 5*time.Second)
	h.CAFile = p.Await(t, "ca:", 5*time.Second)
	b, err := os.ReadFile(filepath.Join(dataDir, "iothubowner.txt"))
	if err != nil {
		t.Fatal(err)
	}
	h.OwnerConnectionString = strings.TrimSpace(string(b))
	return h
}

// Service returns a client of the hub's service API with the owner's rights.
func (h *Hub) Service(t testing.TB) *serviceclient.Client {
	t.Helper()
	cs, err := sas.ParseConnectionString(h.OwnerConnectionString)
	if err != nil {
		t.Fatalf("hub owner connection string: %v", err)
	}
	svc, err := serviceclient.New(cs, serviceclient.Options{Address: h.HTTPSAddr, CAFile: h.CAFile})
	if err != nil {
		t.Fatalf("hub service client: %v", err)
	}
	return svc
}

// TLSConfig trusts the hub's CA.
func (h *Hub) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: h.Hostname, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(1024)}
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// RepoRoot is the repository's top directory.
func RepoRoot() string { return moduleRoot() }

// FreeAddr reserves a loopback address by listening on port 0 and closing it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ChildPID finds a child of parent whose command line contains name (0 when
// none); Go starts children from any of its threads, so every task is looked at.
func ChildPID(parent int, name string) int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", parent))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", parent, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.Contains(string(cmd), name) {
				return pid
			}
		}
	}
	return 0
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// WriteFile writes a test file with mode 0600.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
