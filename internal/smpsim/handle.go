package smpsim

import (
	"fmt"
	"time"

	"github.com/drover-iot/drover/internal/smp"
)

// reply is a handler's outcome.
type reply struct {
	body  any           // success body (CBOR-marshalled); nil is {}
	err   *smp.Error    // error answer instead
	delay time.Duration // processing time before the answer (erase, flash write)
	reset bool          // reboot once the answer is out
	cut   bool          // reboot at once, no answer (power cut)
}

// key names a handler: group, command id and whether it is the write op.
type key struct {
	group smp.Group
	id    uint8
	write bool
}

// handler runs with d.mu held; it changes state and counters directly.
type handler func(d *Device, body []byte) reply

// handlers is the device's command table; what is not here answers
// ENOTSUP, as Zephyr does for an unregistered group or command.
var handlers = map[key]handler{
	{smp.GroupOS, smp.OSEcho, false}:           (*Device).osEcho,
	{smp.GroupOS, smp.OSEcho, true}:            (*Device).osEcho,
	{smp.GroupOS, smp.OSReset, true}:           (*Device).osReset,
	{smp.GroupOS, smp.OSParams, false}:         (*Device).osParams,
	{smp.GroupOS, smp.OSInfo, false}:           (*Device).osInfo,
	{smp.GroupOS, smp.OSDateTime, false}:       (*Device).osDateTimeGet,
	{smp.GroupOS, smp.OSDateTime, true}:        (*Device).osDateTimeSet,
	{smp.GroupOS, smp.OSBootloaderInfo, false}: (*Device).osBootloaderInfo,

	{smp.GroupImage, smp.ImageState, false}:    (*Device).imageStateRead,
	{smp.GroupImage, smp.ImageState, true}:     (*Device).imageStateWrite,
	{smp.GroupImage, smp.ImageUpload, true}:    (*Device).imageUpload,
	{smp.GroupImage, smp.ImageErase, true}:     (*Device).imageErase,
	{smp.GroupImage, smp.ImageSlotInfo, false}: (*Device).imageSlotInfo,

	{smp.GroupStat, smp.StatList, false}: (*Device).statList,
	{smp.GroupStat, smp.StatRead, false}: (*Device).statRead,

	{smp.GroupSettings, smp.SettingsReadWrite, false}: (*Device).settingsRead,
	{smp.GroupSettings, smp.SettingsReadWrite, true}:  (*Device).settingsWrite,
	{smp.GroupSettings, smp.SettingsDelete, true}:     (*Device).settingsDelete,
	{smp.GroupSettings, smp.SettingsCommit, true}:     (*Device).settingsCommit,
	{smp.GroupSettings, smp.SettingsLoadSave, false}:  (*Device).settingsLoad,
	{smp.GroupSettings, smp.SettingsLoadSave, true}:   (*Device).settingsSave,

	{smp.GroupZephyrBasic, smp.ZephyrEraseStorage, true}: (*Device).eraseStorage,
}

// answer handles one request packet and returns the answer packet. ok is
// false for a packet the device ignores (not a request, bad header).
func (d *Device) answer(pkt []byte) (rsp []byte, rep reply, ok bool) {
	p, err := smp.ParsePacket(pkt)
	if err != nil || p.Op.IsResponse() || p.Op > smp.OpWriteRsp {
		d.count(func(c *Counters) { c.Ignored++ })
		d.log.Debug("smpsim packet ignored", "error", err)
		return nil, reply{}, false
	}
	d.count(func(c *Counters) { c.Requests++ })
	ver := p.Version
	switch d.cfg.Version {
	case V1:
		ver = smp.Version1 // no version field: answers in v1
	case V1Strict:
		if p.Version > smp.Version1 {
			ver = smp.Version1
			rep.err = &smp.Error{Group: smp.GroupLayer, RC: smp.EUnsupportedNew, Reason: "smp version 2 not supported"}
		}
	case V2:
		if p.Version > smp.Version2 {
			ver = smp.Version2
			rep.err = &smp.Error{Group: smp.GroupLayer, RC: smp.EUnsupportedNew, Reason: fmt.Sprintf("smp version %d not supported", p.Version+1)}
		}
	}
	if rep.err == nil {
		h, found := handlers[key{p.Group, p.ID, p.Op == smp.OpWrite}]
		if !found {
			rep.err = &smp.Error{Group: smp.GroupLayer, RC: smp.ENOTSUP,
				Reason: fmt.Sprintf("no %s command %d for op %s", p.Group, p.ID, p.Op)}
		} else {
			d.mu.Lock()
			rep = h(d, p.Body)
			d.bumpLocked()
			d.mu.Unlock()
		}
	}
	if rep.cut {
		return nil, rep, true
	}
	body := d.encodeBody(ver, rep)
	if smp.HeaderSize+len(body) > smp.MaxPacketFor(d.cfg.BufSize) {
		rep.err = &smp.Error{Group: smp.GroupLayer, RC: smp.EMSGSIZE, Reason: "response too large"}
		body = d.encodeBody(ver, rep)
	}
	if rep.err != nil {
		d.count(func(c *Counters) { c.Errors++ })
	}
	out, err := smp.Packet{Header: smp.Header{Op: p.Op.Response(), Version: ver, Group: p.Group, Seq: p.Seq, ID: p.ID}, Body: body}.Marshal()
	if err != nil {
		d.log.Warn("smpsim marshal answer", "error", err)
		return nil, rep, false
	}
	return out, rep, true
}

