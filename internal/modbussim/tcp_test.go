package modbussim

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

func TestTCPServesUnits(t *testing.T) {
	ep := startSim(t, startOpts{opts: Options{Units: []byte{1, 2, 3}}})
	c := dialTCP(t, ep.tcp)
	tests := []struct {
		name string
		unit byte
		req  string
		want string
	}{
		{"unit 1 temperature", 1, "03 0000 0001", "03 02 00DC"},
		{"unit 3 coil", 3, "01 0000 0001", "01 01 01"},
		{"unknown unit is 0B", 9, "03 0000 0001", "83 0B"},
		{"unit 0 with many units is 0B", 0, "03 0000 0001", "83 0B"},
		{"unmapped", 2, "03 1000 0001", "83 02"},
		{"too many", 2, "03 0000 007E", "83 03"},
		{"illegal function", 2, "08 0000 0000", "88 01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hexs(c.mustCall(tt.unit, unhex(t, norm(tt.req)))); got != norm(tt.want) {
				t.Errorf("unit %d %s: got %s want %s", tt.unit, tt.req, got, norm(tt.want))
			}
		})
	}
}

// TestTCPGoburrowClient cross-checks with another implementation's client.
func TestTCPGoburrowClient(t *testing.T) {
	ep := startSim(t, startOpts{opts: Options{Units: []byte{5}}})
	h := modbus.NewTCPClientHandler(ep.tcp)
	h.SlaveId = 5
	h.Timeout = 5 * time.Second
	if err := h.Connect(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cl := modbus.NewClient(h)
	if b, err := cl.ReadHoldingRegisters(10, 2); err != nil || hexs(b) != "41AC0000" {
		t.Errorf("read setpoint: % X, %v", b, err)
	}
	if _, err := cl.WriteMultipleRegisters(10, 2, []byte{0x41, 0xC8, 0, 0}); err != nil {
		t.Errorf("write setpoint: %v", err)
	}
	if v, _ := ep.sim.Unit(5).Value("setpoint"); v != 25 {
		t.Errorf("setpoint after write = %v", v)
	}
	if b, err := cl.ReadCoils(0, 1); err != nil || hexs(b) != "01" {
		t.Errorf("read coil: % X, %v", b, err)
	}
	_, err := cl.ReadHoldingRegisters(300, 1)
	var me *modbus.ModbusError
	if !errors.As(err, &me) || me.ExceptionCode != 2 {
		t.Errorf("unmapped read: %v, want exception 2", err)
	}
	h.SlaveId = 6
	_, err = cl.ReadHoldingRegisters(0, 1)
	if !errors.As(err, &me) || me.ExceptionCode != 0x0B {
		t.Errorf("unknown unit: %v, want exception 0B", err)
	}
}

func TestTCPManyConnections(t *testing.T) {
	ep := startSim(t, startOpts{opts: Options{Units: []byte{1, 2, 3, 4}}})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ep.tcp)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			cl := &tcpClient{t: t, conn: c}
			for k := range 50 {
				unit := byte(1 + (i+k)%4)
				r, err := cl.call(unit, readHolding(0, 1), 5*time.Second)
				if err != nil || hexs(r) != "030200DC" {
					errs <- fmt.Errorf("conn %d req %d: %s %v", i, k, hexs(r), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for id := byte(1); id <= 4; id++ {
		if n := ep.sim.Unit(id).Requests(); n != 100 {
			t.Errorf("unit %d saw %d requests, want 100", id, n)
		}
	}
}

func TestTCPPipelined(t *testing.T) {
	ep := startSim(t, startOpts{})
	c := dialTCP(t, ep.tcp)
	var batch []byte
	for tid := range uint16(10) {
		batch = append(batch, byte(tid>>8), byte(tid), 0, 0, 0, 6, 1)
		batch = append(batch, readHolding(0, 1)...)
	}
	if _, err := c.conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 10*11)
	if _, err := io.ReadFull(c.conn, got); err != nil {
		t.Fatalf("read pipelined replies: %v", err)
	}
	for tid := range 10 {
		if r := got[tid*11:]; int(r[0])<<8|int(r[1]) != tid || hexs(r[7:11]) != "030200DC" {
			t.Errorf("reply %d = % X", tid, r[:11])
		}
	}
}

// TestTCPGarbage sends broken MBAP streams; the server drops those
// connections (or ignores the frame) and keeps serving.
func TestTCPGarbage(t *testing.T) {
	ep := startSim(t, startOpts{})
	tests := []struct {
		name      string
		send      string
		wantClose bool
	}{
		{"truncated header then close", "0001 0000", false},
		{"length zero", "0001 0000 0000 01", true},
		{"length too big", "0001 0000 0300 01", true},
		{"length lies short", "0001 0000 0001 01 03 0000 0001", true}, // PDU bytes are read as the next header
		{"protocol id not modbus", "0001 0001 0006 01 03 0000 0001", false},
		{"empty pdu", "0001 0000 0001 01", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTCP(t, ep.tcp)
			if _, err := c.conn.Write(unhex(t, norm(tt.send))); err != nil {
				t.Fatal(err)
			}
			if tt.wantClose {
				_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				// EOF or a reset (unread bytes were pending): closed either way.
				if n, err := c.conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("server kept the connection: n=%d err=%v", n, err)
				}
			} else if tt.name != "truncated header then close" {
				// Ignored: nothing comes back, the next request is answered.
				if r := c.mustCall(1, readHolding(0, 1)); hexs(r) != "030200DC" {
					t.Errorf("next request: %s", hexs(r))
				}
			}
			_ = c.conn.Close()
			fresh := dialTCP(t, ep.tcp)
			if r := fresh.mustCall(1, readHolding(0, 1)); hexs(r) != "030200DC" {
				t.Errorf("server stopped serving: %s", hexs(r))
			}
		})
	}
	t.Run("random bytes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 7))
		for range 50 {
			c, err := net.Dial("tcp", ep.tcp)
			if err != nil {
				t.Fatal(err)
			}
			junk := make([]byte, rng.IntN(600))
			for i := range junk {
				junk[i] = byte(rng.UintN(256))
			}
			_, _ = c.Write(junk)
			_ = c.Close()
		}
		if r := dialTCP(t, ep.tcp).mustCall(1, readHolding(0, 1)); hexs(r) != "030200DC" {
			t.Errorf("server stopped serving: %s", hexs(r))
		}
	})
}

