package smp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// Echo sends s and checks that the device echoes it.
func (c *Client) Echo(ctx context.Context, s string) error {
	var rsp EchoRsp
	if err := c.Do(ctx, Request{Op: OpWrite, Group: GroupOS, ID: OSEcho, Body: EchoReq{D: s}}, &rsp); err != nil {
		return err
	}
	if rsp.R != s {
		return fmt.Errorf("smp echo: sent %q, device answered %q: %w", s, rsp.R, ErrMalformed)
	}
	return nil
}

// BufSize returns the device's reassembly buffer (the params command's
// buf_size), asking once and remembering the answer; a device without the
// command (ENOTSUP, or any error answer) is taken to have DefaultBufSize. A
// device that does not answer at all is an error.
func (c *Client) BufSize(ctx context.Context) (int, error) {
	c.mu.Lock()
	n := c.bufSize
	c.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	var rsp ParamsRsp
	err := c.Do(ctx, Request{Op: OpRead, Group: GroupOS, ID: OSParams}, &rsp)
	var se *Error
	switch {
	case errors.As(err, &se):
		c.log.Debug("device has no params command; assuming the default buffer", "error", err, "buf_size", DefaultBufSize)
		n = DefaultBufSize
	case err != nil:
		return 0, err
	case rsp.BufSize < 64:
		c.log.Warn("device reports an implausible buffer; assuming the default", "buf_size", rsp.BufSize)
		n = DefaultBufSize
	default:
		n = int(rsp.BufSize)
	}
	c.mu.Lock()
	c.bufSize = n
	c.mu.Unlock()
	return n, nil
}

// ForgetDevice drops what the client learned about the device (buffer
// size, a v1 fallback in version auto): after a reset, other firmware may
// answer.
func (c *Client) ForgetDevice() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bufSize = 0
	if c.opts.Version == VersionAuto {
		c.version = Version2
	}
}

// Reset asks the device to reboot; force overrides an application that
// refuses (EBUSY). The request is never sent twice.
func (c *Client) Reset(ctx context.Context, force bool) error {
	req := ResetReq{}
	if force {
		one := uint8(1)
		req.Force = &one
	}
	return c.Do(ctx, Request{Op: OpWrite, Group: GroupOS, ID: OSReset, Body: req, NoRetry: true}, nil)
}

// ImageState reads the image list.
func (c *Client) ImageState(ctx context.Context) ([]ImageSlot, error) {
	var rsp ImageStateRsp
	if err := c.Do(ctx, Request{Op: OpRead, Group: GroupImage, ID: ImageState}, &rsp); err != nil {
		return nil, err
	}
	return rsp.Images, nil
}

// ImageTest marks the image with hash pending: boot it once at the next
// reset, and revert unless it is confirmed.
func (c *Client) ImageTest(ctx context.Context, hash []byte) ([]ImageSlot, error) {
	var rsp ImageStateRsp
	err := c.Do(ctx, Request{Op: OpWrite, Group: GroupImage, ID: ImageState, Body: ImageStateReq{Hash: hash, Confirm: false}}, &rsp)
	return rsp.Images, err
}

// ImageConfirm makes the running image permanent (hash nil), or the image
// with hash.
func (c *Client) ImageConfirm(ctx context.Context, hash []byte) ([]ImageSlot, error) {
	var rsp ImageStateRsp
	err := c.Do(ctx, Request{Op: OpWrite, Group: GroupImage, ID: ImageState, Body: ImageStateReq{Hash: hash, Confirm: true}}, &rsp)
	return rsp.Images, err
}

// EraseStorage erases the device's storage partition (Zephyr basic group):
// settings and other persistent data, a factory reset once followed by a
// reset.
func (c *Client) EraseStorage(ctx context.Context) error {
	return c.Do(ctx, Request{Op: OpWrite, Group: GroupZephyrBasic, ID: ZephyrEraseStorage, Timeout: c.opts.EraseTimeout}, nil)
}

// StatRead reads one statistics group.
func (c *Client) StatRead(ctx context.Context, group string) (map[string]uint64, error) {
	var rsp StatReadRsp
	if err := c.Do(ctx, Request{Op: OpRead, Group: GroupStat, ID: StatRead, Body: StatReadReq{Name: group}}, &rsp); err != nil {
		return nil, err
	}
	return rsp.Fields, nil
}

// SettingRead reads one setting's raw value.
func (c *Client) SettingRead(ctx context.Context, name string) ([]byte, error) {
	var rsp SettingsReadRsp
	if err := c.Do(ctx, Request{Op: OpRead, Group: GroupSettings, ID: SettingsReadWrite, Body: SettingsReadReq{Name: name}}, &rsp); err != nil {
		return nil, err
	}
	return rsp.Val, nil
}

// SettingWrite writes one setting's raw value (not yet saved).
func (c *Client) SettingWrite(ctx context.Context, name string, val []byte) error {
	return c.Do(ctx, Request{Op: OpWrite, Group: GroupSettings, ID: SettingsReadWrite, Body: SettingsWriteReq{Name: name, Val: val}}, nil)
}

// SettingsCommit applies written settings in the application.
func (c *Client) SettingsCommit(ctx context.Context) error {
	return c.Do(ctx, Request{Op: OpWrite, Group: GroupSettings, ID: SettingsCommit}, nil)
}