// encodeBody makes the CBOR body of an answer in the protocol version
// of the answer: v2 group errors as {"err": ...}, v1 ones translated to
// a legacy rc.
func (d *Device) encodeBody(ver uint8, rep reply) []byte {
	if e := rep.err; e != nil {
		if d.cfg.TerseErrors {
			c := *e
			c.Reason = ""
			e = &c
		}
		if ver < smp.Version2 && e.Group != smp.GroupLayer {
			e = &smp.Error{Group: smp.GroupLayer, RC: legacyRC(e), Reason: e.Reason}
		}
		return smp.ErrorBody(ver, e)
	}
	var v any = rep.body
	if v == nil {
		v = map[string]any{}
	}
	b, err := smp.Marshal(v)
	if err == nil && d.cfg.LegacyRC {
		var m map[string]any
		if err = smp.Unmarshal(b, &m); err == nil {
			m["rc"] = 0
			b, err = smp.Marshal(m)
		}
	}
	if err != nil {
		return smp.ErrorBody(smp.Version1, &smp.Error{Group: smp.GroupLayer, RC: smp.EUNKNOWN, Reason: err.Error()})
	}
	return b
}

// Group error codes of the groups beyond image (Zephyr's *_mgmt_err_code_t
// enums; UNCONFIRMED beyond the first few values).
const (
	osErrInvalidFormat  smp.RC = 2
	osErrNoAnswer       smp.RC = 3
	statErrInvalidGroup smp.RC = 2
	statErrInvalidName  smp.RC = 3
	setErrKeyTooLong    smp.RC = 2
	setErrKeyNotFound   smp.RC = 3
)

// legacyRC is the rc a server translating for an original-protocol client
// sends for a group error.
func legacyRC(e *smp.Error) smp.RC {
	switch e.Group {
	case smp.GroupImage:
		return smp.LegacyRC(e)
	case smp.GroupOS:
		switch e.RC {
		case osErrInvalidFormat:
			return smp.EINVAL
		case osErrNoAnswer:
			return smp.ENOENT
		}
	case smp.GroupStat:
		return smp.ENOENT
	case smp.GroupSettings:
		switch e.RC {
		case setErrKeyTooLong:
			return smp.EINVAL
		case setErrKeyNotFound:
			return smp.ENOENT
		}
	}
	return smp.EUNKNOWN
}

// decode reads a request body into v; an empty body is an empty map.
func decode(body []byte, v any) *smp.Error {
	if len(body) == 0 {
		return nil
	}
	if err := smp.Unmarshal(body, v); err != nil {
		return &smp.Error{Group: smp.GroupLayer, RC: smp.EINVAL, Reason: "bad request body"}
	}
	return nil
}

func fail(g smp.Group, rc smp.RC, format string, a ...any) reply {
	return reply{err: &smp.Error{Group: g, RC: rc, Reason: fmt.Sprintf(format, a...)}}
}

func layer(rc smp.RC, format string, a ...any) reply {
	return fail(smp.GroupLayer, rc, format, a...)
}
