package modbus

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// span is a compact expected request: table, address, count, point indexes.
type span struct {
	t      Table
	a, n   int
	points []int
}

func toSpans(reqs []Request) []span {
	out := make([]span, len(reqs))
	for i, r := range reqs {
		out[i] = span{r.Table, r.Address, r.Count, r.Points}
	}
	return out
}

func quirks(mod func(*Quirks)) Quirks {
	q := DefaultQuirks()
	if mod != nil {
		mod(&q)
	}
	return q
}

func TestPlan(t *testing.T) {
	H, I, C, D := TableHolding, TableInput, TableCoil, TableDiscrete
	fill := func(n int) func(*Quirks) { return func(q *Quirks) { q.MaxFill = n } }
	cases := []struct {
		name   string
		points []Point
		q      Quirks
		want   []span
	}{
		{"empty", nil, quirks(nil), []span{}},
		{"adjacent registers coalesce",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 1, TypeInt16), pt("c", H, 2, TypeFloat32)},
			quirks(nil), []span{{H, 0, 4, []int{0, 1, 2}}}},
		{"gap equal to max_fill is read across",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 6, TypeInt16)},
			quirks(fill(5)), []span{{H, 0, 7, []int{0, 1}}}},
		{"gap of max_fill+1 splits",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 7, TypeInt16)},
			quirks(fill(5)), []span{{H, 0, 1, []int{0}}, {H, 7, 1, []int{1}}}},
		{"max_fill 0 joins only contiguous",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 1, TypeInt16), pt("c", H, 3, TypeInt16)},
			quirks(fill(0)), []span{{H, 0, 2, []int{0, 1}}, {H, 3, 1, []int{2}}}},
		{"default fill 50",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 51, TypeInt16), pt("c", H, 103, TypeInt16)},
			quirks(nil), []span{{H, 0, 52, []int{0, 1}}, {H, 103, 1, []int{2}}}},
		{"exactly 125 registers in one request",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 124, TypeInt16)},
			quirks(fill(125)), []span{{H, 0, 125, []int{0, 1}}}},
		{"value ending at register 125 fits",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 123, TypeFloat32)},
			quirks(fill(125)), []span{{H, 0, 125, []int{0, 1}}}},
		{"value straddling the 125 boundary is not split",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 124, TypeFloat32)},
			quirks(fill(125)), []span{{H, 0, 1, []int{0}}, {H, 124, 2, []int{1}}}},
		{"float64 straddling the boundary moves whole",
			[]Point{pt("a", H, 0, TypeFloat64), pt("b", H, 4, TypeInt16), pt("c", H, 122, TypeFloat64)},
			quirks(fill(125)), []span{{H, 0, 5, []int{0, 1}}, {H, 122, 4, []int{2}}}},
		{"max_registers_per_read quirk",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 5, TypeInt16), pt("c", H, 10, TypeInt16)},
			quirks(func(q *Quirks) { q.MaxRegistersPerRead = 10 }), []span{{H, 0, 6, []int{0, 1}}, {H, 10, 1, []int{2}}}},
		{"quirk cap above the spec is clamped to 125",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 125, TypeInt16)},
			quirks(func(q *Quirks) { q.MaxRegistersPerRead = 500; q.MaxFill = 500 }), []span{{H, 0, 1, []int{0}}, {H, 125, 1, []int{1}}}},
		{"forbidden range in the middle splits",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 10, TypeInt16)},
			quirks(func(q *Quirks) { q.Forbidden = []Range{{H, 5, 6}} }), []span{{H, 0, 1, []int{0}}, {H, 10, 1, []int{1}}}},
		{"forbidden range right after a point",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 2, TypeInt16)},
			quirks(func(q *Quirks) { q.Forbidden = []Range{{H, 1, 1}} }), []span{{H, 0, 1, []int{0}}, {H, 2, 1, []int{1}}}},
		{"forbidden range of another table does not split",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 10, TypeInt16)},
			quirks(func(q *Quirks) { q.Forbidden = []Range{{I, 0, 100}} }), []span{{H, 0, 11, []int{0, 1}}}},
		{"bits fill is 16 per register and tables stay apart",
			[]Point{pt("h", H, 0, TypeInt16), pt("c1", C, 0, ""), pt("c2", C, 800, ""), pt("c3", C, 1602, ""),
				pt("d", D, 5, ""), pt("i", I, 0, TypeUint16)},
			quirks(nil), []span{{C, 0, 801, []int{1, 2}}, {C, 1602, 1, []int{3}}, {D, 5, 1, []int{4}}, {I, 0, 1, []int{5}}, {H, 0, 1, []int{0}}}},
		{"exactly 2000 bits",
			[]Point{pt("a", C, 0, ""), pt("b", C, 1999, "")},
			quirks(fill(125)), []span{{C, 0, 2000, []int{0, 1}}}},
		{"2001 bits split",
			[]Point{pt("a", C, 0, ""), pt("b", C, 2000, "")},
			quirks(fill(125)), []span{{C, 0, 1, []int{0}}, {C, 2000, 1, []int{1}}}},
		{"max_bits_per_read quirk",
			[]Point{pt("a", D, 0, ""), pt("b", D, 8, ""), pt("c", D, 9, "")},
			quirks(func(q *Quirks) { q.MaxBitsPerRead = 8 }), []span{{D, 0, 1, []int{0}}, {D, 8, 2, []int{1, 2}}}},
		{"duplicate points share a request",
			[]Point{pt("a", H, 3, TypeUint16), pt("b", H, 3, TypeUint16)},
			quirks(nil), []span{{H, 3, 1, []int{0, 1}}}},
		{"overlapping values share a request",
			[]Point{pt("lo", H, 11, TypeUint16), pt("whole", H, 10, TypeUint32)},
			quirks(nil), []span{{H, 10, 2, []int{0, 1}}}},
		{"nested in a long string",
			[]Point{str("s", H, 0, 20), pt("x", H, 5, TypeInt16), pt("y", H, 30, TypeInt16)},
			quirks(fill(0)), []span{{H, 0, 20, []int{0, 1}}, {H, 30, 1, []int{2}}}},
		{"bits inside one register share it",
			[]Point{bitIn("b0", H, 7, 0), bitIn("b1", H, 7, 1), bitIn("b15", I, 7, 15)},
			quirks(nil), []span{{I, 7, 1, []int{2}}, {H, 7, 2 - 1, []int{0, 1}}}},
		{"one request per point",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 1, TypeInt32), pt("c", H, 3, TypeInt16)},
			quirks(func(q *Quirks) { q.OneRequestPerPoint = true }), []span{{H, 0, 1, []int{0}}, {H, 1, 2, []int{1}}, {H, 3, 1, []int{2}}}},
		{"one request per point still shares identical ranges",
			[]Point{pt("a", H, 0, TypeInt16), pt("b", H, 0, TypeUint16)},
			quirks(func(q *Quirks) { q.OneRequestPerPoint = true }), []span{{H, 0, 1, []int{0, 1}}}},
		{"top of the address space",
			[]Point{pt("a", H, 65535, TypeInt16), pt("b", H, 65533, TypeUint32)},
			quirks(nil), []span{{H, 65533, 3, []int{0, 1}}}},
		{"order does not depend on input order",
			[]Point{pt("z", H, 90, TypeInt16), pt("y", I, 3, TypeInt16), pt("x", H, 0, TypeInt16), pt("w", C, 9, "")},
			quirks(fill(10)), []span{{C, 9, 1, []int{3}}, {I, 3, 1, []int{1}}, {H, 0, 1, []int{2}}, {H, 90, 1, []int{0}}}},
		{"point longer than the cap gets its own request",
			[]Point{pt("a", H, 0, TypeInt16), pt("big", H, 1, TypeFloat64)},
			quirks(func(q *Quirks) { q.MaxRegistersPerRead = 2 }), []span{{H, 0, 1, []int{0}}, {H, 1, 4, []int{1}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := toSpans(Plan(tc.points, tc.q))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Plan(%+v, fill=%d max=%d)\n got %+v\nwant %+v", tc.points, tc.q.MaxFill, tc.q.MaxRegistersPerRead, got, tc.want)
			}
			checkPlan(t, tc.points, tc.q, Plan(tc.points, tc.q))
		})
	}
}

