package outbox

import "os"

// DROVER_BENCH_JOURNAL sets the journal mode of the databases the
// benchmarks open (WAL, TRUNCATE, PERSIST, DELETE), to compare their wear.
func init() {
	if m := os.Getenv("DROVER_BENCH_JOURNAL"); m != "" {
		journalMode = m
	}
}