// SettingsSave stores written settings persistently.
func (c *Client) SettingsSave(ctx context.Context) error {
	return c.Do(ctx, Request{Op: OpWrite, Group: GroupSettings, ID: SettingsLoadSave}, nil)
}

// OSInfo reads the OS/application info string for format ("" = the
// device's default).
func (c *Client) OSInfo(ctx context.Context, format string) (string, error) {
	var rsp OSInfoRsp
	if err := c.Do(ctx, Request{Op: OpRead, Group: GroupOS, ID: OSInfo, Body: OSInfoReq{Format: format}}, &rsp); err != nil {
		return "", err
	}
	return rsp.Output, nil
}

// BootloaderInfo reads the bootloader's name (and mode, when asked).
func (c *Client) BootloaderInfo(ctx context.Context, query string) (BootloaderInfoRsp, error) {
	var rsp BootloaderInfoRsp
	err := c.Do(ctx, Request{Op: OpRead, Group: GroupOS, ID: OSBootloaderInfo, Body: BootloaderInfoReq{Query: query}}, &rsp)
	return rsp, err
}

// DateTime reads the device's clock as it formats it.
func (c *Client) DateTime(ctx context.Context) (string, error) {
	var rsp DateTime
	if err := c.Do(ctx, Request{Op: OpRead, Group: GroupOS, ID: OSDateTime}, &rsp); err != nil {
		return "", err
	}
	return rsp.DateTime, nil
}

// UploadOptions describe an image upload.
type UploadOptions struct {
	Image *uint32 // image number, for devices with several image pairs
	// Progress, when set, is called with the device's offset after every
	// chunk it answers.
	Progress func(off, total int)
	// ChunkRetries is how often one chunk is sent again after a lost or
	// corrupt answer (on top of the client's own retries); default 3.
	ChunkRetries int
}

// Upload sends img to the device's secondary slot, chunk by chunk, each
// filling the device's buffer (BufSize − 4 bytes of packet). Every
// request at offset 0 carries the session fields (len, sha of the whole
// file, image) and waits EraseTimeout, since the device erases before it
// answers; a device that still holds the session answers the offset to
// go on from, and the upload continues there instead of from byte 0. The
// device's answer always decides the next offset (it may go back to 0
// after a reboot: then the session fields are sent again). It returns once
// the device holds all of img.
func (c *Client) Upload(ctx context.Context, img []byte, o UploadOptions) error {
	if len(img) == 0 || int64(len(img)) > 1<<31 {
		return fmt.Errorf("smp upload: image of %d bytes: %w", len(img), ErrMalformed)
	}
	buf, err := c.BufSize(ctx)
	if err != nil {
		return fmt.Errorf("smp upload: read buffer size: %w", err)
	}
	maxPkt := MaxPacketFor(buf)
	sum := sha256.Sum256(img)
	total := uint32(len(img))
	if o.ChunkRetries <= 0 {
		o.ChunkRetries = 3
	}
	off := uint32(0)
	stuck := 0
	for off < total {
		req := UploadReq{Off: off}
		timeout := time.Duration(0)
		if off == 0 {
			req.Image, req.Len, req.Sha = o.Image, &total, sum[:]
			timeout = c.opts.EraseTimeout
		}
		n, err := chunkRoom(req, maxPkt)
		if err != nil {
			return fmt.Errorf("smp upload: device buffer of %d bytes: %w", buf, err)
		}
		req.Data = img[off:min(int(off)+n, len(img))]
		var rsp UploadRsp
		err = c.Do(ctx, Request{Op: OpWrite, Group: GroupImage, ID: ImageUpload, Body: req, Timeout: timeout}, &rsp)
		if errors.Is(err, ErrTimeout) && stuck < o.ChunkRetries && ctx.Err() == nil {
			stuck++
			continue
		}
		if err != nil {
			return fmt.Errorf("smp upload at offset %d of %d: %w", off, total, err)
		}
		stuck = 0
		if rsp.Off > total {
			return fmt.Errorf("smp upload: device answered offset %d past the image's %d bytes: %w", rsp.Off, total, ErrMalformed)
		}
		if rsp.Match != nil && !*rsp.Match {
			return fmt.Errorf("smp upload: the device's check of the %d bytes it received failed (sha mismatch): %w", total, ErrCorruptUpload)
		}
		off = rsp.Off
		if o.Progress != nil {
			o.Progress(int(off), int(total))
		}
	}
	return nil
}

// ErrCorruptUpload means the device checked the whole upload against its
// SHA-256 and found a mismatch.
var ErrCorruptUpload = errors.New("upload corrupt")

// chunkRoom returns how many data bytes fit in one upload request with the
// other fields of req, in a packet of at most maxPkt bytes.
func chunkRoom(req UploadReq, maxPkt int) (int, error) {
	req.Data = []byte{}
	b, err := Marshal(req)
	if err != nil {
		return 0, err
	}
	room := maxPkt - HeaderSize - (len(b) - 1) // the empty bstr's one header byte
	for _, h := range []int{3, 2, 1} {         // CBOR bstr header for n < 65536, < 256, < 24
		n := room - h
		if n > 0 && bstrHeader(n) == h {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no room for data in a %d-byte packet: %w", maxPkt, ErrTooLong)
}

func bstrHeader(n int) int {
	switch {
	case n < 24:
		return 1
	case n < 256:
		return 2
	case n < 65536:
		return 3
	}
	return 5
}