// checkPlan verifies the invariants every plan must keep.
func checkPlan(t *testing.T, points []Point, q Quirks, reqs []Request) {
	t.Helper()
	covered := make([]int, len(points))
	for _, r := range reqs {
		limit, fill := capsFor(r.Table, q)
		if r.Count < 1 || r.Address < 0 || r.End() > 65536 {
			t.Errorf("request %+v outside the address space", r)
		}
		var ivs [][2]int
		for _, i := range r.Points {
			covered[i]++
			s, n := points[i].Span()
			if points[i].Table != r.Table || s < r.Address || s+n > r.End() {
				t.Errorf("request %+v does not hold point %d (%s %d+%d)", r, i, points[i].Table, s, n)
			}
			ivs = append(ivs, [2]int{s, s + n})
		}
		if len(r.Points) == 1 {
			continue // lone oversize or forbidden points are allowed
		}
		if r.Count > limit {
			t.Errorf("request %+v exceeds cap %d", r, limit)
		}
		if q.forbids(r.Table, r.Address, r.End()) {
			t.Errorf("request %+v touches a forbidden range", r)
		}
		if h := maxHole(ivs); h > fill {
			t.Errorf("request %+v reads a gap of %d > fill %d", r, h, fill)
		}
		if q.OneRequestPerPoint {
			for _, iv := range ivs {
				if iv != ivs[0] {
					t.Errorf("one_request_per_point violated by %+v", r)
				}
			}
		}
	}
	for i, c := range covered {
		if c != 1 {
			t.Errorf("point %d (%s) is in %d requests, want 1", i, points[i].Name, c)
		}
	}
}

