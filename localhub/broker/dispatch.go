package broker

import "sync"

// dispatcher runs Handler calls off mochi's read loops: one FIFO queue per
// device, drained by a worker goroutine that exists only while the queue has
// work. Calls for one device run one at a time in queue order; devices run in
// parallel. A device with limit requests waiting blocks in request (its own
// read loop stalls: back-pressure on that device only).
type dispatcher struct {
	mu     sync.Mutex
	cond   *sync.Cond // signalled when a request finishes or on close
	queues map[string]*devQueue
	limit  int
	closed bool
	wg     sync.WaitGroup // workers
}

type devQueue struct {
	jobs     []job
	requests int // request jobs queued or running
}

type job struct {
	fn      func()
	request bool
	done    chan struct{} // closed after fn, if not nil
}

func newDispatcher(limit int) *dispatcher {
	d := &dispatcher{queues: make(map[string]*devQueue), limit: limit}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// request queues fn for device id, waiting while the device already has limit
// requests pending. It returns false (fn dropped) once the dispatcher is closed.
func (d *dispatcher) request(id string, fn func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for !d.closed {
		q := d.queues[id]
		if q == nil || q.requests < d.limit {
			break
		}
		d.cond.Wait()
	}
	if d.closed {
		return false
	}
	d.push(id, job{fn: fn, request: true})
	return true
}

// lifecycle queues fn for device id without waiting and returns a channel
// closed after fn has run. Callers may hold Broker.mu (lock order: Broker.mu,
// then dispatcher.mu).
func (d *dispatcher) lifecycle(id string, fn func()) <-chan struct{} {
	done := make(chan struct{})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		close(done)
		return done
	}
	d.push(id, job{fn: fn, done: done})
	return done
}

// push appends a job and starts the device's worker if it is idle. d.mu is held.
func (d *dispatcher) push(id string, j job) {
	q := d.queues[id]
	if q == nil {
		q = &devQueue{}
		d.queues[id] = q
		d.wg.Add(1)
		go d.drain(id, q)
	}
	q.jobs = append(q.jobs, j)
	if j.request {
		q.requests++
	}
}

// drain runs the device's jobs in order and exits when the queue is empty.
func (d *dispatcher) drain(id string, q *devQueue) {
	defer d.wg.Done()
	d.mu.Lock()
	for len(q.jobs) > 0 {
		j := q.jobs[0]
		q.jobs[0] = job{}
		q.jobs = q.jobs[1:]
		d.mu.Unlock()
		j.fn()
		if j.done != nil {
			close(j.done)
		}
		d.mu.Lock()
		if j.request {
			q.requests--
			d.cond.Broadcast()
		}
	}
	delete(d.queues, id)
	d.mu.Unlock()
}

// close refuses new jobs, lets the workers finish what is queued, and waits for them.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.cond.Broadcast()
	d.mu.Unlock()
	d.wg.Wait()
}
