package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wearMeter tracks the bytes the gateway process wrote to disk
// (/proc/self/io write_bytes: what reached the block layer, WAL frames and
// checkpoints included), so a technician sees flash wear on a real box.
// It keeps one sample a minute over the last hour; the rate is taken over
// that window (over the uptime during the first hour).
type wearMeter struct {
	path    string // /proc/self/io, replaceable in tests
	mu      sync.Mutex
	samples []wearSample
}

type wearSample struct {
	at      time.Time
	written int64
}

// diskWear is what the status and the gateway twin show.
type diskWear struct {
	WrittenBytes int64 `json:"writtenBytes"` // since the process started
	BytesPerHour int64 `json:"bytesPerHour"` // over the last hour (or the uptime, when shorter)
}

func newWearMeter() *wearMeter { return &wearMeter{path: "/proc/self/io"} }

// read returns the process's write_bytes.
func (m *wearMeter) read() (int64, error) {
	b, err := os.ReadFile(m.path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", m.path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse write_bytes in %s: %w", m.path, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no write_bytes in %s", m.path)
}

// sample records the current figure (at most once a minute) and returns
// the totals.
func (m *wearMeter) sample(now time.Time) (diskWear, error) {
	if m == nil {
		return diskWear{}, errors.New("no disk wear meter")
	}
	w, err := m.read()
	if err != nil {
		return diskWear{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.samples); n == 0 || now.Sub(m.samples[n-1].at) >= time.Minute {
		m.samples = append(m.samples, wearSample{at: now, written: w})
	}
	for len(m.samples) > 2 && now.Sub(m.samples[1].at) >= time.Hour {
		m.samples = m.samples[1:]
	}
	out := diskWear{WrittenBytes: w}
	if first := m.samples[0]; now.Sub(first.at) > 0 {
		out.BytesPerHour = int64(float64(w-first.written) / now.Sub(first.at).Hours())
	}
	return out, nil
}
