package modbussim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrUnknownPoint is returned by Unit accessors for a name the profile lacks.
var ErrUnknownPoint = errors.New("unknown point")

// Faults are misbehaviours injected into one unit's replies.
type Faults struct {
	Drop      float64       // probability in [0,1] of not answering a request; 1 = absent
	Delay     time.Duration // extra delay before every reply
	BadCRC    float64       // probability of corrupting a serial reply's CRC/LRC (TCP ignores it)
	Exception ExceptionCode // answer every request with this exception; 0 = off
}

// Unit is one simulated Modbus server (one unit id). All methods are safe for
// concurrent use.
type Unit struct {
	id  byte
	sim *Sim

	mu          sync.Mutex
	held        []bool // per point: value comes from the store, not the sim
	regs        map[Table]map[uint16]uint16
	bits        map[Table]map[uint16]bool
	walks       []walk
	bootAt      time.Time
	silentUntil time.Time
	reboots     int
	resets      int
	requests    uint64
	faults      Faults
	rng         *rand.Rand
	fw          *fwUnit // nil without a firmware section
}

// walk is the lazily advanced state of a random_walk point.
type walk struct {
	value float64
	at    time.Time
}

func newUnit(s *Sim, id byte, now time.Time) *Unit {
	u := &Unit{
		id:     id,
		sim:    s,
		held:   make([]bool, len(s.profile.Points)),
		regs:   map[Table]map[uint16]uint16{Holding: {}, Input: {}},
		bits:   map[Table]map[uint16]bool{Coil: {}, Discrete: {}},
		walks:  make([]walk, len(s.profile.Points)),
		bootAt: now,
		faults: s.opts.Faults,
		rng:    rand.New(rand.NewPCG(s.opts.Seed, uint64(id))),
	}
	for i, p := range s.profile.Points {
		u.walks[i] = walk{value: clampTo(p.Sim, p.Sim.Value), at: now}
	}
	if s.profile.Firmware != nil {
		u.fw = newFwUnit(s.profile.Firmware, s.fwCfg, s.log.With("unit", id))
	}
	return u
}

// ID returns the unit id.
func (u *Unit) ID() byte { return u.id }

// SetFaults replaces the unit's injected faults.
func (u *Unit) SetFaults(f Faults) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.faults = f
}

// Faults returns the unit's injected faults.
func (u *Unit) Faults() Faults {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.faults
}

// Reboots returns how many times the unit was rebooted.
func (u *Unit) Reboots() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reboots
}

// FactoryResets returns how many times the unit was factory reset.
func (u *Unit) FactoryResets() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.resets
}

// Requests returns how many requests addressed to this unit arrived,
// answered or not.
func (u *Unit) Requests() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests
}

// Online reports whether the unit answers now (it is not rebooting).
func (u *Unit) Online() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.sim.now().Before(u.silentUntil)
}

// Reboot makes the unit silent for the profile's reboot_silence; it comes
// back with its counters (uptime) restarted.
func (u *Unit) Reboot() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rebootLocked(u.sim.now())
}

// FactoryReset restores every written value to its simulated default.
func (u *Unit) FactoryReset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.factoryResetLocked()
}

func (u *Unit) rebootLocked(now time.Time) {
	u.restartLocked(now, u.sim.profile.Sim.RebootSilence)
}

// restartLocked makes the unit silent for silence, then boot afresh.
func (u *Unit) restartLocked(now time.Time, silence time.Duration) {
	u.reboots++
	u.silentUntil = now.Add(silence)
	u.bootAt = u.silentUntil
	if i, ok := u.sim.byName["uptime"]; ok {
		u.unholdLocked(i)
	}
}

func (u *Unit) factoryResetLocked() {
	u.resets++
	for i := range u.held {
		u.unholdLocked(i)
	}
}

func (u *Unit) unholdLocked(i int) {
	p := &u.sim.profile.Points[i]
	u.held[i] = false
	for a := range p.Registers() {
		addr := p.Address + uint16(a)
		delete(u.regs[p.Table], addr)
		delete(u.bits[p.Table], addr)
	}
}

// point returns the index of the named point.
func (u *Unit) point(name string) (int, error) {
	i, ok := u.sim.byName[name]
	if !ok {
		return 0, fmt.Errorf("unit %d: point %q: %w", u.id, name, ErrUnknownPoint)
	}
	return i, nil
}

