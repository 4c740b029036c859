package daemon

import (
	"runtime"
	"testing"
)

// TestMemoryStats: the classes the stats method reports are read and add
// up (objects and stacks within the total), and Linux adds the RSS.
func TestMemoryStats(t *testing.T) {
	m := memoryStats()
	for name := range memoryClasses {
		if _, ok := m[name].(uint64); !ok {
			t.Errorf("%s missing or not a byte count: %v", name, m[name])
		}
	}
	objects, _ := m["goHeapObjects"].(uint64)
	stacks, _ := m["goStacks"].(uint64)
	total, _ := m["goTotal"].(uint64)
	if objects == 0 || stacks == 0 || objects+stacks > total {
		t.Errorf("objects %d + stacks %d vs total %d", objects, stacks, total)
	}
	if runtime.GOOS == "linux" {
		if rss, _ := m["VmRSS"].(uint64); rss == 0 {
			t.Errorf("no VmRSS on Linux: %v", m)
		}
	}
}

// TestMemorySummary: the gateway twin's memory section has its keys, in MB.
func TestMemorySummary(t *testing.T) {
	m := memorySummary()
	heap, _ := m["goHeapMB"].(float64)
	if heap <= 0 || heap > 1<<20 {
		t.Errorf("goHeapMB %v", m["goHeapMB"])
	}
	if n, _ := m["goroutines"].(int); n < 1 {
		t.Errorf("goroutines %v", m["goroutines"])
	}
	if runtime.GOOS == "linux" {
		if rss, _ := m["rssMB"].(float64); rss <= 0 {
			t.Errorf("rssMB %v", m["rssMB"])
		}
	}
}