// maxHole is the largest uncovered stretch inside the union of intervals.
func maxHole(ivs [][2]int) int {
	s := append([][2]int(nil), ivs...)
	for i := range s { // insertion sort; tiny inputs
		for j := i; j > 0 && s[j][0] < s[j-1][0]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	hole, end := 0, s[0][1]
	for _, iv := range s[1:] {
		hole = max(hole, iv[0]-end)
		end = max(end, iv[1])
	}
	return hole
}

// bruteMin is the exact minimum number of feasible groups covering the
// points, by enumerating set partitions (small n only). Points are taken in
// start order so a group infeasible so far cannot become feasible later.
func bruteMin(points []Point, q Quirks) int {
	points = append([]Point(nil), points...)
	sort.SliceStable(points, func(a, b int) bool { return points[a].Address < points[b].Address })
	feasible := func(group []int) bool {
		t := points[group[0]].Table
		lo, hi := 1<<30, -1
		var ivs [][2]int
		for _, i := range group {
			if points[i].Table != t {
				return false
			}
			s, n := points[i].Span()
			lo, hi = min(lo, s), max(hi, s+n)
			ivs = append(ivs, [2]int{s, s + n})
		}
		limit, fill := capsFor(t, q)
		if len(group) == 1 {
			return true
		}
		if q.OneRequestPerPoint {
			for _, iv := range ivs {
				if iv != ivs[0] {
					return false
				}
			}
		}
		return hi-lo <= limit && maxHole(ivs) <= fill && !q.forbids(t, lo, hi)
	}
	best := len(points)
	var groups [][]int
	var rec func(i int)
	rec = func(i int) {
		if len(groups) >= best {
			return
		}
		if i == len(points) {
			best = len(groups)
			return
		}
		for g := range groups {
			groups[g] = append(groups[g], i)
			if feasible(groups[g]) {
				rec(i + 1)
			}
			groups[g] = groups[g][:len(groups[g])-1]
		}
		groups = append(groups, []int{i})
		rec(i + 1)
		groups = groups[:len(groups)-1]
	}
	rec(0)
	return best
}

func TestPlanMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	typs := []Type{TypeInt16, TypeInt32, TypeFloat64, TypeUint16}
	for n := range 400 {
		var pts []Point
		for i := range 1 + r.IntN(7) {
			tab := TableHolding
			if r.IntN(5) == 0 {
				tab = TableInput
			}
			pts = append(pts, pt(fmt.Sprint("p", i), tab, r.IntN(40), typs[r.IntN(len(typs))]))
		}
		q := quirks(func(q *Quirks) {
			q.MaxRegistersPerRead = 4 + r.IntN(12)
			q.MaxFill = r.IntN(6)
			if r.IntN(3) == 0 {
				f := r.IntN(40)
				q.Forbidden = []Range{{TableHolding, f, f + r.IntN(3)}}
			}
			q.OneRequestPerPoint = r.IntN(6) == 0
		})
		plan := Plan(pts, q)
		checkPlan(t, pts, q, plan)
		if want := bruteMin(pts, q); len(plan) != want {
			t.Fatalf("case %d: Plan made %d requests, minimum is %d\npoints %+v\nquirks %+v\nplan %+v", n, len(plan), want, pts, q, plan)
		}
		unl := q
		unl.MaxFill, unl.OneRequestPerPoint = 1<<20, false
		if got, want := MinRequests(pts, q), bruteMin(pts, unl); got != want {
			t.Fatalf("case %d: MinRequests = %d, brute force %d", n, got, want)
		}
	}
}

