package smpsim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/smp"
)

// TestBadInput puts garbage, log noise, over-long lines, broken frames and
// oversized requests on the line: the device ignores or refuses each,
// counts it, and answers the next good request.
func TestBadInput(t *testing.T) {
	path, d := ServePTY(t, Config{LogInterval: -1})
	h := dial(t, path, false)
	echoFrame := h.frame(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, smp.EchoReq{D: "hi"})
	b64frame := func(payload []byte) []byte { // a start line of raw frame bytes
		return append(append([]byte{0x06, 0x09}, base64.StdEncoding.EncodeToString(payload)...), '\n')
	}
	pkt := func(p smp.Packet) []byte {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withCRC := func(p []byte, crc uint16) []byte {
		f := binary.BigEndian.AppendUint16(nil, uint16(len(p)+2))
		f = append(f, p...)
		return binary.BigEndian.AppendUint16(f, crc)
	}
	good := pkt(smp.Packet{Header: smp.Header{Op: smp.OpRead, Group: smp.GroupOS, ID: smp.OSParams}, Body: []byte{0xa0}})
	cases := []struct {
		name  string
		input []byte
		moved func(before, after Counters) bool
	}{
		{"console text", []byte("uart:~$ help\r\n"), func(b, a Counters) bool { return a.TextLines == b.TextLines+1 }},
		{"binary garbage", []byte{0xff, 0x00, 0x13, 0x37, '\n'}, func(b, a Counters) bool { return a.TextLines == b.TextLines+1 }},
		{"line too long", append(append([]byte{0x06, 0x09}, strings.Repeat("QUFB", 60)...), '\n'), func(b, a Counters) bool { return a.LinesTooLong == b.LinesTooLong+1 }},
		{"wrong crc", b64frame(withCRC(good, smp.CRC16(good)^1)), func(b, a Counters) bool { return a.FramesBad == b.FramesBad+1 }},
		{"bad base64", []byte("\x06\x09@@@@\n"), func(b, a Counters) bool { return a.FramesBad == b.FramesBad+1 }},
		{"continuation without start", []byte("\x04\x14QUFB\n"), func(b, a Counters) bool { return a.FramesBad == b.FramesBad+1 }},
		{"frame over buf_size-4", b64frame([]byte{0x01, 0x90, 0, 0, 0, 0}), func(b, a Counters) bool { return a.FramesTooBig == b.FramesTooBig+1 }},
		{"response op", b64frame(withCRC(bytes.Clone(append([]byte{0x01}, good[1:]...)), smp.CRC16(append([]byte{0x01}, good[1:]...)))), func(b, a Counters) bool { return a.Ignored == b.Ignored+1 }},
		{"header length lies", b64frame(withCRC(append(good[:3:3], 9, 0, 0, 0, 6, 0xa0), smp.CRC16(append(good[:3:3], 9, 0, 0, 0, 6, 0xa0)))), func(b, a Counters) bool { return a.Ignored == b.Ignored+1 }},
		{"echo bigger than the buffer", h.frame(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, smp.EchoReq{D: strings.Repeat("x", 500)}),
			func(b, a Counters) bool { return a.FramesTooBig == b.FramesTooBig+1 }},
		{"frame cut by a new start", append(echoFrame[:len(echoFrame)/2:len(echoFrame)/2], '\n'), func(b, a Counters) bool { return a.Lines == b.Lines+1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := d.Counters()
			h.write(c.input)
			waitCounters(t, d, "the device to notice", func(a Counters) bool { return c.moved(before, a) })
			if a := d.Counters(); a.Requests != before.Requests {
				t.Fatalf("bad input was handled as a request: %+v", a)
			}
			h.t = t
			h.echo("still here")
		})
	}
}

// TestVersionModes: how each kind of server answers v1 and v2 headers.
func TestVersionModes(t *testing.T) {
	cases := []struct {
		name    string
		mode    VersionMode
		reqVer  uint8
		wantVer uint8
		refused bool
		statErr wantErr // a group error in this exchange
	}{
		{"v2 server, v2 request", V2, smp.Version2, smp.Version2, false, wantErr{smp.GroupStat, statErrInvalidGroup}},
		{"v2 server, v1 request", V2, smp.Version1, smp.Version1, false, wantErr{smp.GroupLayer, smp.ENOENT}},
		{"old server, v2 request answered in v1", V1, smp.Version2, smp.Version1, false, wantErr{smp.GroupLayer, smp.ENOENT}},
		{"old server, v1 request", V1, smp.Version1, smp.Version1, false, wantErr{smp.GroupLayer, smp.ENOENT}},
		{"strict v1 server refuses v2", V1Strict, smp.Version2, smp.Version1, true, wantErr{smp.GroupLayer, smp.EUnsupportedNew}},
		{"strict v1 server, v1 request", V1Strict, smp.Version1, smp.Version1, false, wantErr{smp.GroupLayer, smp.ENOENT}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, _ := ServePTY(t, Config{Version: c.mode, LogInterval: -1})
			h := dial(t, path, false)
			p := h.do(smp.OpWrite, c.reqVer, smp.GroupOS, smp.OSEcho, smp.EchoReq{D: "v"})
			if p.Version != c.wantVer {
				t.Fatalf("answer version %d, want %d", p.Version, c.wantVer)
			}
			if c.refused {
				checkAnswer(t, p.Body, &wantErr{smp.GroupLayer, smp.EUnsupportedNew})
			} else {
				checkAnswer(t, p.Body, nil)
			}
			p = h.do(smp.OpRead, c.reqVer, smp.GroupStat, smp.StatRead, smp.StatReadReq{Name: "nope"})
			checkAnswer(t, p.Body, &c.statErr)
		})
	}
	t.Run("legacy rc and terse errors", func(t *testing.T) {
		path, _ := ServePTY(t, Config{LegacyRC: true, TerseErrors: true, LogInterval: -1})
		h := dial(t, path, false)
		var m map[string]any
		if err := smp.Unmarshal(h.do(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, smp.EchoReq{D: "v"}).Body, &m); err != nil || m["rc"] != uint64(0) {
			t.Fatalf("success body %v, %v: want rc 0", m, err)
		}
		p := h.do(smp.OpRead, smp.Version2, smp.GroupStat, smp.StatRead, smp.StatReadReq{Name: "nope"})
		if err := smp.Unmarshal(p.Body, &m); err != nil || m["rsn"] != nil {
			t.Fatalf("terse error body %v, %v", m, err)
		}
	})
}

