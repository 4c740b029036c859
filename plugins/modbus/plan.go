package modbus

import (
	"slices"
	"sort"
)

// Request is one planned block read: Count registers (or bits) of Table from
// Address, covering the points whose indexes (into the slice given to Plan)
// are listed in Points, in increasing order.
type Request struct {
	Table   Table
	Address int
	Count   int
	Points  []int
}

// End is the first address after the request.
func (r Request) End() int { return r.Address + r.Count }

// bitFill converts a fill allowance in registers to bits: reading 16 spare
// bits costs the same wire bytes as one spare register.
const bitFill = 16

// Plan turns the points to read into block reads, as few as the rules allow:
//
//   - only points of the same table share a request; tables are planned in
//     the order coil, discrete, input, holding, and requests by address, so
//     the plan is deterministic;
//   - a request spans at most q.MaxRegistersPerRead registers (q.MaxBitsPerRead
//     bits), each capped at the spec limit (125 / 2000);
//   - a request may read across unused addresses between points, at most
//     q.MaxFill registers (16×MaxFill bits) per gap;
//   - a multi-register value is never split; overlapping and duplicate points
//     share a request;
//   - no request touches a q.Forbidden range (requests split around them);
//   - with q.OneRequestPerPoint each point gets its own request (points with
//     the identical range still share one);
//   - addresses never pass 65535 (points that would are rejected by
//     ValidateProfile).
//
// Points are assumed validated. A point larger than the per-request cap or
// overlapping a forbidden range gets a request of its own.
//
// Greedy is optimal here: scanning points by start address, the first point
// must be covered by some request starting at or before it, and nothing lies
// to its left, so starting the request exactly there covers a superset; the
// first point that does not fit (too long or gap too wide) can never share a
// request with earlier ones, and every later point that would fit is nested
// in it. TestPlanMatchesBruteForce checks this against exhaustive search.
func Plan(points []Point, q Quirks) []Request {
	type span struct{ idx, start, end int }
	byTable := map[Table][]span{}
	for i := range points {
		s, n := points[i].Span()
		byTable[points[i].Table] = append(byTable[points[i].Table], span{i, s, s + n})
	}
	var out []Request
	for _, t := range tables {
		spans := byTable[t]
		if len(spans) == 0 {
			continue
		}
		sort.Slice(spans, func(a, b int) bool {
			x, y := spans[a], spans[b]
			if x.start != y.start {
				return x.start < y.start
			}
			if x.end != y.end {
				return x.end < y.end
			}
			return x.idx < y.idx
		})
		limit, fill := capsFor(t, q)
		var cur *Request
		for _, s := range spans {
			if q.forbids(t, s.start, s.end) || s.end-s.start > limit {
				out = append(out, Request{Table: t, Address: s.start, Count: s.end - s.start, Points: []int{s.idx}})
				continue
			}
			if cur != nil && fits(cur, s.start, s.end, t, limit, fill, q) {
				cur.Points = append(cur.Points, s.idx)
				cur.Count = max(cur.End(), s.end) - cur.Address
				continue
			}
			if cur != nil {
				out = append(out, *cur)
			}
			cur = &Request{Table: t, Address: s.start, Count: s.end - s.start, Points: []int{s.idx}}
		}
		if cur != nil {
			out = append(out, *cur)
		}
	}
	for i := range out {
		slices.Sort(out[i].Points)
	}
	sort.SliceStable(out, func(a, b int) bool {
		x, y := out[a], out[b]
		if x.Table != y.Table {
			return x.Table.order() < y.Table.order()
		}
		if x.Address != y.Address {
			return x.Address < y.Address
		}
		return x.Count < y.Count
	})
	return out
}

func capsFor(t Table, q Quirks) (limit, fill int) {
	limit, specMax := q.MaxRegistersPerRead, MaxReadRegisters
	fill = max(q.MaxFill, 0)
	if t.IsBit() {
		limit, specMax = q.MaxBitsPerRead, MaxReadBits
		fill *= bitFill
	}
	if limit <= 0 || limit > specMax {
		limit = specMax
	}
	return limit, fill
}

// fits reports whether [start, end) can join request r.
func fits(r *Request, start, end int, t Table, limit, fill int, q Quirks) bool {
	if q.OneRequestPerPoint {
		return start == r.Address && end == r.End()
	}
	newEnd := max(r.End(), end)
	if newEnd-r.Address > limit {
		return false
	}
	if gap := start - r.End(); gap > fill {
		return false
	}
	return !q.forbids(t, r.Address, newEnd)
}

// MinRequests is the theoretical minimum number of block reads for points:
// the plan when gaps of any size may be read across and points may share
// requests, while still honouring the per-request cap, forbidden ranges and
// unsplittable values. Compare with len(Plan(points, q)) and with one request
// per point (docs/benchmarks.md).
func MinRequests(points []Point, q Quirks) int {
	q.MaxFill = maxAddress + 1
	q.OneRequestPerPoint = false
	return len(Plan(points, q))
}

// PlanStats summarises a plan for docs and benchmarks.
type PlanStats struct {
	Points       int // points planned
	Planned      int // requests of Plan
	OnePerPoint  int // requests with one request per point
	Minimum      int // MinRequests
	WordsPlanned int // registers (bits/16 rounded up) read by the plan
}

// Stats computes PlanStats for points under q.
func Stats(points []Point, q Quirks) PlanStats {
	plan := Plan(points, q)
	one := q
	one.OneRequestPerPoint = true
	st := PlanStats{Points: len(points), Planned: len(plan), OnePerPoint: len(Plan(points, one)),
		Minimum: MinRequests(points, q)}
	for _, r := range plan {
		if r.Table.IsBit() {
			st.WordsPlanned += (r.Count + 15) / 16
		} else {
			st.WordsPlanned += r.Count
		}
	}
	return st
}
