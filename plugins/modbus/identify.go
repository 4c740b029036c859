package modbus

import (
	"fmt"

	gb "github.com/goburrow/modbus"
)

// Read Device Identification (FC 43 / MEI 14; Modbus Application Protocol
// V1.1b3, 6.21).

// Device identification read codes.
const (
	devIDBasic   = 0x01 // objects 0x00..0x02
	devIDRegular = 0x02 // objects 0x00..0x06 (0x03..0x06 optional)
)

// Object ids of the basic and regular categories.
const (
	objVendorName          = 0x00
	objProductCode         = 0x01
	objMajorMinorRevision  = 0x02
	objVendorURL           = 0x03
	objProductName         = 0x04
	objModelName           = 0x05
	objUserApplicationName = 0x06
)

// objectNames are the keys used in Identity.Extra for regular objects.
var objectNames = map[byte]string{
	objVendorName: "vendor_name", objProductCode: "product_code", objMajorMinorRevision: "revision",
	objVendorURL: "vendor_url", objProductName: "product_name", objModelName: "model_name",
	objUserApplicationName: "user_application_name",
}

// maxDevIDPages bounds "more follows" paging against a looping device.
const maxDevIDPages = 16

// deviceIDRequest builds the PDU asking for the objects of code from object id.
func deviceIDRequest(code, from byte) *gb.ProtocolDataUnit {
	return &gb.ProtocolDataUnit{FunctionCode: fcEncapsulated, Data: []byte{meiDeviceID, code, from}}
}

// deviceIDPage is one decoded FC 43/14 response.
type deviceIDPage struct {
	Code        byte
	Conformity  byte
	MoreFollows bool
	NextID      byte
	Objects     map[byte]string
}

// parseDeviceID decodes the data of an FC 43/14 response PDU (after the
// function code): MEI, code, conformity, more follows, next id, count, then
// count × {id, length, value}.
func parseDeviceID(data []byte) (deviceIDPage, error) {
	var pg deviceIDPage
	if len(data) < 6 {
		return pg, fmt.Errorf("%w: device identification reply of %d bytes", ErrBadFrame, len(data))
	}
	if data[0] != meiDeviceID {
		return pg, fmt.Errorf("%w: MEI type %02X, want 0E", ErrBadFrame, data[0])
	}
	pg.Code, pg.Conformity, pg.NextID = data[1], data[2], data[4]
	switch data[3] {
	case 0x00:
	case 0xFF:
		pg.MoreFollows = true
	default:
		return pg, fmt.Errorf("%w: more-follows byte %02X", ErrBadFrame, data[3])
	}
	n := int(data[5])
	pg.Objects = make(map[byte]string, n)
	pos := 6
	for i := range n {
		if pos+2 > len(data) {
			return pg, fmt.Errorf("%w: object %d of %d cut short", ErrBadFrame, i+1, n)
		}
		id, l := data[pos], int(data[pos+1])
		if pos+2+l > len(data) {
			return pg, fmt.Errorf("%w: object %02X of %d bytes cut short", ErrBadFrame, id, l)
		}
		pg.Objects[id] = string(data[pos+2 : pos+2+l])
		pos += 2 + l
	}
	if pos != len(data) {
		return pg, fmt.Errorf("%w: %d bytes after the last object", ErrBadFrame, len(data)-pos)
	}
	return pg, nil
}
