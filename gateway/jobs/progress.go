package jobs

// Progress: an executor's progress updates are throttled per job
// (Options.ProgressEvery) and written by one goroutine of Run, which
// merges the updates of every running job into one transaction, at most
// one per ProgressEvery. Many concurrent jobs (a firmware rollout to fifty
// controllers) used to cost one commit per job per ProgressEvery; now they
// cost one. The start ("running") and the outcome stay one synchronous
// commit each (package comment, "Crash safety"): only intermediate
// progress, which no recovery decision reads, waits for the batch.

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/relaxedtx"
)

// progress is the callback state of one running attempt.
type progress struct {
	q       *Queue
	id      string
	attempt int // the attempt's number: a write for an older attempt changes nothing

	mu      sync.Mutex
	pct     int
	msg     string
	last    time.Time
	stopped bool
}

// progressNote is an update waiting for the progress writer.
type progressNote struct {
	attempt int
	pct     int
	msg     string
}

func (p *progress) update(pct int, msg string) {
	pct = min(max(pct, 0), 100)
	msg = truncate(msg)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || (pct == p.pct && msg == p.msg) {
		return
	}
	p.pct, p.msg = pct, msg
	now := p.q.clock.Now()
	if now.Sub(p.last) < p.q.opts.ProgressEvery {
		return // the next update or finish stores the latest
	}
	p.last = now
	p.q.progMu.Lock()
	p.q.progPend[p.id] = progressNote{attempt: p.attempt, pct: pct, msg: msg}
	p.q.progMu.Unlock()
	select {
	case p.q.progWake <- struct{}{}:
	default:
	}
}

// stop ends the attempt's updates; finish stores the latest with the outcome.
func (p *progress) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.q.progMu.Lock()
	if n, ok := p.q.progPend[p.id]; ok && n.attempt == p.attempt {
		delete(p.q.progPend, p.id)
	}
	p.q.progMu.Unlock()
}

func (p *progress) last2() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pct, p.msg
}

// progressWriter writes pending progress when woken, at most once per
// ProgressEvery (on the queue's clock), until stop is closed; then it
// writes what is left.
func (q *Queue) progressWriter(ctx context.Context, stop <-chan struct{}) {
	var last time.Time
	for {
		select {
		case <-stop:
			q.writeProgress(ctx)
			return
		case <-q.progWake:
		}
		if !last.IsZero() {
			if at := last.Add(q.opts.ProgressEvery); q.clock.Now().Before(at) {
				t := q.clock.TimerAt(at)
				select {
				case <-t.C():
				case <-stop:
				}
				t.Stop()
			}
		}
		last = q.clock.Now() // before the write: updates it publishes may make the caller move the clock
		q.writeProgress(ctx)
	}
}

// writeProgress stores every pending update in one transaction, each only
// while its attempt is still the job's running one, and publishes the jobs
// it changed.
func (q *Queue) writeProgress(ctx context.Context) {
	q.progMu.Lock()
	pend := q.progPend
	q.progPend = map[string]progressNote{}
	q.progMu.Unlock()
	if len(pend) == 0 {
		return
	}
	ids := make([]string, 0, len(pend))
	for id := range pend {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	q.wmu.Lock()
	defer q.wmu.Unlock()
	changed, err := q.writeProgressTx(ctx, ids, pend)
	if err != nil {
		q.log.Error("job progress update failed", "jobs", len(ids), "error", err)
		return
	}
	for _, id := range changed {
		if j, err := dbGet(ctx, q.db, id); err == nil {
			q.publish(j)
		}
	}
}

// writeProgressTx commits with synchronous=NORMAL: a power cut may roll the
// last progress back, which no recovery decision reads (a running job is
// resumed or verified by its state, and the next update rewrites it).
func (q *Queue) writeProgressTx(ctx context.Context, ids []string, pend map[string]progressNote) (changed []string, err error) {
	now := nanos(q.clock.Now())
	err = relaxedtx.Run(ctx, q.db, func(tx *sql.Tx) error {
		changed = changed[:0]
		for _, id := range ids {
			n := pend[id]
			res, err := tx.ExecContext(ctx, `UPDATE jobs_queue SET progress = ?, message = ?, version = version + 1, updated = ?
				WHERE id = ? AND state = 'running' AND attempts = ?`, n.pct, n.msg, now, id, n.attempt)
			if err != nil {
				return fmt.Errorf("write progress of job %s: %w", id, err)
			}
			if k, err := res.RowsAffected(); err == nil && k > 0 {
				changed = append(changed, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("write progress: %w", err)
	}
	return changed, nil
}