// Value returns the named point's engineering value as a client reading it
// now would decode it (bools are 0 or 1).
func (u *Unit) Value(name string) (float64, error) {
	i, err := u.point(name)
	if err != nil {
		return 0, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	p := &u.sim.profile.Points[i]
	now := u.sim.now()
	if p.Table.isBit() {
		if u.pointBitLocked(i, now) {
			return 1, nil
		}
		return 0, nil
	}
	v, _ := decodeValue(p, u.pointRegsLocked(i, now))
	return v, nil
}

// Text returns the value of a string point.
func (u *Unit) Text(name string) (string, error) {
	i, err := u.point(name)
	if err != nil {
		return "", err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	_, s := decodeValue(&u.sim.profile.Points[i], u.pointRegsLocked(i, u.sim.now()))
	return s, nil
}

// SetValue stores an engineering value for the named point, as a write
// would; it sticks until a factory reset. Read-only tables can be set too.
func (u *Unit) SetValue(name string, v float64) error {
	return u.set(name, v, "")
}

// SetText stores the value of a string point.
func (u *Unit) SetText(name, s string) error {
	return u.set(name, 0, s)
}

func (u *Unit) set(name string, v float64, s string) error {
	i, err := u.point(name)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	p := &u.sim.profile.Points[i]
	if p.Table.isBit() {
		u.writeBitsLocked(p.Table, p.Address, []bool{v != 0}, false)
		return nil
	}
	regs := encodeValue(p, v, s)
	if p.Bit >= 0 { // keep the other bits of the register
		cur, _ := u.readRegsLocked(p.Table, p.Address, 1, u.sim.now())
		mask := encodeValue(p, 1, "")[0]
		regs[0] |= cur[0] &^ mask
	}
	u.writeRegsLocked(p.Table, p.Address, regs, false)
	return nil
}

// ReadRegisters reads n registers of an input or holding table under the
// same rules as FC 3/4; an ExceptionCode is returned as the error.
func (u *Unit) ReadRegisters(t Table, addr, n uint16) ([]uint16, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	regs, ex := u.readRegsLocked(t, addr, n, u.sim.now())
	if ex != 0 {
		return nil, ex
	}
	return regs, nil
}

// WriteRegisters writes registers of any register table under the FC 16
// rules, including method registers (a reboot write reboots).
func (u *Unit) WriteRegisters(t Table, addr uint16, vals []uint16) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ex := u.writeRegsLocked(t, addr, vals, true); ex != 0 {
		return ex
	}
	return nil
}

// ReadBits reads n bits of a coil or discrete table under the FC 1/2 rules.
func (u *Unit) ReadBits(t Table, addr, n uint16) ([]bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	bits, ex := u.readBitsLocked(t, addr, n, u.sim.now())
	if ex != 0 {
		return nil, ex
	}
	return bits, nil
}

// WriteBits writes bits of any bit table under the FC 15 rules.
func (u *Unit) WriteBits(t Table, addr uint16, vals []bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ex := u.writeBitsLocked(t, addr, vals, true); ex != 0 {
		return ex
	}
	return nil
}

// gen is the simulated engineering value of point i at now.
func (u *Unit) gen(i int, now time.Time) float64 {
	p := &u.sim.profile.Points[i]
	b := p.Sim
	switch b.Kind {
	case KindSine:
		t := now.Sub(u.sim.start).Seconds() / b.Period.Seconds()
		return (b.Min+b.Max)/2 + (b.Max-b.Min)/2*math.Sin(2*math.Pi*t)
	case KindCounter:
		el := now.Sub(u.bootAt)
		if el < 0 {
			el = 0
		}
		v := b.Value + b.Step*float64(el/b.Period)
		if b.Max > b.Min && v > b.Max {
			v = b.Min + math.Mod(v-b.Min, b.Max-b.Min+math.Abs(b.Step))
		}
		return v
	case KindRandomWalk:
		w := &u.walks[i]
		n := int64(now.Sub(w.at) / b.Period)
		if n <= 0 {
			return w.value
		}
		w.at = w.at.Add(time.Duration(n) * b.Period)
		n = min(n, 10000) // after a long idle stretch, a bounded number of steps
		for range n {
			w.value = clampTo(b, w.value+(u.rng.Float64()*2-1)*b.Step)
		}
		return w.value
	}
	return b.Value
}

func clampTo(b Behavior, v float64) float64 {
	if b.Max > b.Min {
		return min(max(v, b.Min), b.Max)
	}
	return v
}

// pointRegsLocked returns the current registers of a register point.
func (u *Unit) pointRegsLocked(i int, now time.Time) []uint16 {
	p := &u.sim.profile.Points[i]
	if u.held[i] {
		out := make([]uint16, p.Registers())
		for a := range out {
			out[a] = u.regs[p.Table][p.Address+uint16(a)]
		}
		if p.Bit >= 0 { // only this point's bit of a shared register
			v, _ := decodeValue(p, out)
			return encodeValue(p, v, "")
		}
		return out
	}
	return encodeValue(p, u.gen(i, now), p.Sim.Text)
}

func (u *Unit) pointBitLocked(i int, now time.Time) bool {
	p := &u.sim.profile.Points[i]
	if u.held[i] {
		return u.bits[p.Table][p.Address]
	}
	return u.gen(i, now) >= 0.5
}

// touches reports whether [addr, addr+n) covers a register of a point or a
// method register of table t.
func (u *Unit) touches(t Table, addr, n uint16) bool {
	lo, hi := int(addr), int(addr)+int(n)
	for _, i := range u.sim.byTable[t] {
		p := &u.sim.profile.Points[i]
		if int(p.Address) < hi && lo < int(p.Address)+p.Registers() {
			return true
		}
	}
	for _, m := range u.sim.methods() {
		if m.Table == t && lo <= int(m.Address) && int(m.Address) < hi {
			return true
		}
	}
	return u.fw != nil && u.fw.touches(t, addr, n)
}

func (u *Unit) readRegsLocked(t Table, addr, n uint16, now time.Time) ([]uint16, ExceptionCode) {
	if t.isBit() || !rangeOK(addr, n) || !u.touches(t, addr, n) {
		return nil, IllegalDataAddress
	}
	out := make([]uint16, n)
	for _, i := range u.sim.byTable[t] {
		p := &u.sim.profile.Points[i]
		if int(p.Address) >= int(addr)+int(n) || int(p.Address)+p.Registers() <= int(addr) {
			continue
		}
		for k, r := range u.pointRegsLocked(i, now) {
			if a := int(p.Address) + k - int(addr); a >= 0 && a < int(n) {
				out[a] |= r // bool points with a bit share a register
			}
		}
	}
	if u.fw != nil {
		u.fw.overlay(u, t, addr, out, now)
	}
	return out, 0
}

func (u *Unit) readBitsLocked(t Table, addr, n uint16, now time.Time) ([]bool, ExceptionCode) {
	if !t.isBit() || !rangeOK(addr, n) || !u.touches(t, addr, n) {
		return nil, IllegalDataAddress
	}
	out := make([]bool, n)
	for _, i := range u.sim.byTable[t] {
		p := &u.sim.profile.Points[i]
		if a := int(p.Address) - int(addr); a >= 0 && a < int(n) {
			out[a] = u.pointBitLocked(i, now)
		}
	}
	return out, 0
}

// writeRegsLocked stores vals at addr. A point hit by the write is frozen at
// its current value first (so a half-written float keeps its other half),
// then overwritten. Gap registers are discarded. Method registers trigger
// their action when written with their value (factory reset before reboot).
func (u *Unit) writeRegsLocked(t Table, addr uint16, vals []uint16, methods bool) ExceptionCode {
	n := uint16(len(vals))
	if t.isBit() || !rangeOK(addr, n) || !u.touches(t, addr, n) {
		return IllegalDataAddress
	}
	now := u.sim.now()
	if u.fw != nil && u.fw.owns(t, addr, n) {
		return u.fw.write(u, addr, vals, now)
	}
	for _, i := range u.sim.byTable[t] {
		p := &u.sim.profile.Points[i]
		if int(p.Address) >= int(addr)+int(n) || int(p.Address)+p.Registers() <= int(addr) {
			continue
		}
		if !u.held[i] {
			for k, r := range u.pointRegsLocked(i, now) {
				u.regs[t][p.Address+uint16(k)] = r
			}
			u.held[i] = true
		}
		for k := range p.Registers() {
			if a := int(p.Address) + k - int(addr); a >= 0 && a < int(n) {
				u.regs[t][p.Address+uint16(k)] = vals[a]
			}
		}
	}
	if methods {
		u.methodsLocked(t, addr, n, func(a uint16) uint16 { return vals[a-addr] }, now)
	}
	return 0
}

func (u *Unit) writeBitsLocked(t Table, addr uint16, vals []bool, methods bool) ExceptionCode {
	n := uint16(len(vals))
	if !t.isBit() || !rangeOK(addr, n) || !u.touches(t, addr, n) {
		return IllegalDataAddress
	}
	for _, i := range u.sim.byTable[t] {
		p := &u.sim.profile.Points[i]
		if a := int(p.Address) - int(addr); a >= 0 && a < int(n) {
			u.bits[t][p.Address] = vals[a]
			u.held[i] = true
		}
	}
	if methods {
		u.methodsLocked(t, addr, n, func(a uint16) uint16 {
			if vals[a-addr] {
				return 1
			}
			return 0
		}, u.sim.now())
	}
	return 0
}

func (u *Unit) methodsLocked(t Table, addr, n uint16, val func(uint16) uint16, now time.Time) {
	hit := func(m *MethodWrite) bool {
		return m != nil && m.Table == t && int(addr) <= int(m.Address) && int(m.Address) < int(addr)+int(n) &&
			val(m.Address) == m.Value
	}
	ms := u.sim.profile.Methods
	if hit(ms.FactoryReset) {
		u.factoryResetLocked()
	}
	if hit(ms.Reboot) {
		u.rebootLocked(now)
	}
}
