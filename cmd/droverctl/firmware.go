package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/firmware"
	"github.com/drover-iot/drover/internal/serviceclient"
)

func (a *app) firmwareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Sign, publish and deploy firmware images",
		Long: `Firmware images are published to the hub with a signed manifest (update id,
compatible manufacturer and model, file size and SHA-256) and deployed to
devices by a twin job that sets desired.firmware; gateways download, verify
and flash them, and report progress in reported.firmware (docs/firmware.md).

An image is named by its update id PROVIDER/NAME/VERSION; where a command
takes an IMAGE, a bare VERSION is enough when only one image has it.`,
	}
	cmd.AddCommand(a.firmwareKeygenCmd(), a.firmwareUploadCmd(), a.firmwareListCmd(), a.firmwareShowCmd(),
		a.firmwareDeleteCmd(), a.firmwareDeployCmd(), a.firmwareStatusCmd())
	return cmd
}

func (a *app) firmwareKeygenCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen KEYFILE",
		Short: "Create an ed25519 signing key: writes the private key, prints the public key",
		Long: `Create an ed25519 signing key. The private key is written to KEYFILE (PKCS #8
PEM, mode 0600; an existing file is kept unless --force). The public key and
its key id are printed: put the public key in each gateway's
firmware.trusted_keys.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			priv, err := firmware.GenerateKey()
			if err != nil {
				return err
			}
			pemBytes, err := firmware.MarshalPrivateKey(priv)
			if err != nil {
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(path, flags, 0o600)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("write key: %s exists (use --force to replace it)", path)
			}
			if err != nil {
				return fmt.Errorf("write key: %w", err)
			}
			if _, err := f.Write(pemBytes); err != nil {
				f.Close()
				return fmt.Errorf("write key %s: %w", path, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write key %s: %w", path, err)
			}
			if err := os.Chmod(path, 0o600); err != nil {
				return fmt.Errorf("write key %s: %w", path, err)
			}
			pubKey, _ := priv.Public().(ed25519.PublicKey)
			pub, id := firmware.EncodePublicKey(pubKey), firmware.KeyID(pubKey)
			if a.wantJSON() {
				return writeJSON(a.stdout, map[string]string{"keyFile": path, "keyId": id, "publicKey": pub})
			}
			return writeKV(a.stdout, []kv{{"Private key", path}, {"Key ID", id}, {"Public key", pub}})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing KEYFILE")
	return cmd
}

// tokenize turns free text into an update-id token (letters, digits, . _ -).
func tokenize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

func (a *app) firmwareUploadCmd() *cobra.Command {
	var version, manufacturer, keyFile, provider, name string
	var models []string
	cmd := &cobra.Command{
		Use:   "upload IMAGE --version V --manufacturer M --model MODEL --key KEYFILE",
		Short: "Sign an image's manifest and upload both to the hub",
		Long: `Hash IMAGE, build its manifest (update id PROVIDER/NAME/VERSION, compatibility
MANUFACTURER × each --model, file name, size and SHA-256, creation time), sign
it with the ed25519 key in KEYFILE, and upload manifest and image. The hub
checks the signature and the bytes before it keeps anything.