// TestFaultInjection: lost requests and answers, corrupt answers — the host
// sends again and gets through; the budget is used up.
func TestFaultInjection(t *testing.T) {
	cases := []struct {
		name   string
		faults Faults
		count  func(c Counters) bool
	}{
		{"request lost", Faults{DropRequests: 1}, func(c Counters) bool { return c.FaultDrops == 1 && c.Requests == 1 }},
		{"answer lost", Faults{DropResponses: 1}, func(c Counters) bool { return c.FaultDrops == 1 && c.Requests == 2 }},
		{"answer corrupt", Faults{CorruptResponses: 1}, func(c Counters) bool { return c.FaultCorrupts == 1 && c.Requests == 2 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, d := ServePTY(t, Config{LogInterval: -1})
			h := dial(t, path, false)
			d.SetFaults(c.faults)
			h.write(h.frame(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, smp.EchoReq{D: "lost"}))
			waitCounters(t, d, "the fault", func(c Counters) bool { return c.FaultDrops+c.FaultCorrupts == 1 })
			if p, ok := h.await(50 * time.Millisecond); ok {
				t.Fatalf("an answer came through the fault: %+v", p)
			}
			h.echo("again")
			if cnt := d.Counters(); !c.count(cnt) {
				t.Fatalf("counters %+v", cnt)
			}
		})
	}
}

