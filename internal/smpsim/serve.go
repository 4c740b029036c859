package smpsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/internal/smp"
)

// writeTimeout bounds one write to the line: with nobody reading the pty,
// output is dropped rather than blocking the device.
const writeTimeout = 200 * time.Millisecond

type rxChunk struct {
	b []byte
	t time.Time // when it was read: the bytes start on the wire then
}

type request struct {
	pkt   []byte
	epoch int
	at    time.Time // when its last line is decoded: the device may act from then on
}

type txItem struct {
	lines [][]byte
	epoch int
	after time.Time     // the first byte goes on the wire no earlier than this
	done  chan struct{} // closed when written or dropped; may be nil
}

// server is one Serve call: the goroutines that model the UART and the
// SMP server on one line.
type server struct {
	d    *Device
	rw   io.ReadWriter
	reqs chan request // the netbufs: complete requests waiting for the SMP thread
	tx   chan txItem  // answers and boot output
	logs chan txItem  // periodic log lines; dropped when the UART is busy
}

// ErrServing is returned by Serve when the device already serves a line.
var ErrServing = errors.New("smpsim: device already serves a line")

// Serve runs the device on rw until ctx ends (then it returns nil) or rw
// fails. The device boots first (banner and log lines, no silence). To
// stop, Serve unblocks the pending Read with SetReadDeadline if rw has it,
// else closes rw if it is an io.Closer.
func (d *Device) Serve(ctx context.Context, rw io.ReadWriter) error {
	d.mu.Lock()
	if d.serving {
		d.mu.Unlock()
		return ErrServing
	}
	d.serving = true
	d.epoch++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.serving, d.up = false, false
		d.epoch++
		d.bumpLocked()
		d.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &server{d: d, rw: rw,
		reqs: make(chan request, d.cfg.BufCount),
		tx:   make(chan txItem, 8),
		logs: make(chan txItem, 4),
	}
	chunks := make(chan rxChunk, 256)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(chunks)
		buf := make([]byte, 4096)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				select {
				case chunks <- rxChunk{b: append([]byte(nil), buf[:n]...), t: time.Now()}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	for _, f := range []func(context.Context){s.transmit, s.work, s.logLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	err := s.receive(ctx, chunks, readErr)
	cancel()
	type deadliner interface{ SetReadDeadline(time.Time) error }
	if dl, ok := rw.(deadliner); !ok || dl.SetReadDeadline(time.Now()) != nil {
		if c, ok := rw.(io.Closer); ok {
			_ = c.Close()
		}
	}
	wg.Wait()
	return err
}

// receive is the UART's receive side and the line decoder: it gives each
// byte its wire time, allots line buffers from the pool, decodes lines
// (base64) or packets (raw) and queues complete requests.
func (s *server) receive(ctx context.Context, chunks <-chan rxChunk, readErr <-chan error) error {
	d, cfg := s.d, &s.d.cfg
	var (
		wireFree, decFree time.Time
		releases          []time.Time // when busy line buffers come free
		line              []byte
		inLine            bool
		dropping, tooLong bool
		re                = smp.Reassembler{MaxPacket: smp.MaxPacketFor(cfg.BufSize)}
		raw               []byte
		rawSkip           int  // bytes of an oversized raw packet still to skip
		rawIgnore         bool // a bad raw header: ignore until the line is idle
		lastEnd           time.Time
		epoch             = -2
	)
	resetLine := func() {
		line, inLine, dropping, tooLong = line[:0], false, false, false
		re.Reset()
		raw, rawSkip, rawIgnore = raw[:0], 0, false
	}
	for {
		var ch rxChunk
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case ch, ok = <-chunks:
		}
		if !ok {
			err := <-readErr
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("smpsim: read the serial line: %w", err)
		}
		up, ep := d.upEpoch()
		if !up {
			// Rebooting: the UART is not listening.
			continue
		}
		if ep != epoch {
			epoch = ep
			resetLine()
			releases = releases[:0]
		}
		d.count(func(c *Counters) { c.RxBytes += len(ch.b) })
		for _, b := range ch.b {
			start := ch.t
			if wireFree.After(start) {
				start = wireFree
			}
			end := start.Add(cfg.wire(1))
			wireFree = end
			if !inLine && len(raw) == 0 {
				d.hostGap(start)
			}
			if cfg.Transport == Raw {
				s.rawByte(b, start, end, &lastEnd, &raw, &rawSkip, &rawIgnore, ep)
				continue
			}
			if !inLine {
				inLine = true
				line = line[:0]
				n := 0
				for _, r := range releases {
					if r.After(start) {
						releases[n] = r
						n++
					}
				}
				releases = releases[:n]
				dropping = len(releases) >= cfg.LinePool
				tooLong = false
			}
			if b != '\n' {
				if !dropping && !tooLong {
					if len(line) >= cfg.LineSize-1 {
						tooLong = true
					} else {
						line = append(line, b)
					}
				}
				continue
			}
			inLine = false
			switch {
			case dropping:
				d.count(func(c *Counters) { c.Lines++; c.LinesDropped++ })
				// The rest of a frame is lost with this line: the decoder
				// notices when the next start line or a bad length comes.
			case tooLong:
				releases = append(releases, end)
				d.count(func(c *Counters) { c.Lines++; c.LinesTooLong++ })
				re.Reset()
			default:
				dec := end
				if decFree.After(dec) {
					dec = decFree
				}
				dec = dec.Add(cfg.LineDecode)
				decFree = dec
				releases = append(releases, dec)
				// The decision above used the line's wire and decode times;
				// decoding now is invisible from outside, and the answer
				// waits for dec (request.at).
				s.decodeLine(line, ep, dec, &re)
			}
		}
	}
}

// decodeLine feeds one received line to the reassembler and queues a
// completed request.
func (s *server) decodeLine(line []byte, epoch int, at time.Time, re *smp.Reassembler) {
	d := s.d
	if smp.KindOf(line) == smp.LineText {
		d.count(func(c *Counters) { c.Lines++; c.TextLines++ })
		return
	}
	pkt, err := re.Line(line)
	d.count(func(c *Counters) {
		c.Lines++
		if err != nil {
			if errors.Is(err, smp.ErrTooLong) {
				c.FramesTooBig++
			} else {
				c.FramesBad++
			}
		}
	})
	if err != nil {
		d.log.Debug("smpsim frame discarded", "error", err)
	}
	if pkt != nil {
		s.queue(pkt, epoch, at)
	}
}

// rawByte is receive for the raw transport: packets framed by the header
// length, a partial packet flushed after RawTimeout of silence.
func (s *server) rawByte(b byte, start, end time.Time, lastEnd *time.Time, raw *[]byte, skip *int, ignore *bool, epoch int) {
	d, cfg := s.d, &s.d.cfg
	if (len(*raw) > 0 || *skip > 0 || *ignore) && start.Sub(*lastEnd) > cfg.RawTimeout {
		if len(*raw) > 0 {
			d.count(func(c *Counters) { c.FramesBad++ })
		}
		*raw, *skip, *ignore = (*raw)[:0], 0, false
	}
	*lastEnd = end
	switch {
	case *ignore:
		return
	case *skip > 0:
		*skip--
		return
	}
	*raw = append(*raw, b)
	if len(*raw) < smp.HeaderSize {
		return
	}
	h, err := smp.ParseHeader(*raw)
	if err != nil {
		d.count(func(c *Counters) { c.FramesBad++ })
		*raw, *ignore = (*raw)[:0], true
		return
	}
	need := smp.HeaderSize + int(h.Length)
	if need > cfg.BufSize {
		d.count(func(c *Counters) { c.FramesTooBig++ })
		*skip = need - len(*raw)
		*raw = (*raw)[:0]
		return
	}
	if len(*raw) < need {
		return
	}
	s.queue(append([]byte(nil), *raw...), epoch, end.Add(cfg.LineDecode))
	*raw = (*raw)[:0]
}

// queue hands a request to the SMP thread, or drops it when every netbuf
// is taken.
func (s *server) queue(pkt []byte, epoch int, at time.Time) {
	select {
	case s.reqs <- request{pkt: pkt, epoch: epoch, at: at}:
	default:
		s.d.count(func(c *Counters) { c.PacketsLost++ })
	}
}

// work is the device's SMP thread: it boots, answers requests one at a
// time, and reboots when asked.
func (s *server) work(ctx context.Context) {
	s.boot(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case done := <-s.d.reboot:
			s.reboot(ctx, false, done)
		case r := <-s.reqs:
			s.serveRequest(ctx, r)
		}
	}
}

