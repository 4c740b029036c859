package modbussim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/drover-iot/drover/internal/clock"
)

// MBAP header limits. [Modbus Messaging on TCP/IP V1.0b §3.1.3]
const (
	mbapLen      = 7
	maxMBAPField = 1 + maxPDU // length counts the unit id and the PDU
	writeTimeout = 5 * time.Second
)

// ServeTCP serves Modbus TCP on ln until ctx ends, then closes ln and every
// connection and returns nil. Each connection is served by its own
// goroutine, requests in order; every served unit answers on every
// connection.
func (s *Sim) ServeTCP(ctx context.Context, ln net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			_ = c.Close()
		}
	})
	defer func() {
		stop()
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	s.log.Info("modbus tcp listening", "addr", ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept modbus tcp connection on %s: %w", ln.Addr(), err)
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			_ = c.Close()
			return nil
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			_ = c.Close()
		}()
	}
}

// serveConn reads MBAP frames until the peer leaves, a header is
// impossible (the stream cannot be resynchronised, so the connection is
// closed), or ctx ends.
func (s *Sim) serveConn(ctx context.Context, c net.Conn) {
	log := s.log.With("remote", c.RemoteAddr().String())
	hdr := make([]byte, mbapLen)
	for {
		if _, err := io.ReadFull(c, hdr); err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Debug("modbus tcp read header", "error", err)
			}
			return
		}
		tid, pid, n, unit := binary.BigEndian.Uint16(hdr), binary.BigEndian.Uint16(hdr[2:]), int(binary.BigEndian.Uint16(hdr[4:])), hdr[6]
		if n < 2 || n > maxMBAPField {
			log.Warn("modbus tcp bad mbap length, closing", "length", n)
			return
		}
		pdu := make([]byte, n-1)
		if _, err := io.ReadFull(c, pdu); err != nil {
			log.Debug("modbus tcp read pdu", "error", err)
			return
		}
		if pid != 0 { // not Modbus: ignore [TCP/IP V1.0b §3.1.3]
			continue
		}
		r, ok := s.dispatch(unit, pdu, true)
		if !ok {
			continue
		}
		if !clock.Sleep(ctx, r.delay) {
			return
		}
		out := make([]byte, 0, mbapLen+len(r.pdu))
		out = binary.BigEndian.AppendUint16(out, tid)
		out = binary.BigEndian.AppendUint16(out, 0)
		out = binary.BigEndian.AppendUint16(out, uint16(1+len(r.pdu)))
		out = append(append(out, unit), r.pdu...)
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.Write(out); err != nil {
			log.Debug("modbus tcp write", "error", err)
			return
		}
	}
}
