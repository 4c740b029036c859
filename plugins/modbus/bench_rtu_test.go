package modbus

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	gb "github.com/goburrow/modbus"
)

// wireTime is the physical lower bound of running plan on an RTU line: per
// request, 8 request bytes plus the response bytes at charTime each, and two
// t3.5 gaps (before the reply, before the next request), no device latency
// (shared/notes/modbus.md, B4).
func wireTime(plan []Request, b *Bus) time.Duration {
	var total time.Duration
	for _, r := range plan {
		resp := 5 + wantBytes(r)
		total += time.Duration(8+resp)*b.charTime() + 2*b.interFrameGap()
	}
	return total
}

// benchProfiles are the poll cycles measured: the 200-point fixture (19
// block reads, 831 registers) and ten single registers read one by one (the
// worst case for per-transaction overhead).
func benchProfiles(b *testing.B) map[string]*Profile {
	single := `{"name": "single", "quirks": {"one_request_per_point": true}, "points": [`
	for i := range 10 {
		if i > 0 {
			single += ","
		}
		single += fmt.Sprintf(`{"name": "r%d", "table": "holding", "address": %d, "type": "uint16"}`, i, i)
	}
	p, errs := ParseProfile(json.RawMessage(single + "]}"))
	if errs != nil {
		b.Fatal(errs)
	}
	return map[string]*Profile{"profile200": loadFixture200(b), "single10": p}
}

// BenchmarkRTUPollCycle measures one poll cycle (Read of every point) over
// a socat pty pair against (a) an in-test Go responder that paces replies
// like a real 8E1 line at the given baud, with Drover's transport and with
// goburrow's own RTU transport, and (b) pymodbus (unpaced: a pty has no baud
// rate, so its %wire only shows whether pymodbus keeps up). %wire is the
// wire-time limit over the measured cycle.
func BenchmarkRTUPollCycle(b *testing.B) {
	for name, prof := range benchProfiles(b) {
		for _, baud := range []int{19200, 115200} {
			bus := &Bus{Mode: ModeRTU, Baud: baud, DataBits: 8, Parity: ParityEven, StopBits: 1}
			plan := Plan(prof.Points, prof.Quirks)
			limit := wireTime(plan, bus)
			report := func(b *testing.B, start time.Time) {
				per := time.Since(start) / time.Duration(b.N)
				b.ReportMetric(float64(per.Microseconds())/1000, "ms/cycle")
				b.ReportMetric(float64(limit.Microseconds())/1000, "wire-ms")
				b.ReportMetric(100*float64(limit)/float64(per), "%wire")
				b.ReportMetric(0, "ns/op")
			}
			b.Run(fmt.Sprintf("%s/responder=go/transport=drover/baud=%d", name, baud), func(b *testing.B) {
				srv, cli := ptyPair(b)
				startResponder(b, srv, baud, true, nil)
				d := benchDriver(b, cli, baud, prof)
				ctx := testContext(b)
				if _, err := d.Read(ctx, "dev", nil); err != nil { // warm up
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					vals, err := d.Read(ctx, "dev", nil)
					if err != nil || vals[0].Quality != 0 {
						b.Fatalf("read: %v %+v", err, vals[0])
					}
				}
				report(b, start)
			})
			b.Run(fmt.Sprintf("%s/responder=go/transport=goburrow/baud=%d", name, baud), func(b *testing.B) {
				srv, cli := ptyPair(b)
				startResponder(b, srv, baud, true, nil)
				h := gb.NewRTUClientHandler(cli)
				h.BaudRate, h.DataBits, h.Parity, h.StopBits, h.SlaveId, h.Timeout = baud, 8, "E", 1, 1, time.Second
				if err := h.Connect(); err != nil {
					b.Fatal(err)
				}
				defer h.Close()
				c := gb.NewClient(h)
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					for _, r := range plan {
						if _, err := goburrowRead(c, r); err != nil {
							b.Fatal(err)
						}
					}
				}
				report(b, start)
			})
			b.Run(fmt.Sprintf("%s/responder=pymodbus/transport=drover/baud=%d", name, baud), func(b *testing.B) {
				if name == "profile200" {
					b.Skip("the pymodbus datastore covers only 0..999")
				}
				srv, cli := ptyPair(b)
				startPymodbus(b, "rtu", srv, fmt.Sprint(baud))
				d := benchDriver(b, cli, baud, prof)
				ctx := testContext(b)
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					if _, err := d.Read(ctx, "dev", nil); err != nil {
						b.Fatal(err)
					}
				}
				report(b, start)
			})
		}
	}
}

func goburrowRead(c gb.Client, r Request) ([]byte, error) {
	a, n := uint16(r.Address), uint16(r.Count)
	switch r.Table {
	case TableCoil:
		return c.ReadCoils(a, n)
	case TableDiscrete:
		return c.ReadDiscreteInputs(a, n)
	case TableInput:
		return c.ReadInputRegisters(a, n)
	}
	return c.ReadHoldingRegisters(a, n)
}

func benchDriver(b *testing.B, path string, baud int, prof *Profile) *Driver {
	d := New(Options{})
	raw := fmt.Sprintf(`{"mode": "rtu", "port": %q, "baud": %d, "timeout": "2s", "retries": 0}`, path, baud)
	bus, errs := ParseBus(json.RawMessage(raw))
	if errs != nil {
		b.Fatal(errs)
	}
	sl := newSerialLink(bus, openTarm, d.log)
	e := &busEntry{name: "b", cfg: bus, link: sl}
	d.buses["b"] = e
	b.Cleanup(func() { _ = sl.close(testContext(b)) })
	d.devices["dev"] = &device{id: "dev", bus: e, unit: 1, profile: prof,
		client: newClient(sl, 1, bus, prof.Quirks.DelayBetweenRequests, d.log)}
	return d
}