func TestPlanDeterministic(t *testing.T) {
	pts := loadFixture200(t)
	want := Plan(pts.Points, pts.Quirks)
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := append([]Point(nil), pts.Points...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := Plan(shuffled, pts.Quirks)
		if len(got) != len(want) {
			t.Fatalf("shuffled input gave %d requests, want %d", len(got), len(want))
		}
		for i := range got {
			if got[i].Table != want[i].Table || got[i].Address != want[i].Address || got[i].Count != want[i].Count {
				t.Fatalf("request %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	}
}

const fixture200 = "testdata/profile200.json"

// TestFixture200 regenerates testdata/profile200.json with -update: a
// 200-point profile shaped like a real pump controller (clusters of mixed
// types with small holes, a forbidden range, coils and discretes), and
// checks that it is a valid profile.
func TestFixture200(t *testing.T) {
	if *update {
		writeFixture200(t)
	}
	p := loadFixture200(t)
	if len(p.Points) != 200 {
		t.Fatalf("fixture has %d points, want 200", len(p.Points))
	}
}

func loadFixture200(t testing.TB) *Profile {
	t.Helper()
	raw, err := os.ReadFile(fixture200)
	if err != nil {
		t.Fatalf("read fixture (regenerate with go test -run TestFixture200 -update): %v", err)
	}
	p, errs := ParseProfile(raw)
	if errs != nil {
		t.Fatalf("fixture invalid: %v", errs)
	}
	return p
}

func writeFixture200(t *testing.T) {
	r := rand.New(rand.NewPCG(200, 1))
	var points []map[string]any
	add := func(table string, addr int, typ string, extra map[string]any) {
		m := map[string]any{"name": fmt.Sprintf("%s_%d", table, addr), "table": table, "address": addr, "type": typ, "poll": "5s"}
		for k, v := range extra {
			m[k] = v
		}
		points = append(points, m)
	}
	regTypes := []string{"int16", "uint16", "uint16", "int32", "float32", "float32", "uint32", "float64"}
	width := map[string]int{"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
	regs := func(table string, n, base int) {
		addr := base
		for i := 0; i < n; {
			clusterLen := 4 + r.IntN(12)
			for j := 0; j < clusterLen && i < n; j++ {
				if r.IntN(8) == 0 {
					add(table, addr, "string", map[string]any{"length": 8})
					addr += 8
				} else {
					typ := regTypes[r.IntN(len(regTypes))]
					extra := map[string]any{}
					if typ == "int16" && r.IntN(2) == 0 {
						extra["scale"] = 0.1
					}
					if width[typ] > 1 && r.IntN(3) == 0 {
						extra["byte_order"] = "CDAB"
					}
					add(table, addr, typ, extra)
					addr += width[typ]
				}
				addr += []int{0, 0, 0, 1, 2, 4}[r.IntN(6)] // small holes inside a cluster
				i++
			}
			addr += []int{8, 30, 60, 120, 400}[r.IntN(5)] // between clusters
		}
	}
	regs("holding", 110, 0)
	regs("input", 50, 30000)
	for i := range 30 {
		add("coil", i*3+r.IntN(3)+[]int{0, 0, 500}[i%3], "bool", nil)
	}
	for i := range 10 {
		add("discrete", 100+i*40, "bool", nil)
	}
	// Make names unique and addresses valid, then pick a forbidden hole.
	seen := map[string]bool{}
	var uniq []map[string]any
	for _, p := range points {
		if !seen[p["name"].(string)] {
			seen[p["name"].(string)] = true
			uniq = append(uniq, p)
		}
	}
	for i := 0; len(uniq) < 200; i++ {
		uniq = append(uniq, map[string]any{"name": fmt.Sprintf("discrete_x%d", i), "table": "discrete", "address": 1000 + i, "type": "bool"})
	}
	uniq = uniq[:200]
	prof := map[string]any{
		"name": "generated-200", "plugin": "modbus",
		"description": "generated by TestFixture200 -update; used by docs/benchmarks.md",
		"points":      uniq,
		"quirks":      map[string]any{"forbidden": []map[string]any{{"table": "holding", "from": forbiddenHole(uniq), "to": forbiddenHole(uniq)}}},
	}
	b, err := json.MarshalIndent(prof, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(fixture200), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixture200, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// forbiddenHole finds a holding register inside a cluster hole (unused by
// any point) to mark forbidden, like a vendor's "do not read" register.
func forbiddenHole(points []map[string]any) int {
	used := map[int]bool{}
	for _, p := range points {
		if p["table"] != "holding" {
			continue
		}
		w := map[string]int{"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4, "string": 8}[p["type"].(string)]
		for a := p["address"].(int); a < p["address"].(int)+w; a++ {
			used[a] = true
		}
	}
	for a := 20; ; a++ {
		if !used[a] && used[a-1] && used[a+1] {
			return a
		}
	}
}

// TestPlanStats200 prints the numbers quoted in docs/benchmarks.md.
func TestPlanStats200(t *testing.T) {
	p := loadFixture200(t)
	st := Stats(p.Points, p.Quirks)
	t.Logf("200-point profile: planned %d requests, one-per-point %d, theoretical minimum %d (registers read by the plan: %d)",
		st.Planned, st.OnePerPoint, st.Minimum, st.WordsPlanned)
	if !(st.Minimum <= st.Planned && st.Planned <= st.OnePerPoint) {
		t.Fatalf("want minimum ≤ planned ≤ one-per-point, got %+v", st)
	}
	checkPlan(t, p.Points, p.Quirks, Plan(p.Points, p.Quirks))
}

func BenchmarkPlan200(b *testing.B) {
	p := loadFixture200(b)
	st := Stats(p.Points, p.Quirks)
	b.ReportAllocs()
	for b.Loop() {
		Plan(p.Points, p.Quirks)
	}
	b.ReportMetric(float64(st.Planned), "planned-req")
	b.ReportMetric(float64(st.OnePerPoint), "one-per-point-req")
	b.ReportMetric(float64(st.Minimum), "minimum-req")
}
