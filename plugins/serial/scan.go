package serial

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"time"

	"github.com/drover-iot/drover/internal/clock"
	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/plugins"
)

// ScanPorts lists the ports a scan of bus b probes, by scan address:
// address 0 is the bus's own port, addresses 1.. are the other ports that
// b.ScanPorts names (globs expanded, sorted, duplicates and the bus's port
// left out).
func ScanPorts(b *Bus) []string {
	own := realPath(b.Port)
	out := []string{b.Port}
	seen := map[string]bool{own: true}
	for _, pat := range b.ScanPorts {
		matches, err := filepath.Glob(pat)
		if err != nil {
			continue // validated as absolute paths; a bad pattern matches nothing
		}
		slices.Sort(matches)
		for _, m := range matches {
			if r := realPath(m); !seen[r] {
				seen[r] = true
				out = append(out, m)
			}
		}
	}
	return out
}

func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// Scan implements plugins.Plugin. A UART has one device, so scan
// addresses stand for ports (see ScanPorts): 0 is the bus's own port,
// probed through the open bus; 1.. are the ports the bus's scan_ports
// names (default /dev/serial/by-id/*), each opened and locked for the
// probe at the bus's line settings. A probe is an SMP echo; a port that
// answers is Found, with its image list in Identity (Extra["port"] names
// the port). Ports held by another process are reported with an error.
// Addresses past the last port produce no event.
func (d *Driver) Scan(ctx context.Context, req plugins.ScanRequest, progress func(plugins.ScanEvent)) error {
	d.mu.RLock()
	e, ok := d.buses[req.Bus]
	d.mu.RUnlock()
	if !ok {
		return plugins.Errorf(plugins.CodeNotFound, "scan: bus %q is not open", req.Bus)
	}
	if req.From < 0 || req.From > req.To {
		return plugins.Errorf(plugins.CodeInvalid, "scan: bad range %d..%d (0 is the bus's port, 1.. its scan_ports)", req.From, req.To)
	}
	ports := ScanPorts(e.cfg)
	log := e.log.With("op", "scan")
	for addr := req.From; addr <= req.To && addr < len(ports); addr++ {
		if addr > req.From && req.Interval > 0 {
			if !clock.Sleep(ctx, req.Interval) {
				return asPluginError("scan "+req.Bus, ctx.Err())
			}
		}
		ev := d.probe(ctx, e, addr, ports[addr], req.Timeout)
		if err := ctx.Err(); err != nil {
			return asPluginError("scan "+req.Bus, err)
		}
		log.Debug("port probed", "port", ports[addr], "found", ev.Found, "error", ev.Error)
		if progress != nil {
			progress(ev)
		}
	}
	return nil
}

// probe asks the device on one port for an echo and its image list.
func (d *Driver) probe(ctx context.Context, e *busEntry, addr int, port string, timeout time.Duration) plugins.ScanEvent {
	ev := plugins.ScanEvent{Address: addr}
	var c *smp.Client
	if addr == 0 {
		var err error
		if c, err = e.smp(); err != nil {
			ev.Error = err.Error()
			return ev
		}
	} else {
		cfg := *e.cfg
		cfg.Port = port
		cfg.Retries = 0
		if timeout > 0 {
			cfg.Timeout = timeout
		}
		p, err := e.open(port, &cfg)
		if err != nil {
			ev.Error = err.Error()
			return ev
		}
		opts := cfg.clientOptions()
		opts.Log = e.log.With("port", port)
		c = smp.NewClient(p, opts)
		defer c.Close()
	}
	err := c.Echo(ctx, "drover-scan")
	var se *smp.Error
	switch {
	case err == nil, errors.As(err, &se):
		ev.Found = true // an error answer is still an SMP device
	case isTimeout(err):
		return ev
	default:
		ev.Error = err.Error()
		return ev
	}
	id := &plugins.Identity{Extra: map[string]string{"port": port}}
	if imgs, err := c.ImageState(ctx); err == nil {
		imageExtra(id.Extra, imgs)
		if a := activeSlot(imgs); a != nil {
			id.FirmwareVersion = a.Version
		}
	} else if ctx.Err() == nil {
		id.Extra["imageListError"] = err.Error()
	}
	ev.Identity = id
	return ev
}
