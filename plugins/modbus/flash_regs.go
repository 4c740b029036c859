package modbus

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	gb "github.com/goburrow/modbus"
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

// writeBlock writes one block of the image at byte offset off, by the
// profile's transfer.
func writeBlock(ctx context.Context, c *client, f *FirmwareSpec, off uint32, data []byte) error {
	if f.Transfer == TransferFileRecords {
		return writeFileRecord(ctx, c, f, off, data)
	}
	return writeWindow(ctx, c, f, off, data)
}

// writeWindow writes one block into the window: its offset, then the data,
// padded with a zero byte to whole registers (the device knows the image
// size and drops the padding). The offset makes a resent block harmless:
// the device stores bytes it already holds again, or ignores them.
func writeWindow(ctx context.Context, c *client, f *FirmwareSpec, off uint32, data []byte) error {
	buf := make([]byte, 0, 2*blockHeader+len(data)+1)
	buf = binary.BigEndian.AppendUint32(buf, off)
	buf = append(buf, data...)
	if len(data)%2 == 1 {
		buf = append(buf, 0)
	}
	return c.write(ctx, writeOp{table: TableHolding, start: f.BlockAddress, count: len(buf) / 2, data: buf})
}

// fileRecordRef is FC 21's reference type, the only one defined [V1.1b3 6.15].
const fileRecordRef = 6

// fileRecordAt maps byte offset off (even) of the image to its file and
// record: image register off/2 is record (off/2) mod records of file
// first + (off/2) div records.
func fileRecordAt(f *FirmwareSpec, off uint32) (file, record int) {
	reg := int(off / 2)
	return f.File + reg/f.FileRecords, reg % f.FileRecords
}

// writeFileRecord writes data (within one file, from an even offset) with
// one FC 21 sub-request; the answer must echo the request.
func writeFileRecord(ctx context.Context, c *client, f *FirmwareSpec, off uint32, data []byte) error {
	file, rec := fileRecordAt(f, off)
	n := (len(data) + 1) / 2
	pdu := make([]byte, 0, 8+2*n)
	pdu = append(pdu, byte(7+2*n), fileRecordRef)
	pdu = binary.BigEndian.AppendUint16(pdu, uint16(file))
	pdu = binary.BigEndian.AppendUint16(pdu, uint16(rec))
	pdu = binary.BigEndian.AppendUint16(pdu, uint16(n))
	pdu = append(pdu, data...)
	if len(data)%2 == 1 {
		pdu = append(pdu, 0)
	}
	what := fmt.Sprintf("write file %d record %d..%d", file, rec, rec+n-1)
	resp, err := c.raw(ctx, what, &gb.ProtocolDataUnit{FunctionCode: fcWriteFileRecord, Data: pdu})
	if err != nil {
		return err
	}
	if !bytes.Equal(resp.Data, pdu) {
		return fmt.Errorf("%s: %w: the answer does not echo the request", what, ErrBadFrame)
	}
	return nil
}
