package outbox

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDeferredAcks: under batched and spill durability an Ack hides the
// rows at once and deletes them later in one commit; nothing acked comes
// back after a clean stop, and a full set is deleted before Ack returns.
func TestDeferredAcks(t *testing.T) {
	for _, mode := range []Durability{Batched, Spill} {
		t.Run(mode.String()+"/clean stop deletes them", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gateway.db")
			o, err := Open(path, Options{Durability: mode, SpillAfter: time.Hour, BatchEvery: time.Millisecond, AckEvery: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			acceptN(t, o, "dev-1", 0, 60)
			acceptN(t, o, "dev-2", 0, 40)
			if mode == Spill {
				if err := o.spillAll(t.Context()); err != nil { // acks of rows on disk are the ones deferred
					t.Fatal(err)
				}
			}
			es := next(t, o, "dev-1", 50)
			if err := o.Ack(t.Context(), receipts(es)...); err != nil {
				t.Fatal(err)
			}
			st := stats(t, o)
			if st.AckDeferred != 50 || st.Depth != 50 || st.Telemetry != 50 {
				t.Fatalf("after acking 50 of 100: %+v", st)
			}
			if n := rowsOnDisk(t, path); n != 100 {
				t.Fatalf("%d rows on disk, want 100 (the deletes are deferred)", n)
			}
			if got := next(t, o, "dev-1", 100); len(got) != 10 || got[0].Seq <= es[len(es)-1].Seq {
				t.Fatalf("next after the ack returned %d entries (first %+v), want the 10 not acked", len(got), got)
			}
			if got := next(t, o, "", 1000); len(got) != 50 {
				t.Fatalf("next over all identities returned %d, want 50", len(got))
			}
			if p := o.Pending(); p["dev-1"] != 10 || p["dev-2"] != 40 {
				t.Fatalf("pending %v, want dev-1:10 dev-2:40", p)
			}
			if err := o.Ack(t.Context(), es[0].Receipt()); err != nil { // a second ack is harmless
				t.Fatal(err)
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if n := rowsOnDisk(t, path); n != 50 {
				t.Fatalf("%d rows on disk after Close, want 50", n)
			}
			o = openAt(t, path, Options{Durability: mode})
			if st := stats(t, o); st.Depth != 50 || st.Acked != 50 || st.AckDeferred != 0 {
				t.Fatalf("after reopening: %+v", st)
			}
			if got := next(t, o, "dev-1", 100); len(got) != 10 {
				t.Fatalf("after reopening dev-1 has %d entries, want 10", len(got))
			}
		})
	}
	t.Run("a full set is deleted before Ack returns", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openAt(t, path, Options{Durability: Batched, BatchEvery: time.Millisecond, AckEvery: time.Hour, AckRows: 16})
		acceptN(t, o, "dev-1", 0, 40)
		es := next(t, o, "dev-1", 10)
		if err := o.Ack(t.Context(), receipts(es)...); err != nil {
			t.Fatal(err)
		}
		if n := rowsOnDisk(t, path); n != 40 {
			t.Fatalf("%d rows on disk after 10 acks, want 40 (under AckRows)", n)
		}
		es = next(t, o, "dev-1", 10)
		if err := o.Ack(t.Context(), receipts(es)...); err != nil {
			t.Fatal(err)
		}
		if n := rowsOnDisk(t, path); n != 20 {
			t.Fatalf("%d rows on disk after 20 acks with AckRows 16, want 20", n)
		}
		if st := stats(t, o); st.AckDeferred != 0 || st.Acked != 20 || st.Depth != 20 {
			t.Fatalf("after the full set: %+v", st)
		}
	})
	t.Run("AckEvery after the first ack they are deleted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openAt(t, path, Options{Durability: Batched, BatchEvery: time.Millisecond, AckEvery: 50 * time.Millisecond})
		acceptN(t, o, "dev-1", 0, 30)
		if err := o.Ack(t.Context(), receipts(next(t, o, "dev-1", 30))...); err != nil {
			t.Fatal(err)
		}
		awaitRows(t, path, 0)
	})
	t.Run("an ack after the delete hides nothing for long", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		const every = 50 * time.Millisecond
		o := openAt(t, path, Options{Durability: Batched, BatchEvery: time.Millisecond, AckEvery: every})
		acceptN(t, o, "dev-1", 0, 2)
		es := next(t, o, "dev-1", 2)
		if err := o.Ack(t.Context(), es[0].Receipt()); err != nil {
			t.Fatal(err)
		}
		awaitRows(t, path, 1)
		if err := o.Ack(t.Context(), es[0].Receipt()); err != nil { // its row is gone
			t.Fatal(err)
		}
		// The periodic delete drops the receipt (it is below the queue's
		// head), so dev-1's last entry is pending again within a few
		// periods, not only at the full delete every fullAckEvery periods.
		deadline := time.Now().Add(10 * every)
		for o.Pending()["dev-1"] != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("pending %v %v after the second ack, want dev-1:1", o.Pending(), 10*every)
			}
			<-time.After(5 * time.Millisecond)
		}
		if got := next(t, o, "dev-1", 10); len(got) != 1 || got[0].ID != es[1].ID {
			t.Fatalf("next %+v, want the entry not acked", got)
		}
	})
	t.Run("every_message deletes in the ack's commit", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "gateway.db")
		o := openAt(t, path, Options{})
		acceptN(t, o, "dev-1", 0, 30)
		if err := o.Ack(t.Context(), receipts(next(t, o, "dev-1", 30))...); err != nil {
			t.Fatal(err)
		}
		if n := rowsOnDisk(t, path); n != 0 {
			t.Fatalf("%d rows on disk, want 0", n)
		}
	})
	t.Run("eviction steps over acked rows", func(t *testing.T) {
		o, _ := openTemp(t, Options{Durability: Batched, BatchEvery: time.Millisecond, AckEvery: time.Hour, MaxBytes: 4096})
		ids := acceptN(t, o, "dev-1", 0, 20) // about 60 B accounted each
		if err := o.Ack(t.Context(), receipts(next(t, o, "dev-1", 5))...); err != nil {
			t.Fatal(err)
		}
		for i := range 60 { // room is made from the oldest rows not acked
			accept(t, o, tel("dev-1", fmt.Sprint(`{"n":`, 100+i, `}`)))
		}
		st := stats(t, o)
		if st.DroppedFull == 0 || st.Bytes > 4096 {
			t.Fatalf("no eviction: %+v", st)
		}
		for _, e := range next(t, o, "dev-1", 1000) {
			for _, id := range ids[:5] {
				if e.ID == id {
					t.Fatalf("acked entry %s handed out again", id)
				}
			}
		}
	})
}

