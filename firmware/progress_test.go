package firmware

import (
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		want        int
	}{{0, 10, 0}, {-1, 10, 0}, {1, 3, 33}, {99, 100, 99}, {100, 100, 100}, {200, 100, 100}, {5, 0, 0}} {
		if got := Percent(tc.done, tc.total); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.done, tc.total, got, tc.want)
		}
	}
}

// TestThrottleBoundsPatches: a 256 KiB flash in 128-byte chunks (2048
// progress calls) writes at most 21 patches, always the first and 100, and
// never two within the interval.
func TestThrottleBoundsPatches(t *testing.T) {
	const size, chunk = 256 << 10, 128
	for _, tc := range []struct {
		name     string
		perChunk time.Duration // time a chunk takes
		max      int
	}{
		{"fast link (time bound)", time.Millisecond, 4},         // 2.048 s in all: first, 1 s, 2 s, then 100
		{"115200 baud (step bound)", 11 * time.Millisecond, 21}, // ~22.5 s in all: every 5 points
	} {
		t.Run(tc.name, func(t *testing.T) {
			var th Throttle
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var got []int
			var last time.Time
			for done := int64(0); done <= size; done += chunk {
				now = now.Add(tc.perChunk)
				if th.Report(Percent(done, size), now) {
					if len(got) > 0 && now.Sub(last) < time.Second && Percent(done, size) != 100 {
						t.Errorf("two patches %s apart", now.Sub(last))
					}
					got = append(got, Percent(done, size))
					last = now
				}
			}
			if len(got) > tc.max || got[0] != 0 || got[len(got)-1] != 100 {
				t.Errorf("reported %v: want at most %d, first 0, last 100", got, tc.max)
			}
			for i := 1; i < len(got); i++ {
				if got[i] <= got[i-1] {
					t.Errorf("not increasing: %v", got)
				}
			}
		})
	}
	var th Throttle
	now := time.Now()
	if !th.Report(100, now) || th.Report(100, now.Add(time.Hour)) {
		t.Error("100 must be reported once")
	}
}
