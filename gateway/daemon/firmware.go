package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/gateway/config"
	"github.com/drover-iot/drover/gateway/jobs"
	"github.com/drover-iot/drover/internal/sas"
)

// A firmware update of a bridged device is a job of kind firmware in the
// gateway's queue (docs/firmware.md, "The gateway's firmware job"). It comes
// from desired.firmware (one job per deployment and image, found again by
// its key after a restart) or from the firmwareUpdate method, and takes the
// queue's rules for disruptive work: maintenance window, in-use rule
// (unless forced), one job per device and per serial bus. Running, it
// checks trust and compatibility before a byte is downloaded, fetches the
// image once per gateway into the content-addressed cache, checks it again
// from the cached file, and flashes it through the device's plugin, which
// resumes from the offset the device holds; reported.firmware follows
// every step (firmware_report.go).

// MethodFirmwareUpdate is the direct method that asks for a firmware update.
const MethodFirmwareUpdate = "firmwareUpdate"

const (
	// firmwareAttempts bounds attempts that failed for a transient reason
	// (a download that gave up, a device that stopped answering mid-upload);
	// each attempt resumes where the last one stopped.
	firmwareAttempts = 5
	// downloadTimeout bounds one HTTP exchange of a download; a hub that
	// hangs mid-body is cut and the download resumed by the next attempt.
	downloadTimeout = 10 * time.Minute
	// tokenTTL is the lifetime of the SAS token of one download attempt.
	tokenTTL = time.Hour
)

// fwUpdater is the gateway's firmware machinery: trusted keys, image cache
// and the hub's HTTPS endpoint.
type fwUpdater struct {
	keys     firmware.KeySet
	cache    *firmware.Cache
	cacheMax int64
	client   *http.Client
	// hubBase is https://host:port of the hub; "" without uplink.
	hubBase string
	// authorize signs a download request as the gateway.
	authorize func(*http.Request) error
}

// openFirmware sets up the firmware cache and download client.
func (d *Daemon) openFirmware(cfg *config.Config) error {
	keys, err := firmware.NewKeySet(cfg.Firmware.TrustedKeys...)
	if err != nil {
		return fmt.Errorf("firmware.trusted_keys: %w", err)
	}
	cache, err := firmware.OpenCache(filepath.Join(cfg.Gateway.DataDir, "firmware"), int64(cfg.Firmware.CacheMax), firmware.CacheOptions{Now: d.now})
	if err != nil {
		return err
	}
	fw := &fwUpdater{keys: keys, cache: cache, cacheMax: int64(cfg.Firmware.CacheMax)}
	if d.gwKey != "" {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = d.tlsCfg.Clone()
		tr.ResponseHeaderTimeout = 30 * time.Second
		fw.client = &http.Client{Transport: tr, Timeout: downloadTimeout}
		addr := cfg.Upstream.HTTPSAddress
		if addr == "" {
			addr = net.JoinHostPort(d.hostName, "443")
		}
		fw.hubBase = "https://" + addr
		gwID, key, host := cfg.Gateway.ID, d.gwKey, d.hostName
		fw.authorize = func(r *http.Request) error {
			tok, err := sas.Sign(sas.DeviceResource(host, gwID), key, "", time.Now().Add(tokenTTL))
			if err != nil {
				return fmt.Errorf("sign download token: %w", err)
			}
			r.Header.Set("Authorization", tok)
			return nil
		}
	}
	d.fw = fw
	return nil
}

// source is where the image of a job is fetched from for device: a path on
// the hub with ?deviceId=<device> (the hub checks the gateway may fetch for
// it), signed as the gateway; or an https:// URL elsewhere, which never sees
// the gateway's credentials.
func (fw *fwUpdater) source(rawURL, device string) (firmware.Source, error) {
	if strings.HasPrefix(rawURL, "/") {
		if fw.hubBase == "" {
			return firmware.Source{}, fmt.Errorf("%w: image at %s is on the hub, and this gateway has no upstream", firmware.ErrTransfer, rawURL)
		}
		u, err := url.Parse(fw.hubBase + rawURL)
		if err != nil {
			return firmware.Source{}, fmt.Errorf("%w: image url %q: %w", firmware.ErrMalformed, rawURL, err)
		}
		q := u.Query()
		q.Set("deviceId", device)
		u.RawQuery = q.Encode()
		return firmware.Source{URL: u.String(), Authorize: fw.authorize}, nil
	}
	return firmware.Source{URL: rawURL}, nil
}