func (s *server) serveRequest(ctx context.Context, r request) {
	d := s.d
	if _, ep := d.upEpoch(); ep != r.epoch {
		return
	}
	d.mu.Lock()
	if d.faults.DropRequests > 0 {
		d.faults.DropRequests--
		d.c.FaultDrops++
		d.bumpLocked()
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	rsp, rep, ok := d.answer(r.pkt)
	if !ok {
		return
	}
	// The answer leaves once the request is decoded and handled: the
	// transmitter waits for that time and the answer's wire time in one go.
	after := r.at.Add(d.cfg.Turnaround + rep.delay)
	if rep.cut {
		if !sleepUntil(ctx, after) {
			return
		}
		s.reboot(ctx, false, nil)
		return
	}
	d.mu.Lock()
	d.answers++
	f := &d.faults
	drop := f.DropResponses > 0 || (f.DropEvery > 0 && d.answers%f.DropEvery == 0)
	corrupt := !drop && (f.CorruptResponses > 0 || (f.CorruptEvery > 0 && d.answers%f.CorruptEvery == 0))
	switch {
	case drop:
		if f.DropResponses > 0 {
			f.DropResponses--
		}
		d.c.FaultDrops++
		d.log.Info("smpsim answer dropped (fault)")
	case corrupt:
		if f.CorruptResponses > 0 {
			f.CorruptResponses--
		}
		d.c.FaultCorrupts++
		d.log.Info("smpsim answer corrupted (fault)")
	}
	d.bumpLocked()
	d.mu.Unlock()
	if !drop {
		lines, err := s.encode(rsp, corrupt)
		if err != nil {
			d.log.Warn("smpsim encode answer", "error", err)
			return
		}
		done := make(chan struct{})
		if !s.send(ctx, txItem{lines: lines, epoch: r.epoch, after: after, done: done}) {
			return
		}
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
		d.count(func(c *Counters) { c.Responses++ })
	}
	if rep.reset {
		s.reboot(ctx, true, nil)
	}
}

// encode frames an answer for the line; corrupt spoils its check.
func (s *server) encode(pkt []byte, corrupt bool) ([][]byte, error) {
	if s.d.cfg.Transport == Raw {
		out := append([]byte(nil), pkt...)
		if corrupt && len(out) > 6 {
			out[6] ^= 0x80 // the sequence number: the client cannot match it
		}
		return [][]byte{out}, nil
	}
	lines, err := smp.EncodeLines(pkt, smp.MaxLine)
	if err != nil {
		return nil, err
	}
	if corrupt {
		// Swap one base64 character of the header for another valid
		// one: the frame still decodes, its CRC does not match.
		l := lines[0]
		i := 2 + 4
		if l[i] == 'A' {
			l[i] = 'B'
		} else {
			l[i] = 'A'
		}
	}
	return lines, nil
}

func (s *server) send(ctx context.Context, it txItem) bool {
	select {
	case s.tx <- it:
		return true
	case <-ctx.Done():
		return false
	}
}

// sendText writes console lines and waits until they are out.
func (s *server) sendText(ctx context.Context, epoch int, text ...string) {
	if s.d.cfg.Transport == Raw || len(text) == 0 {
		return
	}
	it := txItem{epoch: epoch, done: make(chan struct{})}
	for _, t := range text {
		it.lines = append(it.lines, []byte(t+"\r\n"))
	}
	if s.send(ctx, it) {
		select {
		case <-it.done:
		case <-ctx.Done():
		}
	}
}

// reboot takes the device down: after an answered reset it keeps running
// for ResetDelay first. Queued requests and output are lost, so is the
// upload state; after ResetSilence MCUboot runs and the application boots.
func (s *server) reboot(ctx context.Context, answered bool, started chan struct{}) {
	d := s.d
	if answered && !clock.Sleep(ctx, d.cfg.ResetDelay) {
		return
	}
	d.mu.Lock()
	d.up = false
	d.epoch++
	d.c.Resets++
	if !answered {
		d.c.PowerCuts++
	}
	d.up1 = upload{}
	d.bumpLocked()
	d.mu.Unlock()
	if started != nil {
		close(started)
	}
drain:
	for {
		select {
		case <-s.reqs:
		default:
			break drain
		}
	}
	if !clock.Sleep(ctx, d.cfg.ResetSilence) {
		return
	}
	s.boot(ctx)
}

// boot runs MCUboot and starts the application: banner and log lines,
// then the device listens.
func (s *server) boot(ctx context.Context) {
	d := s.d
	d.mu.Lock()
	r := d.flash.boot()
	d.loadSettings()
	d.bootAt = time.Now()
	epoch := d.epoch
	ver := d.flash.primary.img.Version.String()
	d.mu.Unlock()
	lines := append(r.lines,
		"*** Booting Zephyr OS build v3.7.0 ***",
		fmt.Sprintf("[00:00:00.010,000] <inf> app: %s firmware %s started", d.cfg.Name, ver))
	s.sendText(ctx, epoch, lines...)
	if ctx.Err() != nil {
		return
	}
	d.mu.Lock()
	d.up = true
	d.c.Boots++
	if r.swap == "revert" || r.crashed {
		d.c.Reverts++
	}
	if r.crashed {
		d.c.BootFailures++
	}
	d.bumpLocked()
	d.mu.Unlock()
	d.log.Info("smpsim booted", "version", ver, "swap", r.swap, "crashed", r.crashed)
}

// transmit is the UART's send side: one line at a time, each after its
// wire time.
func (s *server) transmit(ctx context.Context) {
	d, cfg := s.d, &s.d.cfg
	var free time.Time
	write := func(b []byte, after time.Time) bool {
		start := time.Now()
		if free.After(start) {
			start = free
		}
		if after.After(start) {
			start = after
		}
		free = start.Add(cfg.wire(len(b)))
		if !sleepUntil(ctx, free) {
			return false
		}
		late := time.Since(free)
		type deadliner interface{ SetWriteDeadline(time.Time) error }
		if w, ok := s.rw.(deadliner); ok {
			_ = w.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
		if _, err := s.rw.Write(b); err != nil {
			d.log.Debug("smpsim write", "error", err)
			return true
		}
		d.count(func(c *Counters) { c.TxBytes += len(b); c.TxLate += late })
		return true
	}
	out := func(it txItem, isLog bool) bool {
		defer func() {
			if it.done != nil {
				close(it.done)
			}
		}()
		for i, l := range it.lines {
			if _, ep := d.upEpoch(); ep != it.epoch {
				return true // rebooted meanwhile: lost
			}
			if !write(l, it.after) {
				return false
			}
			if isLog {
				d.count(func(c *Counters) { c.LogLines++ })
			}
			if !isLog && i+1 == len(it.lines) {
				d.mu.Lock()
				d.answered = time.Now()
				d.mu.Unlock()
			}
			if cfg.InterleaveLogs && i+1 < len(it.lines) {
				select {
				case lg := <-s.logs:
					for _, x := range lg.lines {
						if !write(x, time.Time{}) {
							return false
						}
						d.count(func(c *Counters) { c.LogLines++ })
					}
				default:
				}
			}
		}
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-s.tx:
			if !out(it, false) {
				return
			}
		case it := <-s.logs:
			if !out(it, true) {
				return
			}
		}
	}
}

// logLoop is the application's periodic logging.
func (s *server) logLoop(ctx context.Context) {
	d, cfg := s.d, &s.d.cfg
	if cfg.LogInterval <= 0 || cfg.Transport == Raw {
		return
	}
	t := time.NewTicker(cfg.LogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		up, epoch := d.up, d.epoch
		up1 := d.up1.active
		uptime := time.Since(d.bootAt)
		d.mu.Unlock()
		if !up {
			continue
		}
		msg := fmt.Sprintf("%s <inf> app: sample %d temp=%.1f", stamp(uptime), uptime/(100*time.Millisecond), 21.5+float64(uptime/time.Second%7)/10)
		if up1 {
			msg = fmt.Sprintf("%s <inf> img_mgmt: upload in progress", stamp(uptime))
		}
		select {
		case s.logs <- txItem{lines: [][]byte{[]byte(msg + "\r\n")}, epoch: epoch}:
		default:
		}
	}
}

// stamp formats an uptime as Zephyr's log prefix does.
func stamp(d time.Duration) string {
	h := d / time.Hour
	m := d / time.Minute % 60
	sec := d / time.Second % 60
	ms := d / time.Millisecond % 1000
	return fmt.Sprintf("[%02d:%02d:%02d.%03d,000]", h, m, sec, ms)
}

func (d *Device) upEpoch() (bool, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.up, d.epoch
}

// wire is the wire time of n bytes at 10 bits each; 0 when unpaced.
func (c *Config) wire(n int) time.Duration {
	if c.Baud <= 0 {
		return 0
	}
	return time.Duration(int64(n) * 10 * int64(time.Second) / int64(c.Baud))
}

// sleepUntil waits for t or ctx; false means ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	return clock.Sleep(ctx, time.Until(t))
}

// hostGap adds the silence since the last answer to Counters.HostGap when
// start begins the host's next line or packet.
func (d *Device) hostGap(start time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.answered.IsZero() {
		return
	}
	if g := start.Sub(d.answered); g > 0 {
		d.c.HostGap += g
	}
	d.answered = time.Time{}
}
