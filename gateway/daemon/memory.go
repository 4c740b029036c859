package daemon

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
)

// memoryClasses are the runtime/metrics the gateway's "stats" method
// reports, by the name it reports them under. Where a gateway's memory goes
// is the first question on a small box; these answer it without a profiler.
var memoryClasses = map[string]string{
	"goHeapObjects":  "/memory/classes/heap/objects:bytes",  // live and not yet swept objects
	"goHeapUnused":   "/memory/classes/heap/unused:bytes",   // in-use spans' free slots (fragmentation)
	"goHeapFree":     "/memory/classes/heap/free:bytes",     // free spans still backed by memory
	"goHeapReleased": "/memory/classes/heap/released:bytes", // free spans returned to the OS
	"goStacks":       "/memory/classes/heap/stacks:bytes",
	"goMetadata":     "/memory/classes/metadata/other:bytes",
	"goMSpan":        "/memory/classes/metadata/mspan/inuse:bytes",
	"goOther":        "/memory/classes/other:bytes",
	"goTotal":        "/memory/classes/total:bytes", // everything the runtime mapped, released included
	"goHeapGoal":     "/gc/heap/goal:bytes",
}

// memoryStats returns the Go runtime's memory classes and, on Linux, the
// process's resident memory, in bytes.
func memoryStats() map[string]any {
	samples := make([]metrics.Sample, 0, len(memoryClasses))
	names := make([]string, 0, len(memoryClasses))
	for name, m := range memoryClasses {
		samples = append(samples, metrics.Sample{Name: m})
		names = append(names, name)
	}
	metrics.Read(samples)
	out := make(map[string]any, len(samples)+5)
	for i, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			out[names[i]] = s.Value.Uint64()
		}
	}
	out["goroutines"] = runtime.NumGoroutine()
	for k, v := range procStatus("VmRSS", "RssAnon", "RssFile") {
		out[k] = v
	}
	return out
}

// procStatus reads byte counts from /proc/self/status (absent elsewhere).
func procStatus(keys ...string) map[string]uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	out := map[string]uint64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				f := strings.Fields(v) // "1234 kB"
				if len(f) == 2 && f[1] == "kB" {
					if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
						out[k] = n * 1024
					}
				}
			}
		}
	}
	return out
}

// memorySummary is the gateway twin's reported.memory: resident memory and
// the Go heap in MB (one decimal), and the goroutine count, so an operator
// sees a leak or a box running short without logging in.
func memorySummary() map[string]any {
	m := memoryStats()
	mb := func(k string) float64 {
		v, _ := m[k].(uint64)
		return float64(v*10/(1<<20)) / 10
	}
	return map[string]any{"rssMB": mb("VmRSS"), "anonMB": mb("RssAnon"), "goHeapMB": mb("goHeapObjects"),
		"goStacksMB": mb("goStacks"), "goroutines": m["goroutines"]}
}