const helperDrainEnv = "DROVER_OUTBOX_HELPER_DRAIN"

// helperAckRows is the deferred set's bound in the drain helper; AckEvery is
// an hour there, so only the bound deletes.
const helperAckRows = 100

// helperDrain accepts telemetry (batched durability) and drains it with a
// healthy uplink, printing "tel <id>" after each accept and "acked <id>"
// after the Ack holding it returned, until it is killed.
func helperDrain(path string) {
	o, err := Open(path, Options{Sync: SyncFull, Durability: Batched, BatchEvery: 5 * time.Millisecond,
		AckEvery: time.Hour, AckRows: helperAckRows})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(lines []string) {
		mu.Lock()
		for _, l := range lines {
			fmt.Fprintln(out, l)
		}
		out.Flush()
		mu.Unlock()
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id, err := o.Accept(ctx, Message{Identity: fmt.Sprint("dev-", p), Kind: Telemetry, Body: fmt.Appendf(nil, `{"i":%d}`, i)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				say([]string{"tel " + id})
			}
		})
	}
	wg.Go(func() {
		for {
			es, err := o.Next(ctx, "", 37)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			if err := o.Ack(ctx, receipts(es)...); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			lines := make([]string, len(es))
			for i, e := range es {
				lines[i] = "acked " + e.ID
			}
			say(lines)
		}
	})
	wg.Wait()
}

// TestCrashDeferredAcks SIGKILLs a process that accepts and drains with
// deferred deletes, several times on one database: nothing accepted is
// lost, and the acknowledged entries handed out again after the restart
// (the duplicates a crash causes) are at most AckRows plus one Ack call's
// receipts (37 here) — the bound docs/configuration.md states.
func TestCrashDeferredAcks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "gateway.db")
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 13))
	accepted := map[string]bool{}
	acked := map[string]bool{}
	const bound = helperAckRows + 37
	for cycle := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"="+path, helperDrainEnv+"=1")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &strings.Builder{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		killAt, nAcked, killed := 500+r.IntN(3000), 0, false
		for sc.Scan() {
			kind, id, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "tel":
				accepted[id] = true
			case "acked":
				acked[id] = true
				nAcked++
			default:
				t.Fatalf("helper printed %q", sc.Text())
			}
			if nAcked >= killAt && !killed {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("cycle %d: helper exited by itself: %v\n%s", cycle, err, stderr.String())
		}
		o, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("reopen after kill: %v", err)
		}
		es, err := o.Next(context.Background(), "", 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		queued := map[string]bool{}
		again := 0
		for _, e := range es {
			queued[e.ID] = true
			if acked[e.ID] {
				again++
			}
		}
		for id := range accepted {
			if !acked[id] && !queued[id] {
				t.Fatalf("cycle %d: accepted entry %s neither acked nor queued after the kill", cycle, id)
			}
		}
		t.Logf("cycle %d: killed after %d acks; %d queued, %d of them acked before the kill", cycle, nAcked, len(es), again)
		if again > bound {
			t.Fatalf("cycle %d: %d acknowledged entries are queued again after the kill, bound %d", cycle, again, bound)
		}
		// The restart drains what is queued (the duplicates too), as the gateway would.
		if err := o.Ack(context.Background(), receipts(es)...); err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			acked[e.ID] = true
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
