package smp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCRC16CheckValue(t *testing.T) {
	if got := CRC16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("CRC16(123456789) = %#04x, want 0x31c3", got)
	}
}

// Vectors from the notes (smp-serial.md A1), shared by encoder and decoder.
var frameVectors = []struct {
	name   string
	packet string // hex
	crc    uint16
	wire   string
}{
	{"hello world body", hex.EncodeToString([]byte("Hello, world!")), 0x7ADE, "\x06\x09AA9IZWxsbywgd29ybGQhet4=\n"},
	{"os echo v1 seq 0", "02 00 00 09 00 00 00 00 a1 61 64 65 68 65 6c 6c 6f", 0x256F, "\x06\x09ABMCAAAJAAAAAKFhZGVoZWxsbyVv\n"},
}

func TestFrameVectors(t *testing.T) {
	for _, v := range frameVectors {
		t.Run(v.name, func(t *testing.T) {
			pkt := mustHex(t, v.packet)
			if got := CRC16(pkt); got != v.crc {
				t.Fatalf("crc = %#04x, want %#04x", got, v.crc)
			}
			wire, err := AppendFrame(nil, pkt, MaxLine)
			if err != nil {
				t.Fatal(err)
			}
			if string(wire) != v.wire {
				t.Fatalf("wire = %q, want %q", wire, v.wire)
			}
			var re Reassembler
			re.MaxPacket = 64
			if len(pkt) >= HeaderSize {
				got, err := re.Line(wire)
				if err != nil || !bytes.Equal(got, pkt) {
					t.Fatalf("decode = %x, %v; want %x", got, err, pkt)
				}
			}
		})
	}
}

func TestEchoRequestBody(t *testing.T) {
	body, err := Marshal(EchoReq{D: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := Packet{Header: Header{Op: OpWrite, Group: GroupOS, ID: OSEcho}, Body: body}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "02 00 00 09 00 00 00 00 a1 61 64 65 68 65 6c 6c 6f"); !bytes.Equal(pkt, want) {
		t.Fatalf("packet = %x, want %x", pkt, want)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Op: OpWrite, Version: Version2, Flags: 0, Length: 300, Group: GroupZephyrBasic, Seq: 0xfe, ID: 7}
	b := AppendHeader(nil, h)
	if b[0] != 0x0A {
		t.Fatalf("first byte of a v2 write = %#02x, want 0x0a", b[0])
	}
	got, err := ParseHeader(b)
	if err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v; want %+v", got, err, h)
	}
	if _, err := ParseHeader(b[:5]); !errors.Is(err, ErrShort) {
		t.Fatalf("short header: %v", err)
	}
	b[0] |= 0x80
	if _, err := ParseHeader(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("reserved bits: %v", err)
	}
	if _, err := ParsePacket(append(AppendHeader(nil, Header{Length: 3}), 1, 2)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("length mismatch: %v", err)
	}
}

func bigPacket(n int) []byte {
	body := bytes.Repeat([]byte{0xA5}, n)
	pkt, _ := Packet{Header: Header{Op: OpWrite, Group: GroupImage, ID: ImageUpload, Seq: 9}, Body: body}.Marshal()
	return pkt
}

func TestMultiLineFramesAndNoise(t *testing.T) {
	for _, lineMax := range []int{MinLine, 20, 64, MaxLine, 1000} {
		for _, size := range []int{HeaderSize, 93, 354 + 30, 2040} {
			pkt := bigPacket(size - HeaderSize)
			lines, err := EncodeLines(pkt, lineMax)
			if err != nil {
				t.Fatal(err)
			}
			var wire bytes.Buffer
			wire.WriteString("boot: booting Zephyr OS\r\n")
			for i, l := range lines {
				if len(l) > lineMax {
					t.Fatalf("line %d of %d bytes > %d", i, len(l), lineMax)
				}
				if i > 0 && bytes.ContainsRune(l[:len(l)-1], '=') && i != len(lines)-1 {
					t.Fatalf("padding inside line %d", i)
				}
				wire.Write(l)
				if i == 0 {
					// Log output between the lines of a frame is skipped.
					wire.WriteString("[00:00:01.000] <inf> app: tick\n")
				}
			}
			d := NewDecoder(&wire, 4096)
			var text []string
			d.Text = func(l []byte) { text = append(text, string(l)) }
			got, err := d.ReadPacket()
			if err != nil || !bytes.Equal(got, pkt) {
				t.Fatalf("line %d size %d: got %d bytes, %v", lineMax, size, len(got), err)
			}
			if _, err := d.ReadPacket(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the frame: %v", err)
			}
			if len(text) != 2 {
				t.Fatalf("text lines = %q", text)
			}
		}
	}
}

