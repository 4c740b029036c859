package outbox

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	helperEnv     = "DROVER_OUTBOX_HELPER_DB"
	helperModeEnv = "DROVER_OUTBOX_HELPER_MODE" // durability; empty means every_message
)

// helperSpillAfter is the spill bound of the spill helper.
const helperSpillAfter = 300 * time.Millisecond

// TestHelperProcess is not a test: re-executed by TestCrashNoLoss, it opens
// the outbox named in the environment with the production settings
// (SyncFull) and accepts messages from several producers until it is killed,
// printing "tel <id>" after each accepted telemetry message and
// "rep <key> <n>" after each accepted reported patch.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestCrashNoLoss")
	}
	if os.Getenv(helperDrainEnv) != "" {
		helperDrain(path)
		return
	}
	mode, spillDir, roundTrip := EveryMessage, "", 5*time.Millisecond
	if m := os.Getenv(helperModeEnv); m == "spill-log" {
		// The spill log, with an uplink slow enough that much is spilled
		// and acknowledged from the log.
		mode, spillDir, roundTrip = Spill, path+".spill", 400*time.Millisecond
	} else if m != "" {
		var err error
		if mode, err = ParseDurability(m); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	o, err := Open(path, Options{Sync: SyncFull, Durability: mode, SpillAfter: helperSpillAfter, BatchEvery: 20 * time.Millisecond,
		HeldFile: path + ".held", SpillDir: spillDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() // the parent must see the line the moment Accept returned
		mu.Unlock()
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for p := range 6 {
		wg.Go(func() {
			// Under spill, each producer sends every 2 ms (3,000 messages/s
			// in all, a busy gateway's rate); otherwise as fast as it can.
			var pace <-chan time.Time
			if mode == Spill {
				tk := time.NewTicker(2 * time.Millisecond)
				defer tk.Stop()
				pace = tk.C
			}
			for i := 0; ; i++ {
				if pace != nil {
					<-pace
				}
				id, err := o.Accept(ctx, Message{Identity: fmt.Sprint("dev-", p), Kind: Telemetry, Body: fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				say("tel %s %d", id, time.Now().UnixNano())
			}
		})
	}
	if mode == Spill {
		// A healthy uplink: every few milliseconds the queued entries are
		// "delivered" (printed before the Ack, so the parent counts them as
		// delivered even when the kill falls before the Ack).
		wg.Go(func() {
			for {
				es, err := o.Next(ctx, "", 10000)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				rs := make([]Receipt, 0, len(es))
				for _, e := range es {
					say("sent %s", e.ID)
					rs = append(rs, e.Receipt())
				}
				if err := o.Ack(ctx, rs...); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				<-time.After(roundTrip) // the uplink's round trip
			}
		})
		wg.Wait()
		return
	}
	wg.Go(func() {
		// One producer for reported patches, so its print order is its commit order.
		for n := 0; ; n++ {
			key := fmt.Sprint("k", n%7)
			if _, err := o.Accept(ctx, Message{Identity: "dev-0", Kind: Reported, Body: fmt.Appendf(nil, `{"points":{%q:%d}}`, key, n)}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			say("rep %s %d", key, n)
		}
	})
	wg.Wait()
}

// TestCrashNoLoss SIGKILLs a producer process at random points, several
// times on the same database, and checks that every message it was told
// was accepted is still queued: 0 lost, under every_message and batched
// durability.
func TestCrashNoLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, mode := range []string{"every_message", "batched"} {
		t.Run(mode, func(t *testing.T) { crashNoLoss(t, mode) })
	}
}

func crashNoLoss(t *testing.T, mode string) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 7))
	acked := map[string]bool{}
	lastRep := map[string]int{}
	const cycles = 5
	for cycle := range cycles {
		cmd, sc, stderr := startHelper(t, path, mode)
		killAt := 200 + r.IntN(3000)
		lines := 0
		killed := false
		for sc.Scan() {
			lines++
			record(t, sc.Text(), acked, lastRep)
			if lines == killAt && !killed {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true // keep reading: lines already in the pipe were printed before the kill
			}
		}
		err := cmd.Wait()
		if !killed {
			t.Fatalf("cycle %d: helper exited by itself after %d lines: %v\n%s", cycle, lines, err, stderr.String())
		}
		t.Logf("cycle %d: killed after %d lines (%d accepted so far)", cycle, lines, len(acked))
		verify(t, path, acked, lastRep)
	}
}

func record(t *testing.T, line string, acked map[string]bool, lastRep map[string]int) {
	f := strings.Fields(line)
	switch {
	case len(f) == 3 && f[0] == "tel":
		acked[f[1]] = true
	case len(f) == 3 && f[0] == "rep":
		n, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("helper line %q: %v", line, err)
		}
		lastRep[f[1]] = n
	default:
		t.Fatalf("helper printed %q", line)
	}
}

