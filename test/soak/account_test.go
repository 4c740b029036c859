package soak

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/gateway/outbox"
)

// accounting compares what the gateway accepted with what the hub stored.
type accounting struct {
	Accepted   int // telemetry ids the gateway's outbox committed (witness)
	Delivered  int // of those, distinct ids stored at the hub
	HubRows    int // telemetry rows the hub stored for the devices
	Duplicates int // HubRows minus distinct ids
	Lost       int // accepted, not at the hub and no longer queued
	Queued     int // telemetry rows still in the outbox
	Unknown    int // ids at the hub the gateway never accepted (or without a message id)
	OutOfOrder int // first arrivals at the hub out of accept order, per device

	// Outbox counters (outbox_counters, kept by the gateway across restarts).
	CntAccepted, CntMerged, CntAcked, CntRejected      int64
	DroppedFull, DroppedTTL, DroppedCorrupt, DroppedNo int64
	WitnessRows                                        int // outbox rows committed and spill log entries written, every kind
	LogRows                                            int // of those, spill log entries
	CntSpilled, CntLostInMemory                        int64
	Spill                                              bool // spill durability: only spilled messages reach the witness
	DeferredAcks                                       bool // spill or batched: deletes of acked rows are deferred (outbox.Options.AckRows)
	QueuedReported                                     int
	AfterDrain                                         int // rows accepted after the outbox was seen empty (shutdown)

	lostSample   []string
	queuedSample []string // rows still queued that should have been drained
	afterSample  []string // rows accepted after the drain point
}

func (a accounting) String() string {
	return fmt.Sprintf("accepted %d, delivered distinct %d, hub rows %d, duplicates %d, lost %d, still queued %d, unknown at hub %d, out of order %d; "+
		"outbox counters: accepted %d (merged %d), acked %d, rejected %d, dropped full/ttl/corrupt/refused %d/%d/%d/%d, spilled %d, lost in memory at kills %d",
		a.Accepted, a.Delivered, a.HubRows, a.Duplicates, a.Lost, a.Queued, a.Unknown, a.OutOfOrder,
		a.CntAccepted, a.CntMerged, a.CntAcked, a.CntRejected, a.DroppedFull, a.DroppedTTL, a.DroppedCorrupt, a.DroppedNo, a.CntSpilled, a.CntLostInMemory)
}

func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return db
}