PROVIDER defaults to the manufacturer and NAME to the first model (characters
other than letters, digits, '.', '_' and '-' become '-').`,
		Example: `  droverctl firmware upload mcu-2.1.0.bin --version 2.1.0 --manufacturer Acme --model mcu-7 --key fw.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			what := "upload " + path
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("%s: read key: %w", what, err)
			}
			priv, err := firmware.ParsePrivateKey(keyPEM)
			if err != nil {
				return fmt.Errorf("%s: key %s: %w", what, keyFile, err)
			}
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			defer f.Close()
			h := sha256.New()
			size, err := io.Copy(h, f)
			if err != nil {
				return fmt.Errorf("%s: read image: %w", what, err)
			}
			if provider == "" {
				provider = tokenize(manufacturer)
			}
			if name == "" && len(models) > 0 {
				name = tokenize(models[0])
			}
			m := firmware.Manifest{
				UpdateID: firmware.UpdateID{Provider: provider, Name: name, Version: version},
				File:     firmware.File{Name: filepath.Base(path), Size: size, SHA256: hex.EncodeToString(h.Sum(nil))},
				// CreatedAt is the signing time.
				CreatedAt: time.Now(),
			}
			for _, model := range models {
				m.Compatibility = append(m.Compatibility, firmware.Compatibility{Manufacturer: manufacturer, Model: model})
			}
			signed, err := firmware.Sign(m, priv)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			doc, err := json.Marshal(signed)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			im, err := c.UploadImage(ctx, doc, f)
			if err != nil {
				return fail(ctx, what, err)
			}
			return a.printImage(im)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&version, "version", "", "the image's version (letters, digits, . _ + -)")
	fl.StringVar(&manufacturer, "manufacturer", "", "manufacturer of the compatible devices, as they identify")
	fl.StringArrayVar(&models, "model", nil, "model of the compatible devices, as they identify (repeat for several)")
	fl.StringVar(&keyFile, "key", "", "ed25519 private key file (from firmware keygen)")
	fl.StringVar(&provider, "provider", "", "update id provider (default: the manufacturer)")
	fl.StringVar(&name, "name", "", "update id name (default: the first model)")
	for _, req := range []string{"version", "manufacturer", "model", "key"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

func (a *app) printImage(im *serviceclient.Image) error {
	if a.wantJSON() {
		return writeJSON(a.stdout, im)
	}
	return renderImage(a.stdout, im)
}

// renderImage prints one image as key/value lines.
func renderImage(w io.Writer, im *serviceclient.Image) error {
	pairs := []kv{
		{"Image", im.ID}, {"Version", im.UpdateID.Version}, {"Compatibility", compatText(im.Compatibility)},
		{"File", im.File.Name}, {"Size", strconv.FormatInt(im.File.Size, 10)}, {"SHA-256", im.File.SHA256},
		{"Signed by key", im.KeyID}, {"Created", im.CreatedAt}, {"Uploaded", hubTime(im.UploadedTime)}, {"URL", im.URL},
	}
	return writeKV(w, pairs)
}

// renderImageList prints images as a table.
func renderImageList(w io.Writer, ims []serviceclient.Image) error {
	rows := make([][]string, len(ims))
	for i, im := range ims {
		short := im.File.SHA256
		if len(short) > 12 {
			short = short[:12]
		}
		rows[i] = []string{im.ID, im.UpdateID.Version, compatText(im.Compatibility), strconv.FormatInt(im.File.Size, 10), short, im.KeyID, hubTime(im.UploadedTime)}
	}
	return writeTable(w, []string{"IMAGE", "VERSION", "COMPATIBILITY", "SIZE", "SHA-256", "KEY", "UPLOADED"}, rows)
}

func compatText(cs []firmware.Compatibility) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Manufacturer + " " + c.Model
	}
	return strings.Join(parts, ", ")
}

func (a *app) firmwareListCmd() *cobra.Command {
	var f serviceclient.ImageFilter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the hub's firmware images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			ims, err := c.ListImages(ctx, f)
			if err != nil {
				return fail(ctx, "list firmware images", err)
			}
			if a.wantJSON() {
				return writeJSON(a.stdout, ims)
			}
			return renderImageList(a.stdout, ims)
		},
	}
	cmd.Flags().StringVar(&f.Version, "version", "", "only images of this version")
	cmd.Flags().StringVar(&f.Model, "model", "", "only images compatible with this model")
	cmd.Flags().StringVar(&f.Manufacturer, "manufacturer", "", "only images compatible with this manufacturer")
	return cmd
}

// resolveImage finds an image by PROVIDER/NAME/VERSION, or by VERSION (and
// model) when exactly one image matches.
func resolveImage(ctx context.Context, c *serviceclient.Client, ref, model string) (*serviceclient.Image, error) {
	if parts := strings.Split(ref, "/"); len(parts) == 3 {
		return c.GetImage(ctx, firmware.UpdateID{Provider: parts[0], Name: parts[1], Version: parts[2]})
	} else if len(parts) != 1 || ref == "" {
		return nil, fmt.Errorf("image %q: want PROVIDER/NAME/VERSION or VERSION", ref)
	}
	ims, err := c.ListImages(ctx, serviceclient.ImageFilter{Version: ref, Model: model})
	if err != nil {
		return nil, err
	}
	switch len(ims) {
	case 0:
		if model != "" {
			return nil, fmt.Errorf("no image of version %s for model %s", ref, model)
		}
		return nil, fmt.Errorf("no image of version %s", ref)
	case 1:
		return &ims[0], nil
	}
	ids := make([]string, len(ims))
	for i, im := range ims {
		ids[i] = im.ID
	}
	return nil, fmt.Errorf("version %s names %d images (%s): give PROVIDER/NAME/VERSION or --model", ref, len(ims), strings.Join(ids, ", "))
}