// verify reopens the database and checks every acknowledged message is there.
func verify(t *testing.T, path string, acked map[string]bool, lastRep map[string]int) {
	t.Helper()
	o, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer o.Close()
	es, err := o.Next(context.Background(), "", 1<<30)
	if err != nil {
		t.Fatalf("read after kill: %v", err)
	}
	have := map[string]bool{}
	var reported map[string]any
	for _, e := range es {
		have[e.ID] = true
		if e.Kind == Reported {
			reported = obj(t, string(e.Body))
		}
	}
	lost := 0
	for id := range acked {
		if !have[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d accepted telemetry messages lost", lost, len(acked))
	}
	// The merged patch holds, per key, a value at least as new as the last acknowledged one.
	points, _ := reported["points"].(map[string]any)
	for key, n := range lastRep {
		v, ok := points[key]
		got, err := strconv.Atoi(fmt.Sprint(v))
		if !ok || err != nil || got < n {
			t.Fatalf("reported points.%s = %v, want >= %d (merged row %v)", key, v, n, reported)
		}
	}
	s, err := o.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Depth != int64(len(es)) || s.DroppedCorrupt != 0 {
		t.Fatalf("stats %+v for %d rows", s, len(es))
	}
}

// TestCrashSpillBound SIGKILLs a producer under spill durability while a
// healthy uplink acknowledges promptly, several times on the same database.
// Every message the producer was told was accepted is delivered, still
// queued after the restart, or lost; the lost ones must all have been
// accepted within the spill bound before the kill (plus the time a spill
// transaction may take), and the restart must count them
// (Stats.LostInMemory, from the held file, at least the number lost).
func TestCrashSpillBound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Run("database", func(t *testing.T) { crashSpillBound(t, "spill") })
	t.Run("spill log", func(t *testing.T) { crashSpillBound(t, "spill-log") })
}

// crashSpillBound is TestCrashSpillBound in one helper mode.
func crashSpillBound(t *testing.T, mode string) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	spillDir := ""
	if mode == "spill-log" {
		spillDir = path + ".spill"
	}
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 11))
	// A spill commit is one fsync'd transaction; on a loaded CI box it can
	// take a while, and entries stay in memory during it.
	const commitSlack = 2 * time.Second
	accepted := map[string]time.Time{}
	delivered := map[string]bool{}
	var lostTotal, countedBefore, logged int64
	for cycle := range 4 {
		cmd, sc, stderr := startHelper(t, path, mode)
		killAt := 1000 + r.IntN(8000)
		tels, killed := 0, false
		var killTime time.Time
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "tel":
				ns, err := strconv.ParseInt(f[2], 10, 64)
				if err != nil {
					t.Fatalf("helper line %q: %v", sc.Text(), err)
				}
				accepted[f[1]] = time.Unix(0, ns)
				tels++
			case len(f) == 2 && f[0] == "sent":
				delivered[f[1]] = true
			default:
				t.Fatalf("helper printed %q", sc.Text())
			}
			if tels == killAt && !killed {
				killTime = time.Now()
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err := cmd.Wait()
		if !killed {
			t.Fatalf("cycle %d: helper exited by itself: %v\n%s", cycle, err, stderr.String())
		}
		// Restart: what is queued now, and what the outbox counts as lost.
		o, err := Open(path, Options{Durability: Spill, SpillAfter: time.Hour, HeldFile: path + ".held", SpillDir: spillDir})
		if err != nil {
			t.Fatalf("reopen after kill: %v", err)
		}
		es, err := o.Next(context.Background(), "", 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		st, err := o.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// Acknowledge what is queued, as a drain after the restart would.
		rs := make([]Receipt, 0, len(es))
		queued := map[string]bool{}
		for _, e := range es {
			queued[e.ID] = true
			delivered[e.ID] = true
			rs = append(rs, e.Receipt())
		}
		if err := o.Ack(context.Background(), rs...); err != nil {
			t.Fatal(err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		var lost []time.Time
		for id, at := range accepted {
			if !delivered[id] {
				lost = append(lost, at)
				delete(accepted, id) // counted once
			}
		}
		lostTotal += int64(len(lost))
		counted := st.LostInMemory - countedBefore
		countedBefore = st.LostInMemory
		t.Logf("cycle %d: killed after %d accepted; %d queued after restart, %d lost, %d counted lost", cycle, tels, len(queued), len(lost), counted)
		for _, at := range lost {
			if age := killTime.Sub(at); age > helperSpillAfter+commitSlack {
				t.Fatalf("cycle %d: a message accepted %v before the kill was lost; bound %v (+%v for a spill commit)", cycle, age, helperSpillAfter, commitSlack)
			}
		}
		logged += st.Logged
		if counted < int64(len(lost)) {
			t.Fatalf("cycle %d: %d messages lost, the restart counted %d", cycle, len(lost), counted)
		}
	}
	t.Logf("%d lost over 4 kills, %d counted", lostTotal, countedBefore)
	if spillDir != "" && logged == 0 {
		t.Fatal("no restart found anything in the spill log: the slow uplink should have left some there")
	}
}

// startHelper starts TestHelperProcess on the outbox at path in the given
// durability mode; its stdout lines report what it accepted, its stderr is
// kept for the failure message.
func startHelper(t *testing.T, path, mode string) (*exec.Cmd, *bufio.Scanner, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path, helperModeEnv+"="+mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(stdout), stderr
}
