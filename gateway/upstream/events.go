package upstream

import (
	"context"
	"sync"
)

// maxQueuedPatches bounds the desired notifications waiting for the Handler.
// Beyond it a notification is dropped and the connection is recycled, so the
// next Connected re-reads the twin instead (nothing is lost for good).
const maxQueuedPatches = 256

type eventKind uint8

const (
	evConnected eventKind = iota + 1
	evDisconnected
	evDesired
)

func (k eventKind) String() string {
	switch k {
	case evConnected:
		return "connected"
	case evDisconnected:
		return "disconnected"
	case evDesired:
		return "desired-patch"
	}
	return "unknown"
}

// event is one call to make on the Handler.
type event struct {
	kind    eventKind
	ctx     context.Context // evConnected
	err     error           // evDisconnected
	patch   map[string]any  // evDesired
	version int64           // evDesired
}

// events is the FIFO between the connection side and the one goroutine that
// calls Connected, DesiredPatch and Disconnected. Lifecycle events are never
// refused (they are bounded by the reconnect backoff); desired ones are
// bounded by maxQueuedPatches.
type events struct {
	mu      sync.Mutex
	q       []event
	patches int
	closed  bool
	wake    chan struct{}
}

func newEvents() *events { return &events{wake: make(chan struct{}, 1)} }

// push queues ev; false when it is a desired notification and the queue is full.
func (e *events) push(ev event) bool {
	e.mu.Lock()
	if ev.kind == evDesired {
		if e.patches >= maxQueuedPatches {
			e.mu.Unlock()
			return false
		}
		e.patches++
	}
	e.q = append(e.q, ev)
	e.mu.Unlock()
	e.signal()
	return true
}

func (e *events) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// close lets run return once the queue is empty.
func (e *events) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.signal()
}

// run delivers events in order until closed and drained.
func (e *events) run(deliver func(event)) {
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			closed := e.closed
			e.mu.Unlock()
			if closed {
				return
			}
			<-e.wake
			continue
		}
		ev := e.q[0]
		e.q[0] = event{}
		e.q = e.q[1:]
		if ev.kind == evDesired {
			e.patches--
		}
		e.mu.Unlock()
		deliver(ev)
	}
}
