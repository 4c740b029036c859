package modbus

import (
	"flag"
)

var update = flag.Bool("update", false, "rewrite golden files and generated fixtures under testdata/")

// pt builds a validated-looking point for planner and codec tests.
func pt(name string, t Table, addr int, typ Type) Point {
	p := Point{Name: name, Table: t, Address: addr, Type: typ, Bit: -1, Scale: 1, ByteOrder: OrderABCD}
	if t.IsBit() {
		p.Type = TypeBool
	}
	return p
}

func str(name string, t Table, addr, length int) Point {
	p := pt(name, t, addr, TypeString)
	p.Length = length
	return p
}

func bitIn(name string, t Table, addr, bit int) Point {
	p := pt(name, t, addr, TypeBool)
	p.Bit = bit
	return p
}
