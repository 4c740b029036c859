package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	cases := []struct {
		name     string
		socket   func(t *testing.T) (string, *net.UnixConn) // "" = unset
		state    string
		wantSent bool
		wantErr  bool
	}{
		{name: "unset: not under systemd", socket: func(*testing.T) (string, *net.UnixConn) { return "", nil }, state: Ready},
		{name: "path socket", socket: listen(false), state: Ready, wantSent: true},
		{name: "abstract socket", socket: listen(true), state: Stopping, wantSent: true},
		{name: "nobody listening", socket: func(t *testing.T) (string, *net.UnixConn) {
			return filepath.Join(t.TempDir(), "gone.sock"), nil
		}, state: Ready, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, l := c.socket(t)
			t.Setenv("NOTIFY_SOCKET", path)
			sent, err := Notify(c.state)
			if (err != nil) != c.wantErr || sent != c.wantSent {
				t.Fatalf("Notify(%q) with NOTIFY_SOCKET=%q = %v, %v; want sent %v, error %v", c.state, path, sent, err, c.wantSent, c.wantErr)
			}
			if l == nil {
				return
			}
			buf := make([]byte, 256)
			_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := l.Read(buf)
			if err != nil {
				t.Fatalf("read datagram: %v", err)
			}
			if got := string(buf[:n]); got != c.state {
				t.Errorf("socket got %q, want %q", got, c.state)
			}
		})
	}
}

// listen opens a datagram socket like systemd's notify socket and returns
// its $NOTIFY_SOCKET form.
func listen(abstract bool) func(t *testing.T) (string, *net.UnixConn) {
	return func(t *testing.T) (string, *net.UnixConn) {
		t.Helper()
		name := filepath.Join(t.TempDir(), "notify.sock")
		env := name
		if abstract {
			env = "@drover-test-" + strings.ReplaceAll(t.Name(), "/", "-") + time.Now().Format("150405.000000000")
			name = "\x00" + env[1:]
		}
		l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return env, l
	}
}
