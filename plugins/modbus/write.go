package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	gb "github.com/goburrow/modbus"

	"github.com/drover-iot/drover/plugins"
)

// writeItem is one encoded point write.
type writeItem struct {
	idx   int // index in the caller's values
	table Table
	start int
	count int    // registers or bits
	data  []byte // registers, wire order (register tables)
	bit   bool   // value (coils, and bits in registers)
	mask  bool   // a bool in a register: FC 22 mask write of one bit
	bitNo int
}

// writeOp is one write transaction.
type writeOp struct {
	table Table
	start int
	count int
	data  []byte // registers, wire order
	bits  []bool // coils
	mask  bool
	bitNo int
	items []int // indexes into the items slice
}

// planWrites coalesces contiguous writes of the same table into
// write-multiple requests (at most 123 registers / 1968 coils, FC 16/15);
// a lone register or coil uses FC 6/5, a bit inside a register FC 22. With
// onePerPoint nothing is coalesced. Writes to the same address keep the
// caller's order. Pure.
func planWrites(items []writeItem, onePerPoint bool) []writeOp {
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		x, y := items[order[a]], items[order[b]]
		if x.table != y.table {
			return x.table.order() < y.table.order()
		}
		return x.start < y.start
	})
	var ops []writeOp
	for _, i := range order {
		it := items[i]
		if n := len(ops); n > 0 && !onePerPoint && !it.mask {
			op := &ops[n-1]
			limit := MaxWriteRegisters
			if it.table.IsBit() {
				limit = MaxWriteBits
			}
			if !op.mask && op.table == it.table && op.start+op.count == it.start && op.count+it.count <= limit {
				op.count += it.count
				op.data = append(op.data, it.data...)
				if it.table.IsBit() {
					op.bits = append(op.bits, it.bit)
				}
				op.items = append(op.items, i)
				continue
			}
		}
		op := writeOp{table: it.table, start: it.start, count: it.count, data: append([]byte(nil), it.data...),
			mask: it.mask, bitNo: it.bitNo, items: []int{i}}
		if it.table.IsBit() || it.mask {
			op.bits = []bool{it.bit}
		}
		ops = append(ops, op)
	}
	return ops
}

// Write implements plugins.Plugin. Every value is checked and encoded before
// anything is sent: an unknown point is CodeNotFound, a read-only point or a
// bad value CodeInvalid, and nothing is written. Then the writes run (see
// planWrites); a failed transaction fails its points only. Points whose
// profile entry has verify are read back afterwards; a mismatch fails the
// point and ReadBack shows what the device holds.
func (d *Driver) Write(ctx context.Context, id string, values []plugins.PointWrite) ([]plugins.WriteResult, error) {
	dev, err := d.device(id)
	if err != nil {
		return nil, err
	}
	items := make([]writeItem, len(values))
	pts := make([]*Point, len(values))
	for i, w := range values {
		p, ok := dev.profile.Point(w.Point)
		if !ok {
			return nil, plugins.Errorf(plugins.CodeNotFound, "device %s has no point %q", id, w.Point)
		}
		if !p.Writable {
			return nil, plugins.Errorf(plugins.CodeInvalid, "point %s of device %s is not writable", w.Point, id)
		}
		it, err := encodeWrite(p, w.Value)
		if err != nil {
			return nil, plugins.Errorf(plugins.CodeInvalid, "write %s: %v", id, err)
		}
		it.idx, pts[i] = i, p
		items[i] = it
	}
	res := make([]plugins.WriteResult, len(values))
	for i, w := range values {
		res[i].Point = w.Point
	}
	for _, op := range planWrites(items, dev.profile.Quirks.OneRequestPerPoint) {
		err := dev.client.write(ctx, op)
		var ex *Exception
		if errors.As(err, &ex) && ex.Code == ExAcknowledge {
			err = nil // accepted; the device finishes in the background
		}
		if err != nil && ctx.Err() != nil {
			return res, asPluginError("write "+id, err)
		}
		for _, i := range op.items {
			res[i].OK = err == nil
			if err != nil {
				res[i].Error = asPluginError("write "+id, err).Error()
			}
		}
	}
	// Read-back verification of the points that ask for it.
	var check []Point
	var checkIdx []int
	for i, p := range pts {
		if p.Verify && res[i].OK {
			check = append(check, *p)
			checkIdx = append(checkIdx, i)
		}
	}
	if len(check) == 0 {
		return res, nil
	}
	got, _, err := dev.read(ctx, check, d.now)
	if err != nil {
		return res, err
	}
	for j, i := range checkIdx {
		g := got[j]
		if g.Quality != plugins.QualityGood {
			res[i].OK, res[i].Error = false, "read-back failed: "+g.Error
			continue
		}
		v := g.Value
		res[i].ReadBack = &v
		back, err := encodeWrite(pts[i], v)
		if err != nil || !sameItem(back, items[i]) {
			res[i].OK = false
			res[i].Error = fmt.Sprintf("read-back mismatch: wrote %s, device holds %s", values[i].Value.Text(), v.Text())
		}
	}
	return res, nil
}

func sameItem(a, b writeItem) bool {
	if a.table.IsBit() || a.mask {
		return a.bit == b.bit
	}
	return string(a.data) == string(b.data)
}

// encodeWrite checks and encodes one value for p.
func encodeWrite(p *Point, v plugins.Value) (writeItem, error) {
	start, n := p.Span()
	it := writeItem{table: p.Table, start: start, count: n, bitNo: p.Bit}
	if p.Table.IsBit() || p.Bit >= 0 {
		b, err := boolOf(p, v)
		if err != nil {
			return it, err
		}
		it.bit, it.mask = b, p.Bit >= 0
		return it, nil
	}
	data, err := EncodeRegisters(p, v)
	if err != nil {
		return it, err
	}
	it.data = data
	return it, nil
}

// write runs one planned write.
func (c *client) write(ctx context.Context, op writeOp) error {
	what := fmt.Sprintf("write %s %d..%d", op.table, op.start, op.start+op.count-1)
	a, n := uint16(op.start), uint16(op.count)
	return c.do(ctx, what, func(cl gb.Client) error {
		var err error
		switch {
		case op.table == TableCoil && op.count == 1:
			_, err = cl.WriteSingleCoil(a, coilValue(op.bits[0]))
		case op.table == TableCoil:
			_, err = cl.WriteMultipleCoils(a, n, packBits(op.bits))
		case op.mask:
			// FC 22: result = (current AND and) OR (or AND NOT and).
			and := ^uint16(1 << uint(op.bitNo))
			var or uint16
			if op.bits[0] {
				or = 1 << uint(op.bitNo)
			}
			_, err = cl.MaskWriteRegister(a, and, or)
		case op.count == 1:
			_, err = cl.WriteSingleRegister(a, binary.BigEndian.Uint16(op.data))
		default:
			_, err = cl.WriteMultipleRegisters(a, n, op.data)
		}
		return err
	})
}

// coilValue is FC 5's encoding of a coil state (V1.1b3, 6.5).
func coilValue(on bool) uint16 {
	if on {
		return 0xFF00
	}
	return 0x0000
}