// awaitAnswer polls unit, moving the injected clock by step after each
// unanswered request, until it answers; it fails once the injected clock has
// moved by more than limit. It returns the injected time that passed.
func awaitAnswer(t *testing.T, c *tcpClient, clk *fakeClock, unit byte, pdu []byte, step, limit time.Duration) time.Duration {
	t.Helper()
	start := clk.Now()
	for {
		_, err := c.call(unit, pdu, 100*time.Millisecond)
		if err == nil {
			return clk.Now().Sub(start)
		}
		if !errors.Is(err, errNoAnswer) {
			t.Fatalf("poll: %v", err)
		}
		if clk.Now().Sub(start) > limit {
			t.Fatalf("unit %d still silent after %v of injected time", unit, limit)
		}
		clk.Advance(step)
	}
}

func TestRebootSilenceAndReturn(t *testing.T) {
	ep := startSim(t, startOpts{opts: Options{Units: []byte{1, 2}}})
	u := ep.sim.Unit(1)
	c := dialTCP(t, ep.tcp)
	ep.clock.Advance(100 * time.Second)
	if r := c.mustCall(1, unhex(t, "04 0000 0002")); hexs(r) != "040400000064" /* 100 s */ {
		t.Fatalf("uptime before reboot: %s, want 100", hexs(r))
	}
	// The reboot write itself is answered, then the unit goes quiet.
	if r := c.mustCall(1, writeSingle(100, 1)); hexs(r) != hexs(writeSingle(100, 1)) {
		t.Fatalf("reboot write reply %s", hexs(r))
	}
	if u.Reboots() != 1 || u.Online() {
		t.Fatalf("after reboot write: reboots %d online %v", u.Reboots(), u.Online())
	}
	if _, err := c.call(1, readHolding(0, 1), 300*time.Millisecond); !errors.Is(err, errNoAnswer) {
		t.Fatalf("rebooting unit answered: %v", err)
	}
	if r := c.mustCall(2, readHolding(10, 1)); hexs(r) != "030241AC" {
		t.Errorf("unit 2 disturbed by unit 1's reboot: %s", hexs(r))
	}
	// Move the injected clock through the silence, in steps, until it answers.
	if back := awaitAnswer(t, c, ep.clock, 1, readHolding(0, 1), 500*time.Millisecond, 10*time.Second); back < 3*time.Second {
		t.Errorf("unit answered after %v of injected time, want the 3s reboot_silence", back)
	}
	if !u.Online() {
		t.Error("unit answers but reports offline")
	}
	if r := c.mustCall(1, unhex(t, "04 0000 0002")); hexs(r) != "040400000000" {
		t.Errorf("uptime right after return: %s, want 0", hexs(r))
	}
	ep.clock.Advance(7 * time.Second)
	if v, _ := u.Value("uptime"); v != 7 {
		t.Errorf("uptime 7s after return = %v", v)
	}
	if u.Reboots() != 1 {
		t.Errorf("Reboots = %d", u.Reboots())
	}
}

func TestFaults(t *testing.T) {
	ep := startSim(t, startOpts{opts: Options{Units: []byte{1, 2}}})
	c := dialTCP(t, ep.tcp)
	u := ep.sim.Unit(1)

	t.Run("drop", func(t *testing.T) {
		u.SetFaults(Faults{Drop: 1})
		if _, err := c.call(1, readHolding(0, 1), 200*time.Millisecond); !errors.Is(err, errNoAnswer) {
			t.Errorf("dropped unit answered: %v", err)
		}
		if r := c.mustCall(2, readHolding(0, 1)); hexs(r) != "030200DC" {
			t.Errorf("unit 2: %s", hexs(r))
		}
	})
	t.Run("drop half", func(t *testing.T) {
		u.SetFaults(Faults{Drop: 0.5})
		answered := 0
		for range 40 {
			if _, err := c.call(1, readHolding(0, 1), 150*time.Millisecond); err == nil {
				answered++
			}
		}
		if answered == 0 || answered == 40 {
			t.Errorf("answered %d of 40 with drop 0.5", answered)
		}
	})
	t.Run("forced exception", func(t *testing.T) {
		u.SetFaults(Faults{Exception: ServerDeviceBusy})
		if r := c.mustCall(1, readHolding(0, 1)); hexs(r) != "8306" {
			t.Errorf("got %s, want 8306", hexs(r))
		}
	})
	t.Run("delay", func(t *testing.T) {
		u.SetFaults(Faults{Delay: 150 * time.Millisecond})
		start := time.Now()
		c.mustCall(1, readHolding(0, 1))
		if el := time.Since(start); el < 150*time.Millisecond {
			t.Errorf("reply after %v, want ≥ 150ms", el)
		}
	})
	u.SetFaults(Faults{})
	if got := u.Faults(); got != (Faults{}) {
		t.Errorf("Faults() = %+v", got)
	}
}
