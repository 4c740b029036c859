package modbus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// responder is a minimal RTU slave for transport tests and the bench: it
// answers FC 1-6, 15, 16 for any unit with a fixed pattern (register a reads
// as a, coils alternate), optionally paced like a real line (the reply's last
// byte arrives when request and reply would have crossed the wire, plus the
// t3.5 before the reply). fault may rewrite or split replies.
type responder struct {
	port     serialIO
	charTime time.Duration // 0: answer at once
	gap      time.Duration
	// fault gets the request number, request and reply; it returns the chunks
	// to write (nil = stay silent) and a pause before each chunk.
	fault func(n int, req, resp []byte) (chunks [][]byte, pause time.Duration)

	mu       sync.Mutex
	requests int
}

// startResponder serves on the pty path until the test ends.
func startResponder(t testing.TB, path string, baud int, paced bool, fault func(int, []byte, []byte) ([][]byte, time.Duration)) *responder {
	t.Helper()
	b := &Bus{Mode: ModeRTU, Port: path, Baud: baud, DataBits: 8, Parity: ParityEven, StopBits: 1}
	p, err := openTarm(b)
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{port: p, fault: fault}
	if paced {
		r.charTime, r.gap = b.charTime(), b.interFrameGap()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done // serve notices within one read slice
		_ = p.Close()
	})
	return r
}

func (r *responder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func (r *responder) serve(ctx context.Context) {
	for ctx.Err() == nil {
		req, start, err := r.readRequest(ctx)
		if err != nil || req == nil {
			continue
		}
		r.mu.Lock()
		r.requests++
		n := r.requests
		r.mu.Unlock()
		resp := reply(req)
		chunks, pause := [][]byte{resp}, time.Duration(0)
		if r.fault != nil {
			chunks, pause = r.fault(n, req, resp)
		}
		if r.charTime > 0 {
			wire := time.Duration(len(req)+len(resp))*r.charTime + r.gap
			_ = sleepUntil(ctx, start.Add(wire))
		}
		for _, c := range chunks {
			if pause > 0 {
				_ = sleepUntil(ctx, time.Now().Add(pause))
			}
			_, _ = r.port.Write(c)
		}
	}
}

// readRequest reads one request frame; nil when the line stayed quiet.
func (r *responder) readRequest(ctx context.Context) ([]byte, time.Time, error) {
	var buf [rtuMaxADU]byte
	var start time.Time
	got, need := 0, 2
	for got < need {
		if ctx.Err() != nil {
			return nil, start, ctx.Err()
		}
		n, err := r.port.Read(buf[got:need])
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, start, err
		}
		if n == 0 {
			if got == 0 {
				return nil, start, nil
			}
			continue
		}
		if got == 0 {
			start = time.Now()
		}
		got += n
		switch fc := buf[1]; {
		case got < 2:
		case fc == fcWriteMultipleCoils || fc == fcWriteMultipleRegs:
			need = 7
			if got >= 7 {
				need = 9 + int(buf[6])
			}
		default:
			need = 8
		}
	}
	if checkCRC(buf[:got]) != nil {
		return nil, start, nil
	}
	return append([]byte(nil), buf[:got]...), start, nil
}

// reply builds the RTU response to req.
func reply(req []byte) []byte {
	unit, fc := req[0], req[1]
	addr, qty := int(binary.BigEndian.Uint16(req[2:])), int(binary.BigEndian.Uint16(req[4:]))
	out := []byte{unit, fc}
	switch fc {
	case fcReadCoils, fcReadDiscrete:
		data := make([]byte, (qty+7)/8)
		for i := range qty {
			if (addr+i)%2 == 0 {
				data[i/8] |= 1 << (i % 8)
			}
		}
		out = append(append(out, byte(len(data))), data...)
	case fcReadHolding, fcReadInput:
		out = append(out, byte(2*qty))
		for i := range qty {
			out = binary.BigEndian.AppendUint16(out, uint16(addr+i))
		}
	case fcWriteSingleCoil, fcWriteSingleReg, fcWriteMultipleCoils, fcWriteMultipleRegs:
		out = append(out, req[2:6]...)
	default:
		out = []byte{unit, fc | 0x80, byte(ExIllegalFunction)}
	}
	return binary.LittleEndian.AppendUint16(out, crc16(out))
}

// rtuDriver opens an RTU bus on path with one device (unit 1) using profile.
func rtuDriver(t *testing.T, path string, baud int, busExtra, profile string) *Driver {
	t.Helper()
	d := New(Options{})
	bus := `{"mode": "rtu", "port": "` + path + `", "baud": ` + strconv.Itoa(baud) + busExtra + `}`
	openTestBus(t, d, "b", bus)
	attachJSON(t, d, "dev", 1, profile)
	return d
}

func attachJSON(t *testing.T, d *Driver, id string, unit int, profile string) {
	t.Helper()
	err := d.Attach(testContext(t), plugins.DeviceConfig{ID: id, Bus: "b", Address: unit, Profile: json.RawMessage(profile)})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
}