// TestLinePool: lines that arrive while both line buffers wait to be
// decoded are dropped, as on Zephyr; a host that paces its lines loses none.
func TestLinePool(t *testing.T) {
	cfg := Config{LineDecode: 20 * time.Millisecond, LogInterval: -1}
	req := smp.EchoReq{D: strings.Repeat("p", 250)} // a 4-line frame
	t.Run("burst loses lines", func(t *testing.T) {
		path, d := ServePTY(t, cfg)
		h := dial(t, path, false)
		wire := h.frame(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, req)
		n := bytes.Count(wire, []byte{'\n'})
		if n < 3 {
			t.Fatalf("frame of %d lines, want at least 3", n)
		}
		h.write(wire)
		waitCounters(t, d, "dropped lines", func(c Counters) bool { return c.LinesDropped >= 1 && c.Lines == n })
		if c := d.Counters(); c.Requests != 0 {
			t.Fatalf("a frame with dropped lines was handled: %+v", c)
		}
	})
	t.Run("paced lines all arrive", func(t *testing.T) {
		path, d := ServePTY(t, cfg)
		h := dial(t, path, false)
		wire := h.frame(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, req)
		lines := bytes.SplitAfter(wire, []byte{'\n'})
		for _, l := range lines {
			if len(l) == 0 {
				continue
			}
			h.write(l)
			// Pacing is the behaviour under test: a host that leaves the
			// device its decode time per line (as a real host spaces
			// lines by time; nothing on the line tells it more).
			time.Sleep(2 * cfg.LineDecode)
		}
		p, ok := h.await(10 * time.Second)
		if !ok {
			t.Fatal("no answer to a paced frame")
		}
		checkAnswer(t, p.Body, nil)
		if c := d.Counters(); c.LinesDropped != 0 {
			t.Fatalf("counters %+v", c)
		}
	})
}

// TestBaudPacing: at 9600 baud a request and its answer take their wire
// time through the pty.
func TestBaudPacing(t *testing.T) {
	path, _ := ServePTY(t, Config{Baud: 9600, LogInterval: -1})
	h := dial(t, path, false)
	req := smp.EchoReq{D: strings.Repeat("w", 200)}
	wire := h.frame(smp.OpWrite, smp.Version2, smp.GroupOS, smp.OSEcho, req)
	start := time.Now()
	h.write(wire)
	if _, ok := h.await(10 * time.Second); !ok {
		t.Fatal("no answer")
	}
	// Both directions: about the same number of bytes each way.
	min := 2 * time.Duration(len(wire)) * time.Second * 10 / 9600 * 9 / 10
	if took := time.Since(start); took < min {
		t.Fatalf("round trip of %d+%d bytes at 9600 baud took %v, want at least %v", len(wire), len(wire), took, min)
	}
}

// TestRawTransport: bare packets; garbage is flushed after the input
// timeout and the device answers again.
func TestRawTransport(t *testing.T) {
	path, d := ServePTY(t, Config{Transport: Raw, RawTimeout: 20 * time.Millisecond})
	h := dial(t, path, true)
	h.echo("raw")
	h.write([]byte{0xe0, 1, 2, 3, 4, 5, 6, 7, 8}) // reserved bits set
	waitCounters(t, d, "bad header", func(c Counters) bool { return c.FramesBad == 1 })
	// The input timeout needs silence on the line: that is the stimulus here.
	time.Sleep(60 * time.Millisecond)
	h.echo("raw again")
	big := smp.AppendHeader(nil, smp.Header{Op: smp.OpWrite, Length: 1000})
	h.write(append(big, make([]byte, 1000)...))
	waitCounters(t, d, "oversized packet", func(c Counters) bool { return c.FramesTooBig == 1 })
	h.echo("raw still")
	if c := d.Counters(); c.LogLines != 0 || c.Requests != 3 {
		t.Fatalf("counters %+v", c)
	}
}

// TestLogLines: the application logs on the UART between answers; a host
// skips the text.
func TestLogLines(t *testing.T) {
	path, d := ServePTY(t, Config{LogInterval: 5 * time.Millisecond, InterleaveLogs: true})
	h := dial(t, path, false)
	waitCounters(t, d, "log lines", func(c Counters) bool { return c.LogLines >= 3 })
	for range 5 {
		h.echo(strings.Repeat("l", 200))
	}
	select {
	case l := <-h.text:
		if !strings.Contains(l, "<inf>") && !strings.Contains(l, "Booting") && !strings.Contains(l, "I: ") {
			t.Fatalf("text line %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no text on the line")
	}
}