func (a *app) firmwareShowCmd() *cobra.Command {
	var model string
	var manifest bool
	cmd := &cobra.Command{
		Use:   "show IMAGE",
		Short: "Show an image (PROVIDER/NAME/VERSION, or VERSION)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			im, err := resolveImage(ctx, c, args[0], model)
			if err != nil {
				return fail(ctx, "show image "+args[0], err)
			}
			if manifest {
				_, err := fmt.Fprintf(a.stdout, "%s\n", im.Manifest)
				return err
			}
			return a.printImage(im)
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "with a bare VERSION: the model the image is for")
	cmd.Flags().BoolVar(&manifest, "manifest", false, "print the signed manifest document only")
	return cmd
}

func (a *app) firmwareDeleteCmd() *cobra.Command {
	var model string
	cmd := &cobra.Command{
		Use:   "delete IMAGE",
		Short: "Delete an image (PROVIDER/NAME/VERSION, or VERSION)",
		Long: `Delete an image from the hub. Devices told to install it can no longer
download it; those that have it cached are not affected.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			what := "delete image " + args[0]
			im, err := resolveImage(ctx, c, args[0], model)
			if err != nil {
				return fail(ctx, what, err)
			}
			if err := c.DeleteImage(ctx, im.UpdateID); err != nil {
				return fail(ctx, what, err)
			}
			if a.wantJSON() {
				return writeJSON(a.stdout, map[string]string{"deleted": im.ID})
			}
			_, err = fmt.Fprintf(a.stdout, "Deleted image %s\n", im.ID)
			return err
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "with a bare VERSION: the model the image is for")
	return cmd
}

// awaitFirmware is the deployment's awaitReported: a device succeeds when it
// runs the version, fails when its gateway reports this deployment failed.
func awaitFirmware(version, deployment string) *serviceclient.JobAwait {
	return &serviceclient.JobAwait{
		Succeeded: "properties.reported.firmware.status = 'current' AND properties.reported.firmware.currentVersion = " + quoteQuery(version),
		Failed:    "properties.reported.firmware.status = 'failed' AND properties.reported.firmware.deployment = " + quoteQuery(deployment),
	}
}

// modelPath is where a device's model is in its twin (its identify data).
const modelPath = "properties.reported.device.model"

// quoteQuery writes s as a query string literal.
func quoteQuery(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// deployCondition narrows the operator's condition to devices of the model.
func deployCondition(cond, model string) string {
	m := modelPath + " = " + quoteQuery(model)
	if c := strings.TrimSpace(cond); c != "" && c != "*" {
		return "(" + c + ") AND " + m
	}
	return m
}

func (a *app) firmwareDeployCmd() *cobra.Command {
	var f jobFlags
	var version, model, jobID string
	var noAwait bool
	cmd := &cobra.Command{
		Use:   "deploy --version V --model MODEL --query CONDITION [rollout and abort flags]",
		Short: "Deploy an image: a twin job setting desired.firmware on matching devices",
		Long: `Create a twin job that sets desired.firmware (version, update id, download URL,
size, SHA-256 and the signed manifest) on every device matching --query
whose identify data says it is a MODEL (` + modelPath + `). The image
is the one of version V compatible with MODEL. Each device's gateway then
downloads, verifies and flashes it; follow with firmware status.

Each device's job record stays running until the device reports the outcome
(the job's awaitReported): it succeeds when reported.firmware says current at
V, and fails when the gateway reports this deployment failed. So the rollout
rate paces real updates, at most 32 devices update at once, and
--abort-threshold P% --abort-min N stops the rollout (cancelling devices not
yet finished) when too many updates fail. --device-timeout bounds each
device's update; --no-await ends each device once desired.firmware is written.

Rollout flags are those of job create: --rate N/min, --rate-factor,
--rate-every, --rate-max, --start, --max-time; --wait follows the job.`,
		Example: `  droverctl firmware deploy --version 2.1.0 --model mcu-7 --query "tags.site = 'plant1'" --rate 10/min --wait`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			what := "deploy " + version + " to " + model
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			im, err := resolveImage(ctx, c, version, model)
			if err != nil {
				return fail(ctx, what, err)
			}
			if jobID == "" {
				jobID = "firmware-" + tokenize(model) + "-" + tokenize(im.UpdateID.Version) + "-" + time.Now().UTC().Format("20060102T150405Z")
			}
			desired, err := json.Marshal(map[string]any{"firmware": firmware.Desired{
				Version: im.UpdateID.Version, UpdateID: im.UpdateID, URL: im.URL,
				SHA256: im.File.SHA256, Size: im.File.Size, Manifest: im.Manifest, Deployment: jobID,
			}})
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			f.typ, f.desired, f.tags, f.method = "twin", string(desired), "", ""
			f.query = deployCondition(f.query, model)
			req, err := f.request(jobID, time.Now())
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if !noAwait {
				req.AwaitReported = awaitFirmware(im.UpdateID.Version, jobID)
			}
			j, err := c.CreateJob(ctx, req)
			if err != nil {
				return fail(ctx, what, err)
			}
			if !f.wait {
				return a.printJob(j, nil)
			}
			return a.watchJob(cmd.Context(), c, j, f.interval)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&version, "version", "", "version of the image to deploy")
	fl.StringVar(&model, "model", "", "model of the devices to update (the image must be compatible)")
	fl.StringVar(&f.query, "query", "", "WHERE condition selecting the devices, or * for every device of the model")
	fl.StringVar(&jobID, "job-id", "", "id of the job (default firmware-MODEL-VERSION-TIME)")
	fl.StringVar(&f.start, "start", "", "start `TIME` (RFC 3339, or +DURATION from now); default now")
	fl.DurationVar(&f.maxTime, "max-time", 24*time.Hour, "maximum execution time of the deployment")
	fl.StringVar(&f.rate, "rate", "", "rollout: devices started per minute (`N/min`)")
	fl.Float64Var(&f.rateFactor, "rate-factor", 0, "rollout: multiply the rate by `F` after every --rate-every successes")
	fl.IntVar(&f.rateEvery, "rate-every", 0, "rollout: successes `N` between rate increases")
	fl.StringVar(&f.rateMax, "rate-max", "", "rollout: highest rate with --rate-factor (`N/min`)")
	fl.StringVar(&f.abortThreshold, "abort-threshold", "", "abort the rollout when this share of finished devices failed (`P%`)")
	fl.IntVar(&f.abortMin, "abort-min", 0, "abort: devices `N` that must finish before the threshold applies")
	fl.DurationVar(&f.deviceTimeout, "device-timeout", 0, "time limit for each device's update (default: the job's --max-time)")
	fl.BoolVar(&noAwait, "no-await", false, "end each device's record once desired.firmware is written, without waiting for its outcome")
	fl.BoolVar(&f.wait, "wait", false, "follow the job with a progress line until it ends")
	fl.DurationVar(&f.interval, "interval", defaultWatchInterval, "how often --wait polls the job")
	_ = fl.MarkHidden("interval")
	f.retryOn = "failed,timeout"
	for _, req := range []string{"version", "model", "query"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

// fleetStatus is the fleet's firmware state for one version.
type fleetStatus struct {
	Version string         `json:"version"`
	Total   int            `json:"total"`
	Counts  map[string]int `json:"counts"` // status (failed ones as "failed: RESULT") → devices
}

// pendingStatus counts targeted devices whose gateway has not reported on
// this version yet (no status, or a status about an earlier version).
const pendingStatus = "pending"

// done is how many devices reached an end (current or failed).
func (s fleetStatus) done() (current, failed int) {
	for k, n := range s.Counts {
		switch {
		case k == string(firmware.StatusCurrent):
			current += n
		case k == string(firmware.StatusFailed) || strings.HasPrefix(k, string(firmware.StatusFailed)+":"):
			failed += n
		}
	}
	return current, failed
}

// statusQuery groups the devices whose desired.firmware.version is version by
// reported status, version and result. The status says nothing about this
// version until reported.firmware.pendingVersion or currentVersion names it.
func statusQuery(version, model string) string {
	q := "SELECT properties.reported.firmware.status AS status, properties.reported.firmware.pendingVersion AS pending, " +
		"properties.reported.firmware.currentVersion AS current, properties.reported.firmware.result AS result, COUNT() AS n " +
		"FROM devices WHERE properties.desired.firmware.version = " + quoteQuery(version)
	if model != "" {
		q += " AND " + modelPath + " = " + quoteQuery(model)
	}
	return q + " GROUP BY properties.reported.firmware.status, properties.reported.firmware.pendingVersion, " +
		"properties.reported.firmware.currentVersion, properties.reported.firmware.result"
}

// foldStatus turns the query's groups into counts per status for version.
func foldStatus(version string, rows []json.RawMessage) (fleetStatus, error) {
	s := fleetStatus{Version: version, Counts: map[string]int{}}
	for _, raw := range rows {
		var g struct {
			Status, Pending, Current, Result any // a device may report anything
			N                                int
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			return s, fmt.Errorf("status query row %s: %w", raw, err)
		}
		str := func(v any) string {
			if s, ok := v.(string); ok {
				return s
			}
			return ""
		}
		st, pending, current := str(g.Status), str(g.Pending), str(g.Current)
		key := pendingStatus
		switch {
		case st == string(firmware.StatusCurrent) && current == version:
			key = st
		case st == "" || (pending != version && current != version):
			// Not about this version yet.
		case st == string(firmware.StatusFailed) && str(g.Result) != "":
			key = st + ": " + str(g.Result)
		case st != string(firmware.StatusCurrent) && st != string(firmware.StatusIdle):
			key = st
		}
		s.Counts[key] += g.N
		s.Total += g.N
	}
	return s, nil
}

// statusOrder sorts statuses along the state machine, failures last.
var statusOrder = map[string]int{
	pendingStatus: 0, "idle": 1, "downloading": 2, "downloaded": 3, "verifying": 4, "applying": 5,
	"rebooting": 6, "confirming": 7, "current": 8, "failed": 9,
}

func sortedStatuses(c map[string]int) []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		base, _, _ := strings.Cut(k, ":")
		if r, ok := statusOrder[base]; ok {
			return r
		}
		return len(statusOrder)
	}
	sort.Slice(keys, func(i, j int) bool {
		if ri, rj := rank(keys[i]), rank(keys[j]); ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	return keys
}

func (a *app) firmwareStatusCmd() *cobra.Command {
	var version, model string
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status --version V [--model MODEL] [--watch]",
		Short: "Show the fleet's progress towards a version, by reported.firmware.status",
		Long: `Count the devices whose desired.firmware.version is V by their
reported.firmware.status (one GROUP BY query). Devices whose gateway has not
reported on V yet count as pending; failures are split by result code.
--watch follows with a progress bar until every device is current or failed
and no deployment of V is still writing desired.firmware (a --rate rollout
reaches the fleet in waves); at once when nothing targets V.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := statusQuery(version, model)
			fetch := func(ctx context.Context) (fleetStatus, error) {
				ctx, cancel := context.WithTimeout(ctx, defaultTimeout)
				defer cancel()
				rows, err := c.QueryAll(ctx, q, 0)
				if err != nil {
					return fleetStatus{}, fail(ctx, "firmware status "+version, err)
				}
				return foldStatus(version, rows)
			}
			ctx := cmd.Context()
			if !watch || a.timeoutSet {
				var cancel context.CancelFunc
				ctx, cancel = a.withTimeout(ctx)
				defer cancel()
			}
			s, err := fetch(ctx)
			if err != nil {
				return err
			}
			if watch {
				rolling := func(ctx context.Context) (bool, error) {
					ctx, cancel := context.WithTimeout(ctx, defaultTimeout)
					defer cancel()
					js, err := c.ListJobs(ctx, "scheduleUpdateTwin", "")
					if err != nil {
						return false, fail(ctx, "firmware status "+version, err)
					}
					return deploying(js, version), nil
				}
				if s, err = a.watchFleet(ctx, s, fetch, rolling, interval); err != nil {
					return err
				}
			}
			return a.printFleet(s)
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the target version")
	cmd.Flags().StringVar(&model, "model", "", "only devices of this model")
	cmd.Flags().BoolVar(&watch, "watch", false, "follow with a progress bar until every device is current or failed")
	cmd.Flags().DurationVar(&interval, "interval", defaultWatchInterval, "how often --watch queries")
	_ = cmd.Flags().MarkHidden("interval")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

// watchFleet polls until every targeted device is current or failed,
// showing a bar in place on a terminal and a line per change otherwise.
// A deployment paced by --rate writes desired.firmware in waves: while one
// is still running (rolling says so) the devices counted so far are not the
// whole fleet, so the watch goes on.
func (a *app) watchFleet(ctx context.Context, s fleetStatus, fetch func(context.Context) (fleetStatus, error),
	rolling func(context.Context) (bool, error), interval time.Duration) (fleetStatus, error) {
	if interval <= 0 {
		interval = defaultWatchInterval
	}
	out, tty := a.stdout, watchTTY(a.stdout)
	if a.wantJSON() {
		out, tty = a.stderr, watchTTY(a.stderr)
		if !tty {
			out = nil
		}
	}
	last, shown := "", false
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		cur, failed := s.done()
		line := fleetLine(s)
		if out != nil && line != last {
			last = line
			if tty {
				fmt.Fprintf(out, "\r%s %s\x1b[K", bar(cur+failed, s.Total), line)
				shown = true
			} else {
				fmt.Fprintln(out, line)
			}
		}
		if cur+failed == s.Total { // every device ended, or none is targeted
			more, err := rolling(ctx)
			if err != nil {
				if shown {
					fmt.Fprintln(out)
				}
				return s, err
			}
			if !more {
				break
			}
		}
		select {
		case <-ctx.Done():
			if shown {
				fmt.Fprintln(out)
			}
			return s, fail(ctx, "watch firmware "+s.Version, context.Cause(ctx))
		case <-tick.C:
		}
		next, err := fetch(ctx)
		if err != nil {
			if shown {
				fmt.Fprintln(out)
			}
			return s, err
		}
		s = next
	}
	if shown {
		fmt.Fprintln(out)
	}
	return s, nil
}

// deploying reports whether one of jobs is a deployment of version that has
// not ended: a twin job whose desired patch sets firmware.version.
func deploying(jobs []serviceclient.Job, version string) bool {
	for _, j := range jobs {
		if j.Done() || j.UpdateTwin == nil || j.UpdateTwin.Properties == nil {
			continue
		}
		var d struct {
			Firmware struct {
				Version string `json:"version"`
			} `json:"firmware"`
		}
		if json.Unmarshal(j.UpdateTwin.Properties.Desired, &d) == nil && d.Firmware.Version == version {
			return true
		}
	}
	return false
}

// bar draws done out of total, 20 cells wide.
func bar(done, total int) string {
	const width = 20
	filled := 0
	if total > 0 {
		filled = min(max(done*width/total, 0), width)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]"
}

// fleetLine is "firmware 2.1.0: 40/50 current, 2 failed, 8 in progress".
func fleetLine(s fleetStatus) string {
	cur, failed := s.done()
	return fmt.Sprintf("firmware %s: %d/%d current, %d failed, %d in progress", s.Version, cur, s.Total, failed, s.Total-cur-failed)
}

func (a *app) printFleet(s fleetStatus) error {
	if a.wantJSON() {
		return writeJSON(a.stdout, s)
	}
	return renderFleet(a.stdout, s)
}

// renderFleet prints the progress line and the devices per status.
func renderFleet(w io.Writer, s fleetStatus) error {
	if _, err := fmt.Fprintln(w, fleetLine(s)); err != nil {
		return err
	}
	keys := sortedStatuses(s.Counts)
	rows := make([][]string, len(keys))
	for i, k := range keys {
		rows[i] = []string{k, strconv.Itoa(s.Counts[k])}
	}
	return writeTable(w, []string{"STATUS", "DEVICES"}, rows)
}
