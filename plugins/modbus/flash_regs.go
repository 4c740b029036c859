package modbus

import (
	"context"
	"encoding/binary"
)

// Register access of the firmware transfer: every register is a holding
// register, uint32 values are two registers, high word first.

func readU16(ctx context.Context, c *client, addr int) (uint16, error) {
	data, err := c.readBlock(ctx, Request{Table: TableHolding, Address: addr, Count: 1})
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(data), nil
}

func readU32(ctx context.Context, c *client, addr int) (uint32, error) {
	data, err := c.readBlock(ctx, Request{Table: TableHolding, Address: addr, Count: 2})
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(data), nil
}

func writeU32(ctx context.Context, c *client, addr int, v uint32) error {
	return c.write(ctx, writeOp{table: TableHolding, start: addr, count: 2, data: binary.BigEndian.AppendUint32(nil, v)})
}

// writeBlock writes one block: its offset in the image, then the data,
// padded with a zero byte to whole registers (the device knows the image
// size and drops the padding). The offset makes a resent block harmless:
// the device stores bytes it already holds again, or ignores them.
func writeBlock(ctx context.Context, c *client, f *FirmwareSpec, off uint32, data []byte) error {
	buf := make([]byte, 0, 2*blockHeader+len(data)+1)
	buf = binary.BigEndian.AppendUint32(buf, off)
	buf = append(buf, data...)
	if len(data)%2 == 1 {
		buf = append(buf, 0)
	}
	return c.write(ctx, writeOp{table: TableHolding, start: f.BlockAddress, count: len(buf) / 2, data: buf})
}
