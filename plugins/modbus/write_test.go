package modbus

import (
	"reflect"
	"testing"
)

func TestPlanWrites(t *testing.T) {
	reg := func(addr, n int) writeItem {
		return writeItem{table: TableHolding, start: addr, count: n, data: make([]byte, 2*n)}
	}
	coil := func(addr int, on bool) writeItem { return writeItem{table: TableCoil, start: addr, count: 1, bit: on} }
	maskAt := func(addr, bit int) writeItem {
		return writeItem{table: TableHolding, start: addr, count: 1, mask: true, bitNo: bit, bit: true}
	}
	type op struct {
		t        Table
		start, n int
		mask     bool
		items    []int
	}
	cases := []struct {
		name  string
		items []writeItem
		one   bool
		want  []op
	}{
		{"single register", []writeItem{reg(10, 1)}, false, []op{{TableHolding, 10, 1, false, []int{0}}}},
		{"contiguous registers coalesce in address order", []writeItem{reg(12, 2), reg(10, 2), reg(14, 1)}, false,
			[]op{{TableHolding, 10, 5, false, []int{1, 0, 2}}}},
		{"gap splits", []writeItem{reg(10, 1), reg(12, 1)}, false,
			[]op{{TableHolding, 10, 1, false, []int{0}}, {TableHolding, 12, 1, false, []int{1}}}},
		{"same address twice keeps caller order", []writeItem{reg(10, 1), reg(10, 1)}, false,
			[]op{{TableHolding, 10, 1, false, []int{0}}, {TableHolding, 10, 1, false, []int{1}}}},
		{"coils coalesce, tables apart", []writeItem{coil(1, true), reg(0, 1), coil(2, false)}, false,
			[]op{{TableCoil, 1, 2, false, []int{0, 2}}, {TableHolding, 0, 1, false, []int{1}}}},
		{"one per point", []writeItem{reg(10, 1), reg(11, 1)}, true,
			[]op{{TableHolding, 10, 1, false, []int{0}}, {TableHolding, 11, 1, false, []int{1}}}},
		{"bit in a register is its own mask write", []writeItem{reg(4, 1), maskAt(5, 3), reg(6, 1)}, false,
			[]op{{TableHolding, 4, 1, false, []int{0}}, {TableHolding, 5, 1, true, []int{1}}, {TableHolding, 6, 1, false, []int{2}}}},
		{"123 register cap", []writeItem{reg(0, 100), reg(100, 23), reg(123, 1)}, false,
			[]op{{TableHolding, 0, 123, false, []int{0, 1}}, {TableHolding, 123, 1, false, []int{2}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []op
			for _, o := range planWrites(tc.items, tc.one) {
				got = append(got, op{o.table, o.start, o.count, o.mask, o.items})
				if !o.table.IsBit() && !o.mask && len(o.data) != 2*o.count {
					t.Fatalf("op %+v has %d data bytes", o, len(o.data))
				}
				if o.table.IsBit() && len(o.bits) != o.count {
					t.Fatalf("op %+v has %d bits", o, len(o.bits))
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("planWrites = %+v, want %+v", got, tc.want)
			}
		})
	}
}