func TestDecoderDiscardsAndResyncs(t *testing.T) {
	good := bigPacket(200)
	goodWire, _ := AppendFrame(nil, good, MaxLine)
	corrupt := bytes.Clone(goodWire)
	// Another base64 letter inside the packet's bytes: only the CRC can tell.
	if corrupt[10] == 'A' {
		corrupt[10] = 'B'
	} else {
		corrupt[10] = 'A'
	}
	lines, _ := EncodeLines(good, MaxLine)
	badLen, _ := AppendFrame(nil, bigPacket(5000), MaxLine)
	cases := []struct {
		name    string
		garbage []byte
		want    error
	}{
		{"crc", corrupt, ErrCRC},
		{"continuation without start", lines[1], ErrMalformed},
		{"interrupted frame", lines[0], ErrShort},
		{"not base64", []byte("\x06\x09!!!!\n"), ErrMalformed},
		{"not whole quanta", []byte("\x06\x09AAB\n"), ErrMalformed},
		{"announces over the bound", badLen, ErrTooLong},
		{"too short a length", []byte("\x06\x09AAMA\n"), ErrTooLong},
		{"overlong line in frame", append(append(bytes.Clone(lines[0]), bytes.Repeat([]byte{'\x04', '\x14'}, 3000)...), '\n'), ErrTooLong},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wire := append(bytes.Clone(c.garbage), goodWire...)
			d := NewDecoder(bytes.NewReader(wire), 4096)
			var sawErr error
			for {
				pkt, err := d.ReadPacket()
				if err != nil {
					var fe *FrameError
					if !errors.As(err, &fe) {
						t.Fatalf("non-frame error %v (first frame error %v)", err, sawErr)
					}
					if sawErr == nil {
						sawErr = err
					}
					if pkt == nil {
						continue
					}
				}
				if !bytes.Equal(pkt, good) {
					t.Fatalf("resynced to %d bytes, want the good packet", len(pkt))
				}
				break
			}
			if !errors.Is(sawErr, c.want) {
				t.Fatalf("frame error %v, want %v", sawErr, c.want)
			}
		})
	}
}

