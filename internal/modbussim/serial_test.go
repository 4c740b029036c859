package modbussim

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

func TestRTUOverPTY(t *testing.T) {
	ep := startSim(t, startOpts{opts: Options{Units: []byte{1, 2}}, rtu: true})
	c := openSerial(t, ep.rtu)
	tests := []struct {
		name string
		req  string // address + PDU; the CRC is added
		want string // address + PDU of the reply, "" for silence
	}{
		{"test vector", "01 03 0000 0001", "01 03 02 00DC"},
		{"unit 2 coil", "02 01 0000 0001", "02 01 01 01"},
		{"unknown unit is silent", "09 03 0000 0001", ""},
		{"exception", "02 03 0032 0001", "02 83 02"},
		{"unknown function code", "01 41 0102", "01 C1 01"},
		{"write multiple", "01 10 000A 0002 04 41C8 0000", "01 10 000A 0002"},
		{"device id", "01 2B 0E 04 00", "01 2B 0E 04 82 00 00 01 00 04 41636D65"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, norm(tt.want))
			wait := 5 * time.Second
			if len(want) == 0 {
				wait = 200 * time.Millisecond
			} else {
				want = appendCRC(want)
			}
			got := c.rtuCall(unhex(t, norm(tt.req)), max(len(want), 1), wait)
			if !bytes.Equal(got, want) {
				t.Errorf("request %s: got % X, want % X", tt.req, got, want)
			}
		})
	}
	t.Run("exact test vector bytes", func(t *testing.T) {
		if _, err := c.f.Write(unhex(t, "01 03 00 00 00 01 84 0A")); err != nil {
			t.Fatal(err)
		}
		if got := c.readFor(7, 5*time.Second); !bytes.Equal(got, appendCRC(unhex(t, "01 03 02 00 DC"))) {
			t.Errorf("got % X", got)
		}
	})
}

// TestRTUGarbage writes random bytes, partial frames and bad CRCs into the
// line; the slave never crashes or wedges and answers the next good frame.
func TestRTUGarbage(t *testing.T) {
	ep := startSim(t, startOpts{rtu: true})
	c := openSerial(t, ep.rtu)
	good := unhex(t, "01 03 0000 0001")
	want := appendCRC(unhex(t, "01 03 02 00DC"))
	rng := rand.New(rand.NewPCG(3, 4))
	cases := map[string]func() []byte{
		"random bytes": func() []byte {
			b := make([]byte, 1+rng.IntN(400))
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			return b
		},
		"partial frame":   func() []byte { return unhex(t, "01 03 00") },
		"bad crc":         func() []byte { return unhex(t, "01 03 00 00 00 01 84 0B") },
		"huge byte count": func() []byte { return unhex(t, "01 10 0000 007B FF 00 00") },
	}
	for name, gen := range cases {
		t.Run(name, func(t *testing.T) {
			for range 10 {
				if _, err := c.f.Write(gen()); err != nil {
					t.Fatal(err)
				}
				// Poll until the good frame is answered: the garbage is
				// dropped by CRC resync or after a frame gap of silence.
				deadline := time.Now().Add(5 * time.Second)
				for {
					got := c.rtuCall(good, len(want), 100*time.Millisecond)
					if i := bytes.Index(got, want); i >= 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no good answer after garbage; last read % X", got)
					}
				}
				c.readFor(1<<10, 20*time.Millisecond) // drain extra replies
			}
		})
	}
}

func TestRTUBadCRCFault(t *testing.T) {
	ep := startSim(t, startOpts{rtu: true})
	c := openSerial(t, ep.rtu)
	ep.sim.Unit(1).SetFaults(Faults{BadCRC: 1})
	got := c.rtuCall(unhex(t, "01 03 0000 0001"), 7, 5*time.Second)
	if len(got) != 7 || crcOK(got) || !bytes.Equal(got[:5], unhex(t, "01 03 02 00DC")) {
		t.Errorf("reply % X, want the right bytes with a broken CRC", got)
	}
}

func TestRTUPacing(t *testing.T) {
	const baud = 9600
	ep := startSim(t, startOpts{opts: Options{Baud: baud, Pace: true}, rtu: true})
	c := openSerial(t, ep.rtu)
	// 125 registers: 255-byte reply = 292ms at 9600 baud, plus t3.5 = 4ms.
	want := wireTime(255, 11, baud) + t35(baud)
	start := time.Now()
	got := c.rtuCall(unhex(t, "01 03 0000 007D"), 255, 5*time.Second)
	if el := time.Since(start); len(got) != 255 || el < want {
		t.Errorf("reply of %d bytes after %v, want 255 bytes after ≥ %v", len(got), el, want)
	}
}

func TestASCIIOverPTY(t *testing.T) {
	ep := startSim(t, startOpts{ascii: true})
	c := openSerial(t, ep.ascii)
	if _, err := c.f.Write([]byte("junk:0103:010300000001FB\r\n")); err != nil {
		t.Fatal(err)
	}
	want := ":01030200DC1E\r\n"
	if got := string(c.readFor(len(want), 5*time.Second)); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestServeSerialStops serves a net.Pipe end (deadline capable) and checks
// the goroutines end with ctx.
func TestServeSerialStops(t *testing.T) {
	s, _ := newPumpSim(t)
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeRTU(ctx, a) }()
	if _, err := b.Write(unhex(t, "01 03 00 00 00 01 84 0A")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Read(got); err != nil || !bytes.Equal(got, appendCRC(unhex(t, "01 03 02 00 DC"))) {
		t.Fatalf("reply % X, %v", got, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeRTU = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeRTU did not return after cancel")
	}
}

func TestRunNeedsTransport(t *testing.T) {
	s, _ := newPumpSim(t)
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run with nothing registered succeeded")
	}
	s2, _ := newPumpSim(t)
	if _, err := s2.ListenTCP("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.OpenPTY(RTU); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := New(loadPump(t), Options{Units: []byte{0}}); err == nil {
		t.Error("unit 0 accepted")
	}
}
