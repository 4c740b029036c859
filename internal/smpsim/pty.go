package smpsim

import (
	"context"
	"errors"
	"fmt"

	"github.com/drover-iot/drover/internal/rawpty"
)

// OpenPTY opens the pseudo-terminal the device will serve and returns the
// path a host opens (/dev/pts/N). Run serves it.
func (d *Device) OpenPTY() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pty != nil {
		return d.pty.Path, nil
	}
	p, err := rawpty.Open()
	if err != nil {
		return "", fmt.Errorf("smpsim: %w", err)
	}
	d.pty = p
	return p.Path, nil
}

// Run serves the pseudo-terminal of OpenPTY until ctx ends, then closes it.
func (d *Device) Run(ctx context.Context) error {
	d.mu.Lock()
	p := d.pty
	d.mu.Unlock()
	if p == nil {
		return errors.New("smpsim: Run before OpenPTY")
	}
	defer d.Close()
	return d.Serve(ctx, p.Master)
}

// Close releases the pseudo-terminal; Run does it when it returns.
func (d *Device) Close() error {
	d.mu.Lock()
	p := d.pty
	d.pty = nil
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Close()
}