func TestDecoderSkipsLongTextLines(t *testing.T) {
	good := bigPacket(10)
	wire := append(bytes.Repeat([]byte("x"), 10000), '\n')
	wire, _ = AppendFrame(wire, good, MaxLine)
	d := NewDecoder(bytes.NewReader(wire), 0)
	got, err := d.ReadPacket()
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("got %x, %v", got, err)
	}
	if _, err := d.ReadPacket(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

func TestRaw(t *testing.T) {
	pkt := bigPacket(100)
	r := bytes.NewReader(append(bytes.Clone(pkt), pkt...))
	for range 2 {
		got, err := ReadRaw(r, 0)
		if err != nil || !bytes.Equal(got, pkt) {
			t.Fatalf("raw: %d bytes, %v", len(got), err)
		}
	}
	if _, err := ReadRaw(bytes.NewReader(bigPacket(5000)), 1024); !errors.Is(err, ErrTooLong) {
		t.Fatalf("raw over the bound: %v", err)
	}
	if _, err := ReadRaw(bytes.NewReader(pkt[:20]), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("raw truncated: %v", err)
	}
}

func TestResponseErrorForms(t *testing.T) {
	cases := []struct {
		name  string
		body  any
		want  *Error
		isErr bool
	}{
		{"success empty", map[string]any{}, nil, false},
		{"success legacy rc 0", map[string]any{"rc": 0, "r": "x"}, nil, false},
		{"v1 rc", map[string]any{"rc": 10}, &Error{Group: GroupLayer, RC: EBUSY}, true},
		{"v1 rc with reason", map[string]any{"rc": 3, "rsn": "bad offset"}, &Error{Group: GroupLayer, RC: EINVAL, Reason: "bad offset"}, true},
		{"v2 group error", map[string]any{"err": map[string]any{"group": 1, "rc": 28}}, &Error{Group: GroupImage, RC: ImgErrImageAlreadyPending}, true},
		{"v2 group rc 0", map[string]any{"err": map[string]any{"group": 1, "rc": 0}}, nil, false},
		{"too new", map[string]any{"rc": 13}, &Error{Group: GroupLayer, RC: EUnsupportedNew}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _ := Marshal(c.body)
			err := ResponseError(b)
			if !c.isErr {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || *e != *c.want {
				t.Fatalf("err = %#v, want %#v", err, c.want)
			}
			if e.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
	if err := ResponseError([]byte{0xff, 0x00}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage body: %v", err)
	}
	if !IsVersionRefused(&Error{Group: GroupLayer, RC: EUnsupportedNew}) {
		t.Fatal("too new is a version refusal")
	}
}

func TestErrorBodyRoundTrip(t *testing.T) {
	e := &Error{Group: GroupImage, RC: ImgErrTestToActiveDenied, Reason: "active"}
	var got *Error
	if !errors.As(ResponseError(ErrorBody(Version2, e)), &got) || *got != *e {
		t.Fatalf("v2: %#v", got)
	}
	if !errors.As(ResponseError(ErrorBody(Version1, e)), &got) || got.Group != GroupLayer {
		t.Fatalf("v1 form must be a plain rc: %#v", got)
	}
	if LegacyRC(e) != EBADSTATE {
		t.Fatalf("legacy rc %v", LegacyRC(e))
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	one, l := uint32(1), uint32(4096)
	up := UploadReq{Image: &one, Len: &l, Off: 0, Sha: bytes.Repeat([]byte{1}, 32), Data: []byte("abc")}
	b, err := Marshal(up)
	if err != nil {
		t.Fatal(err)
	}
	var got UploadReq
	if err := DecodeResponse(b, &got); err != nil || *got.Len != 4096 || string(got.Data) != "abc" || got.Upgrade != nil {
		t.Fatalf("upload: %+v %v", got, err)
	}
	// A follow-on chunk leaves the first-chunk keys out.
	b, _ = Marshal(UploadReq{Off: 512, Data: []byte{1}})
	var m map[string]any
	if err := Unmarshal(b, &m); err != nil || len(m) != 2 {
		t.Fatalf("follow-on chunk keys %v", m)
	}
	// A frugal image list leaves false flags out.
	b, _ = Marshal(map[string]any{"images": []any{map[string]any{"slot": 0, "version": "1.2.3", "active": true}}})
	var st ImageStateRsp
	if err := DecodeResponse(b, &st); err != nil || len(st.Images) != 1 || !st.Images[0].Active || st.Images[0].Confirmed {
		t.Fatalf("state: %+v %v", st, err)
	}
}

func FuzzDecoder(f *testing.F) {
	for _, v := range frameVectors {
		f.Add([]byte(v.wire))
	}
	w, _ := AppendFrame([]byte("log\n"), bigPacket(300), MaxLine)
	f.Add(w)
	f.Add([]byte("\x06\x09AAB\n\x04\x14====\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data), 1024)
		for range 1000 {
			pkt, err := d.ReadPacket()
			if err != nil {
				var fe *FrameError
				if errors.As(err, &fe) {
					continue
				}
				return
			}
			if len(pkt) > 1024 {
				t.Fatalf("packet of %d bytes over the bound", len(pkt))
			}
			// What decodes re-encodes to something that decodes the same.
			again, err := AppendFrame(nil, pkt, MaxLine)
			if err != nil {
				t.Fatal(err)
			}
			var re Reassembler
			re.MaxPacket = 1024
			var got []byte
			for _, l := range bytes.SplitAfter(again, []byte("\n")) {
				if len(l) == 0 {
					continue
				}
				if p, _ := re.Line(l); p != nil {
					got = p
				}
			}
			if !bytes.Equal(got, pkt) {
				t.Fatalf("re-encoded packet differs")
			}
		}
	})
}

func FuzzResponse(f *testing.F) {
	for _, b := range []any{map[string]any{"rc": 10}, map[string]any{"err": map[string]any{"group": 1, "rc": 3}}, ImageStateRsp{Images: []ImageSlot{{Version: "1"}}}} {
		enc, _ := Marshal(b)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var st ImageStateRsp
		_ = DecodeResponse(body, &st)
		var up UploadRsp
		_ = DecodeResponse(body, &up)
		var sr StatReadRsp
		_ = DecodeResponse(body, &sr)
		_, _ = ParsePacket(body)
		_, _ = ReadRaw(bytes.NewReader(body), 512)
	})
}