// downloader returns a downloader reporting its bytes to progress.
func (fw *fwUpdater) downloader(d *Daemon, device string, progress func(done, total int64)) *firmware.Downloader {
	client := fw.client
	if client == nil {
		client = &http.Client{Timeout: downloadTimeout}
	}
	return &firmware.Downloader{Client: client, Progress: progress, Logger: d.log.With("component", "firmware", "device", device)}
}

// firmwarePayload is the payload of a firmware job: what is needed to run
// it after a restart.
type firmwarePayload struct {
	URL        string          `json:"url"`
	Manifest   json.RawMessage `json:"manifest"`
	Deployment string          `json:"deployment,omitempty"`
}

// desiredFirmware turns a device's desired.firmware into a firmware job,
// once per deployment and image: the job's key finds the job again when
// the same desired document is delivered after a reconnect or restart. A
// document that cannot be read is reported as a failed update and queues
// nothing.
func (d *Daemon) desiredFirmware(id string, l *link, doc any) {
	if d.jobs == nil || doc == nil {
		return
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return
	}
	t, err := firmware.ParseDesired(raw)
	if err != nil {
		d.log.Warn("desired.firmware rejected", "device", id, "error", err)
		var dep struct {
			Version    any    `json:"version"` // any: a malformed document may have anything here
			Deployment string `json:"deployment"`
		}
		_ = json.Unmarshal(raw, &dep)
		version, _ := dep.Version.(string)
		l.Report(map[string]any{"firmware": failedPatch(err, version, dep.Deployment, d.now())})
		return
	}
	if d.deploymentEnded(id, t) {
		return
	}
	// The queue's keys are gateway-wide: the device is part of the key, or
	// every child of one deployment would find the first child's job.
	key := "firmware:" + id + ":" + t.Manifest.File.SHA256 + ":" + t.Deployment
	if _, err := d.submitFirmware(id, t, key, jobs.SourceDesired); err != nil {
		d.log.Warn("queue firmware update", "device", id, "error", err)
	}
}

// deploymentEnded reports whether the device already reported the outcome
// of t's deployment (current or failed): the job's key finds it too, but
// finished jobs are deleted after the queue's retention, and a desired
// document delivered again after that must not run a failed image again.
func (d *Daemon) deploymentEnded(id string, t *firmware.Target) bool {
	if t.Deployment == "" {
		return false
	}
	tw, err := d.cache.Get(context.Background(), id)
	if err != nil {
		return false
	}
	fw, _ := tw.Reported["firmware"].(map[string]any)
	st, _ := fw["status"].(string)
	dep, _ := fw["deployment"].(string)
	return dep == t.Deployment && (st == string(firmware.StatusFailed) || st == string(firmware.StatusCurrent))
}

// submitFirmware queues a firmware job for t, replacing the device's
// firmware jobs still waiting (a newer target wins; a running one ends).
func (d *Daemon) submitFirmware(device string, t *firmware.Target, key string, src jobs.Source) (jobID string, err error) {
	manifest, err := json.Marshal(t.Manifest)
	if err != nil {
		return "", fmt.Errorf("encode manifest: %w", err)
	}
	payload, err := json.Marshal(firmwarePayload{URL: t.URL, Manifest: manifest, Deployment: t.Deployment})
	if err != nil {
		return "", fmt.Errorf("encode firmware job: %w", err)
	}
	// Not bound to the caller: an accepted update must be stored.
	ctx := context.WithoutCancel(d.runCtx)
	j, err := d.submitJob(ctx, jobs.Spec{Kind: jobs.KindFirmware, Device: device, Bus: d.busOf(device), Payload: payload,
		Source: src, Force: t.Force, Key: key, Supersede: true, MaxAttempts: firmwareAttempts})
	if err != nil {
		return "", err
	}
	d.log.Info("firmware update queued", "device", device, "version", t.Manifest.UpdateID.Version, "deployment", t.Deployment, "job", j.ID)
	return j.ID, nil
}