// account reads the gateway's and the hub's databases; both processes must
// have stopped. drainedAt is when the outbox was seen empty.
func (e *env) account(drainedAt time.Time) accounting {
	t := e.t
	t.Helper()
	var a accounting
	gdb := openRO(t, filepath.Join(e.dataDir, "gateway.db"))
	defer gdb.Close()

	type acc struct {
		device string
		n      int64
	}
	accepted := map[string]acc{} // id -> device and accept order
	rows, err := gdb.Query(`SELECT w.n, w.kind, w.id, COALESCE(i.name, '') FROM soak_witness w LEFT JOIN outbox_ident i ON i.id = w.ident ORDER BY w.n`)
	if err != nil {
		t.Fatalf("read witness: %v", err)
	}
	for rows.Next() {
		var n int64
		var kind int
		var id, dev string
		if err := rows.Scan(&n, &kind, &id, &dev); err != nil {
			t.Fatalf("read witness: %v", err)
		}
		a.WitnessRows++
		if kind != int(1) { // outbox.Telemetry
			continue
		}
		if _, dup := accepted[id]; dup {
			t.Errorf("the outbox accepted message id %s twice", id)
		}
		accepted[id] = acc{dev, n}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read witness: %v", err)
	}
	rows.Close()
	// The spill log's witness: every entry record it ever held (its
	// segments are retired, not deleted, in the soak).
	logged, err := outbox.ReadSpillLog(filepath.Join(e.dataDir, "outbox-spill"), e.spillRetired())
	if err != nil {
		t.Fatalf("read spill log: %v", err)
	}
	var liveLogged []outbox.LoggedEntry
	for _, le := range logged {
		a.WitnessRows++
		a.LogRows++
		if le.Live {
			liveLogged = append(liveLogged, le)
		}
		if le.Kind != outbox.Telemetry {
			continue
		}
		if _, dup := accepted[le.ID]; dup {
			t.Errorf("the outbox accepted message id %s twice", le.ID)
		}
		accepted[le.ID] = acc{le.Identity, le.Seq}
	}
	a.Accepted = len(accepted)

	queued := map[string]bool{}
	rows, err = gdb.Query(`SELECT m.kind, m.id, m.accepted, COALESCE(i.name, ''), CAST(m.body AS TEXT) FROM outbox_msg m LEFT JOIN outbox_ident i ON i.id = m.ident`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	for rows.Next() {
		var kind int
		var at int64
		var id, dev, body string
		if err := rows.Scan(&kind, &id, &at, &dev, &body); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		desc := fmt.Sprintf("%s kind %d accepted %s: %s", dev, kind, time.Unix(0, at).Format("15:04:05.000"), body)
		if kind == 1 {
			queued[id] = true
		}
		if time.Unix(0, at).After(drainedAt) {
			// Produced after the outbox was seen empty, while the system
			// was being stopped: kept for the next start, not a failure.
			a.AfterDrain++
			a.afterSample = append(a.afterSample, desc)
			continue
		}
		if kind == 1 {
			a.Queued++
		} else {
			a.QueuedReported++
		}
		a.queuedSample = append(a.queuedSample, desc)
	}
	rows.Close()
	for _, le := range liveLogged {
		desc := fmt.Sprintf("%s %s accepted %s (spill log): %s", le.Identity, le.Kind, le.AcceptedAt.Format("15:04:05.000"), le.Body)
		if le.Kind == outbox.Telemetry {
			queued[le.ID] = true
		}
		switch {
		case le.AcceptedAt.After(drainedAt):
			a.AfterDrain++
			a.afterSample = append(a.afterSample, desc)
		case le.Kind == outbox.Telemetry:
			a.Queued++
			a.queuedSample = append(a.queuedSample, desc)
		default:
			a.QueuedReported++
			a.queuedSample = append(a.queuedSample, desc)
		}
	}
	a.Spill = e.durabilityOrDefault() == "spill"
	a.DeferredAcks = e.durabilityOrDefault() != "every_message"
	if err := gdb.QueryRow(`SELECT accepted, merged, acked, rejected, dropped_full, dropped_ttl, dropped_corrupt, dropped_rejected, spilled, lost_crash FROM outbox_counters`).
		Scan(&a.CntAccepted, &a.CntMerged, &a.CntAcked, &a.CntRejected, &a.DroppedFull, &a.DroppedTTL, &a.DroppedCorrupt, &a.DroppedNo, &a.CntSpilled, &a.CntLostInMemory); err != nil {
		t.Fatalf("read outbox counters: %v", err)
	}

	hdb := openRO(t, filepath.Join(e.hubDir, "hub.db"))
	defer hdb.Close()
	in := "'" + strings.Join(e.devices, "','") + "'"
	rows, err = hdb.Query(`SELECT device_id, message_id FROM telemetry WHERE device_id IN (` + in + `) ORDER BY seq`)
	if err != nil {
		t.Fatalf("read hub telemetry: %v", err)
	}
	seen := map[string]bool{}
	lastN := map[string]int64{}
	for rows.Next() {
		var dev, id string
		if err := rows.Scan(&dev, &id); err != nil {
			t.Fatalf("read hub telemetry: %v", err)
		}
		a.HubRows++
		if seen[id] {
			a.Duplicates++
			continue
		}
		seen[id] = true
		w, ok := accepted[id]
		if !ok || id == "" || w.device != dev {
			a.Unknown++
			continue
		}
		a.Delivered++
		if w.n < lastN[dev] {
			a.OutOfOrder++
		}
		lastN[dev] = w.n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read hub telemetry: %v", err)
	}
	rows.Close()
	for id := range accepted {
		if !seen[id] && !queued[id] {
			a.Lost++
			if len(a.lostSample) < 10 {
				a.lostSample = append(a.lostSample, accepted[id].device+"/"+id)
			}
		}
	}
	return a
}

// check asserts the no-loss properties; faults is the number of disruptive
// events, which bounds the duplicates, and kills the gateway SIGKILLs.
//
// Under spill durability the witness sees only messages that reached the
// disk (spilled), and those must not be lost either; messages delivered
// from memory are at the hub without a witness row (not "unknown"); what
// the gateway lost in memory at its kills is what it counted after each
// restart, and that must stay within the spill bound: per kill and
// identity, the telemetry of spill_after plus one poll, and one merged
// reported entry.
func (a accounting) check(t *testing.T, faults, kills, identities int) {
	t.Helper()
	if a.Spill {
		if a.HubRows == 0 {
			t.Fatal("the hub stored no telemetry: nothing was tested")
		}
		perKill := int64(identities) * (int64(soakSpillAfter/soakPoll) + 2)
		if bound := int64(kills) * perKill; a.CntLostInMemory > bound {
			t.Errorf("the gateway counted %d messages lost in memory over %d kills, more than the spill bound allows (%d)", a.CntLostInMemory, kills, bound)
		}
		// The spill log carries the counters in each append, so they are
		// as crash-consistent as the database's.
		if int64(a.WitnessRows) != a.CntSpilled {
			t.Errorf("%d rows were committed or logged, but the outbox counted %d spilled: the counters are not crash-consistent", a.WitnessRows, a.CntSpilled)
		}
	} else if a.Accepted == 0 {
		t.Fatal("the gateway accepted no telemetry: nothing was tested")
	}
	if a.Lost != 0 {
		t.Errorf("LOST %d of %d accepted telemetry messages (e.g. %v)", a.Lost, a.Accepted, a.lostSample)
	}
	if a.Queued != 0 || a.QueuedReported != 0 {
		t.Errorf("outbox not drained: %d telemetry and %d reported rows still queued %q", a.Queued, a.QueuedReported, a.queuedSample)
	}
	if a.AfterDrain != 0 {
		t.Logf("%d rows accepted after the outbox was seen empty, while stopping (queued for the next start): %q", a.AfterDrain, a.afterSample)
	}
	if a.Unknown != 0 && !a.Spill {
		t.Errorf("%d telemetry messages at the hub have no message id the gateway accepted", a.Unknown)
	}
	if d := a.DroppedFull + a.DroppedTTL + a.DroppedCorrupt + a.DroppedNo + a.CntRejected; d != 0 {
		t.Errorf("the outbox dropped or refused %d messages with a 1 GiB bound", d)
	}
	bound := (faults + 1) * identities * inflightPerIdentity
	if a.DeferredAcks {
		// A kill also loses the deferred deletes: at most AckRows, plus
		// the acks of the drain turns adding to a full set (one turn per
		// worker, Batch telemetry rows each).
		bound += kills * (outbox.DefaultAckRows + drainWorkers*inflightPerIdentity)
	}
	if a.Duplicates > bound {
		t.Errorf("%d duplicates exceed the in-flight bound %d (%d faults x %d identities x %d, plus %d kills' deferred acks)", a.Duplicates, bound, faults+1, identities, inflightPerIdentity, kills)
	}
	if a.OutOfOrder != 0 {
		t.Errorf("%d telemetry messages reached the hub out of their device's accept order", a.OutOfOrder)
	}
	// Every committed row is counted once by the outbox's persistent counter
	// (merged patches update a row instead of inserting one).
	if got := a.CntAccepted - a.CntMerged; got != int64(a.WitnessRows) && !a.Spill {
		t.Errorf("outbox counters accepted-merged = %d, but %d rows were committed: the counters are not crash-consistent", got, a.WitnessRows)
	}
}