// firmwareMethod answers firmwareUpdate: 202 with the job id once the
// request is queued. {"version"} alone takes the image desired.firmware
// names for that version; otherwise the payload carries url, sha256 and
// the signed manifest. A request that cannot be read is refused at once,
// with no job.
func (d *Daemon) firmwareMethod(ctx context.Context, device string, payload json.RawMessage, src jobs.Source) (int, any) {
	if d.childLink(device) == nil && d.busOf(device) == "" {
		return http.StatusNotFound, map[string]any{"error": fmt.Sprintf("unknown device %q", device)}
	}
	version, t, err := firmware.ParseUpdateRequest(payload)
	if err != nil {
		return http.StatusBadRequest, map[string]any{"error": err.Error()}
	}
	if t == nil {
		if t, err = d.knownTarget(ctx, device, version); err != nil {
			return http.StatusNotFound, map[string]any{"error": err.Error()}
		}
		t.Force = decodeForce(payload)
	}
	id, err := d.submitFirmware(device, t, "", src)
	if err != nil {
		return jobError(err)
	}
	return http.StatusAccepted, map[string]any{"jobId": id, "version": version}
}

// knownTarget finds the image of version in the device's cached
// desired.firmware, with its deployment.
func (d *Daemon) knownTarget(ctx context.Context, device, version string) (*firmware.Target, error) {
	t, err := d.cache.Get(ctx, device)
	if err == nil {
		if doc, ok := t.Desired["firmware"]; ok {
			raw, _ := json.Marshal(doc)
			// The deployment stays: a forced call for a deployment's image
			// carries that deployment on (its waiting job is superseded).
			if tg, err := firmware.ParseDesired(raw); err == nil && tg.Manifest.UpdateID.Version == version {
				return tg, nil
			}
		}
	}
	return nil, fmt.Errorf("firmwareUpdate: no image of version %q is known for %s (desired.firmware names another or none): give url, sha256 and manifest", version, device)
}

// checkTarget is what must hold before anything is downloaded or flashed:
// the manifest is signed by a trusted key and names the device's
// manufacturer and model (as its identify data reported them).
func (d *Daemon) checkTarget(ctx context.Context, device string, s *firmware.Signed) error {
	if len(d.fw.keys) == 0 {
		return fmt.Errorf("%w: this gateway trusts no key (firmware.trusted_keys is empty)", firmware.ErrUntrustedKey)
	}
	if err := d.fw.keys.Verify(s); err != nil {
		return err
	}
	manufacturer, model, err := d.identity(ctx, device)
	if err != nil {
		return err
	}
	if !s.Compatible(manufacturer, model) {
		return fmt.Errorf("%w: %s is %s %s; the image is for %s", firmware.ErrIncompatible, device, manufacturer, model, compatList(s.Compatibility))
	}
	return nil
}

// errNotIdentified defers a job until the device has reported who it is.
var errNotIdentified = errors.New("the device has not reported its manufacturer and model yet")

// identity is the device's manufacturer and model from reported.device.
func (d *Daemon) identity(ctx context.Context, device string) (manufacturer, model string, err error) {
	t, err := d.cache.Get(ctx, device)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", errNotIdentified, err)
	}
	dev, _ := t.Reported["device"].(map[string]any)
	manufacturer, _ = dev["manufacturer"].(string)
	model, _ = dev["model"].(string)
	if manufacturer == "" && model == "" {
		return "", "", errNotIdentified
	}
	return manufacturer, model, nil
}

func compatList(cs []firmware.Compatibility) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, c.Manufacturer+" "+c.Model)
	}
	return strings.Join(parts, ", ")
}
