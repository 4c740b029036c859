package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/serviceclient"
)

// defaultWatchInterval is how often --watch and --wait poll the job.
const defaultWatchInterval = time.Second

func (a *app) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Schedule twin updates and direct methods over many devices (Jobs v2)",
		Long: `Jobs run a twin update (tags and desired properties) or a direct method on
every device matching a query condition, now or at a start time, bounded by a
maximum execution time. localhub adds rollout control: devices per minute,
abort thresholds, per-device timeouts and retries.`,
	}
	cmd.AddCommand(a.jobCreateCmd(), a.jobShowCmd(), a.jobListCmd(), a.jobCancelCmd())
	return cmd
}

// jobFlags are the options of job create.
type jobFlags struct {
	typ, query, desired, tags, method, payload, start, rate, rateMax, abortThreshold, retryOn string
	methodTimeout, connectTimeout, maxTime, deviceTimeout, interval                           time.Duration
	rateFactor                                                                                float64
	rateEvery, abortMin, retries                                                              int
	wait                                                                                      bool
}

func (a *app) jobCreateCmd() *cobra.Command {
	var f jobFlags
	cmd := &cobra.Command{
		Use:   "create ID --type twin|method --query CONDITION ...",
		Short: "Create a job that updates twins or calls a method on matching devices",
		Long: `Create a job over the devices matching --query (a WHERE condition, or * for
all devices). A twin job (--type twin) merge-patches --desired and/or --tags
into every twin; devices that are offline get the change when they connect.
A method job (--type method) calls --method on every device; devices that are
not connected fail.

--start takes an RFC 3339 time or +DURATION (from now). --rate N/min limits
how many devices start per minute; with --rate-factor F and --rate-every N the
rate grows F-fold after every N successes, up to --rate-max.
--abort-threshold P% --abort-min N fails the job, cancelling the devices not
yet started, once at least N devices have finished and P% of them failed.
--wait follows the job with a progress line until it ends; the exit code is 1
when it ends failed or cancelled.`,
		Example: `  droverctl job create fw-21 --type twin --query "tags.site = 'plant1'" --desired '{"fw":"2.1"}' --rate 10/min --wait
  droverctl job create reboot-all --type method --method reboot --query "*" --start +1h --abort-threshold 20% --abort-min 10`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			what := "create job " + id
			req, err := f.request(id, time.Now())
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			j, err := c.CreateJob(ctx, req)
			cancel()
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
	fl.StringVar(&f.typ, "type", "", "job type: twin (scheduleUpdateTwin) or method (scheduleDeviceMethod)")
	fl.StringVar(&f.query, "query", "", "WHERE condition selecting the devices, or * for all")
	fl.StringVar(&f.desired, "desired", "", "twin job: desired-properties patch (JSON object)")
	fl.StringVar(&f.tags, "tags", "", "twin job: tags patch (JSON object)")
	fl.StringVar(&f.method, "method", "", "method job: the direct method's name")
	fl.StringVar(&f.payload, "payload", "", "method job: the method's payload (JSON)")
	fl.DurationVar(&f.methodTimeout, "method-timeout", 30*time.Second, "method job: how long each device has to answer")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", 0, "method job: how long to wait for a disconnected device to connect")
	fl.StringVar(&f.start, "start", "", "start `TIME` (RFC 3339, or +DURATION from now); default now")
	fl.DurationVar(&f.maxTime, "max-time", time.Hour, "maximum execution time of the job")
	fl.StringVar(&f.rate, "rate", "", "rollout: devices started per minute (`N/min`)")
	fl.Float64Var(&f.rateFactor, "rate-factor", 0, "rollout: multiply the rate by `F` after every --rate-every successes")
	fl.IntVar(&f.rateEvery, "rate-every", 0, "rollout: successes `N` between rate increases")
	fl.StringVar(&f.rateMax, "rate-max", "", "rollout: highest rate with --rate-factor (`N/min`)")
	fl.StringVar(&f.abortThreshold, "abort-threshold", "", "abort the job when this share of finished devices failed (`P%`)")
	fl.IntVar(&f.abortMin, "abort-min", 0, "abort: devices `N` that must finish before the threshold applies")
	fl.DurationVar(&f.deviceTimeout, "device-timeout", 0, "time limit for each device's attempt")
	fl.IntVar(&f.retries, "retries", 0, "retry a failed device attempt up to `N` times")
	fl.StringVar(&f.retryOn, "retry-on", "failed,timeout", "failure types retried: failed, timeout")
	fl.BoolVar(&f.wait, "wait", false, "follow the job with a progress line until it ends")
	fl.DurationVar(&f.interval, "interval", defaultWatchInterval, "how often --wait polls the job")
	_ = fl.MarkHidden("interval")
	_ = cmd.MarkFlagRequired("type")
	_ = cmd.MarkFlagRequired("query")
	cmd.MarkFlagsMutuallyExclusive("method", "desired")
	cmd.MarkFlagsMutuallyExclusive("method", "tags")
	return cmd
}

// request builds the job body from the flags; now anchors --start +DURATION.
func (f *jobFlags) request(id string, now time.Time) (serviceclient.JobRequest, error) {
	req := serviceclient.JobRequest{JobID: id, QueryCondition: strings.TrimSpace(f.query)}
	if req.QueryCondition == "" {
		return req, errors.New("--query is empty (use * for all devices)")
	}
	switch strings.ToLower(f.typ) {
	case "twin", strings.ToLower(serviceclient.JobTypeUpdateTwin):
		req.Type = serviceclient.JobTypeUpdateTwin
		if f.desired == "" && f.tags == "" {
			return req, errors.New("a twin job needs --desired and/or --tags")
		}
		p := &serviceclient.JobTwinPatch{Etag: "*"}
		if f.tags != "" {
			if err := jsonObject("--tags", f.tags); err != nil {
				return req, err
			}
			p.Tags = json.RawMessage(f.tags)
		}
		if f.desired != "" {
			if err := jsonObject("--desired", f.desired); err != nil {
				return req, err
			}
			p.Properties = &serviceclient.JobTwinPatchDesired{Desired: json.RawMessage(f.desired)}
		}
		req.UpdateTwin = p
	case "method", strings.ToLower(serviceclient.JobTypeDeviceMethod):
		req.Type = serviceclient.JobTypeDeviceMethod
		if f.method == "" {
			return req, errors.New("a method job needs --method")
		}
		m := &serviceclient.MethodRequest{MethodName: f.method, ResponseTimeoutInSeconds: seconds(f.methodTimeout), ConnectTimeoutInSeconds: seconds(f.connectTimeout)}
		if f.methodTimeout <= 0 {
			return req, errors.New("--method-timeout must be positive")
		}
		if f.payload != "" {
			if !json.Valid([]byte(f.payload)) {
				return req, errors.New("--payload is not valid JSON")
			}
			m.Payload = json.RawMessage(f.payload)
		}
		req.CloudToDeviceMethod = m
	default:
		return req, fmt.Errorf("--type %q: want twin or method", f.typ)
	}
	if f.start != "" {
		t, err := parseStart(f.start, now)
		if err != nil {
			return req, err
		}
		req.StartTime = &t
	}
	if f.maxTime <= 0 {
		return req, errors.New("--max-time must be positive")
	}
	req.MaxExecutionTimeInSeconds = int64(seconds(f.maxTime))
	if f.deviceTimeout < 0 {
		return req, errors.New("--device-timeout must not be negative")
	}
	req.DeviceTimeoutInSeconds = int64(seconds(f.deviceTimeout))
	if err := f.rollout(&req); err != nil {
		return req, err
	}
	if f.abortThreshold != "" {
		p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(f.abortThreshold), "%"), 64)
		if err != nil || p <= 0 || p > 100 {
			return req, fmt.Errorf("--abort-threshold %q: want a percentage such as 20%%", f.abortThreshold)
		}
		if f.abortMin < 0 {
			return req, errors.New("--abort-min must not be negative")
		}
		req.Abort = &serviceclient.JobAbort{FailureThresholdPercent: p, MinDevices: f.abortMin}
	} else if f.abortMin != 0 {
		return req, errors.New("--abort-min needs --abort-threshold")
	}
	if f.retries < 0 {
		return req, errors.New("--retries must not be negative")
	}
	if f.retries > 0 {
		var on []string
		for _, s := range strings.Split(f.retryOn, ",") {
			s = strings.TrimSpace(s)
			if s != "failed" && s != "timeout" {
				return req, fmt.Errorf("--retry-on %q: want failed and/or timeout", s)
			}
			on = append(on, s)
		}
		req.Retry = &serviceclient.JobRetry{MaxAttempts: f.retries + 1, On: on}
	}
	return req, nil
}

func (f *jobFlags) rollout(req *serviceclient.JobRequest) error {
	if f.rate == "" {
		if f.rateFactor != 0 || f.rateEvery != 0 || f.rateMax != "" {
			return errors.New("--rate-factor, --rate-every and --rate-max need --rate")
		}
		return nil
	}
	rate, err := parseRate("--rate", f.rate)
	if err != nil {
		return err
	}
	if f.rateFactor == 0 && f.rateEvery == 0 && f.rateMax == "" {
		req.Rollout = &serviceclient.JobRollout{Type: serviceclient.RolloutConstant, DevicesPerMinute: rate}
		return nil
	}
	if f.rateFactor <= 1 || f.rateEvery < 1 {
		return errors.New("an increasing rate needs --rate-factor above 1 and --rate-every of at least 1")
	}
	r := &serviceclient.JobRollout{Type: serviceclient.RolloutExponential, BaseRatePerMinute: rate, IncrementFactor: f.rateFactor,
		RateIncreaseCriteria: &serviceclient.JobRateIncrease{NumberOfSucceeded: f.rateEvery}}
	if f.rateMax != "" {
		if r.DevicesPerMinute, err = parseRate("--rate-max", f.rateMax); err != nil {
			return err
		}
	}
	req.Rollout = r
	return nil
}

// parseRate reads "N/min" (or a bare N) as devices per minute.
func parseRate(flag, s string) (int, error) {
	v := strings.TrimSpace(s)
	for _, suffix := range []string{"/min", "/m"} {
		v = strings.TrimSuffix(v, suffix)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s %q: want devices per minute such as 10/min", flag, s)
	}
	return n, nil
}

// parseStart reads an RFC 3339 time or +DURATION after now.
func parseStart(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil || dur < 0 {
			return time.Time{}, fmt.Errorf("--start %q: want +DURATION such as +30m", s)
		}
		return now.Add(dur).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--start %q: want an RFC 3339 time such as 2025-06-01T02:00:00Z, or +DURATION", s)
	}
	return t.UTC(), nil
}

func jsonObject(flag, s string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return fmt.Errorf("%s is not a JSON object", flag)
	}
	return nil
}

func (a *app) jobShowCmd() *cobra.Command {
	var watch, devices bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a job's status and device counts",
		Long: `Show a job: its status, schedule and how many devices succeeded, failed, are
running or pending. --devices adds one row per device. --watch follows a
running job with a progress line until it ends.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			j, err := c.GetJob(ctx, args[0])
			cancel()
			if err != nil {
				return fail(ctx, "show job "+args[0], err)
			}
			if watch && !j.Done() {
				return a.watchJob(cmd.Context(), c, j, interval)
			}
			var recs []serviceclient.DeviceJob
			if devices {
				ctx, cancel := a.withTimeout(cmd.Context())
				defer cancel()
				if recs, err = c.DeviceJobs(ctx, j.JobID); err != nil {
					return fail(ctx, "list devices of job "+j.JobID, err)
				}
			}
			return a.printJob(j, recs)
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "follow the job with a progress line until it ends")
	cmd.Flags().BoolVar(&devices, "devices", false, "list each device's status and result")
	cmd.Flags().DurationVar(&interval, "interval", defaultWatchInterval, "how often --watch polls the job")
	_ = cmd.Flags().MarkHidden("interval")
	return cmd
}

func (a *app) jobListCmd() *cobra.Command {
	var typ, status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch strings.ToLower(typ) {
			case "":
			case "twin":
				typ = serviceclient.JobTypeUpdateTwin
			case "method":
				typ = serviceclient.JobTypeDeviceMethod
			}
			return show(cmd.Context(), a, "list jobs", func(ctx context.Context, c *serviceclient.Client) ([]serviceclient.Job, error) {
				return c.ListJobs(ctx, typ, status)
			}, renderJobList)
		},
	}
	cmd.Flags().StringVar(&typ, "type", "", "only jobs of this type: twin or method")
	cmd.Flags().StringVar(&status, "status", "", "only jobs with this status: queued, scheduled, running, completed, failed or cancelled")
	return cmd
}

func (a *app) jobCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job: devices not yet started are cancelled, running ones finish",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := fetch(cmd.Context(), a, "cancel job "+args[0], func(ctx context.Context, c *serviceclient.Client) (*serviceclient.Job, error) {
				return c.CancelJob(ctx, args[0])
			})
			if err != nil {
				return err
			}
			return a.printJob(j, nil)
		},
	}
}

// printJob prints a job (and its device records, when given).
func (a *app) printJob(j *serviceclient.Job, recs []serviceclient.DeviceJob) error {
	if a.wantJSON() {
		if recs != nil {
			return writeJSON(a.stdout, struct {
				*serviceclient.Job
				Devices []serviceclient.DeviceJob `json:"devices"`
			}{j, recs})
		}
		return writeJSON(a.stdout, j)
	}
	if err := renderJob(a.stdout, j); err != nil {
		return err
	}
	if recs != nil {
		if _, err := fmt.Fprintln(a.stdout); err != nil {
			return err
		}
		return renderDeviceJobs(a.stdout, recs)
	}
	return nil
}

// watchJob polls a job until it ends, showing a progress line, then prints
// the job. It fails when the job ends failed or cancelled. The global
// --timeout bounds the watch only when it was given explicitly.
func (a *app) watchJob(ctx context.Context, c *serviceclient.Client, j *serviceclient.Job, interval time.Duration) error {
	if a.timeoutSet {
		var cancel context.CancelFunc
		ctx, cancel = a.withTimeout(ctx)
		defer cancel()
	}
	if interval <= 0 {
		interval = defaultWatchInterval
	}
	// Progress goes to stdout in table mode; with -o json, stdout holds only
	// the final JSON and the progress line is shown on a terminal's stderr.
	out, tty := a.stdout, watchTTY(a.stdout)
	if a.wantJSON() {
		out, tty = a.stderr, watchTTY(a.stderr)
		if !tty {
			out = nil
		}
	}
	p := &progressLine{w: out, tty: tty}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		p.show(j)
		if j.Done() {
			break
		}
		select {
		case <-ctx.Done():
			p.end()
			return fail(ctx, "watch job "+j.JobID, context.Cause(ctx))
		case <-tick.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, defaultTimeout)
		next, err := c.GetJob(callCtx, j.JobID)
		cancel()
		if err != nil {
			p.end()
			return fail(ctx, "watch job "+j.JobID, err)
		}
		j = next
	}
	p.end()
	if err := a.printJob(j, nil); err != nil {
		return err
	}
	if j.Status != serviceclient.JobCompleted {
		msg := j.FailureReason
		if msg == "" {
			msg = j.StatusMessage
		}
		if msg != "" {
			return fmt.Errorf("job %s %s: %s", j.JobID, j.Status, msg)
		}
		return fmt.Errorf("job %s %s", j.JobID, j.Status)
	}
	return nil
}

// progressLine shows "job ID: STATUS done/total done, S succeeded, F failed",
// with a bar, rewritten in place on a terminal; one line per change otherwise.
type progressLine struct {
	w     io.Writer
	tty   bool
	last  string
	shown bool
}

func (p *progressLine) show(j *serviceclient.Job) {
	if p.w == nil {
		return
	}
	line := progressText(j)
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprintf(p.w, "\r%s %s\x1b[K", progressBar(j), line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// end finishes an in-place line.
func (p *progressLine) end() {
	if p.w != nil && p.tty && p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}

// progressBar draws devices done out of the total, 20 cells wide.
func progressBar(j *serviceclient.Job) string {
	s := j.DeviceJobStatistics
	const width = 20
	filled := 0
	if s.DeviceCount > 0 {
		filled = (s.SucceededCount + s.FailedCount) * width / s.DeviceCount
	}
	filled = min(max(filled, 0), width)
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]"
}

func progressText(j *serviceclient.Job) string {
	s := j.DeviceJobStatistics
	done := s.SucceededCount + s.FailedCount
	line := fmt.Sprintf("job %s: %s %d/%d done, %d succeeded, %d failed", j.JobID, j.Status, done, s.DeviceCount, s.SucceededCount, s.FailedCount)
	if s.RunningCount > 0 {
		line += fmt.Sprintf(", %d running", s.RunningCount)
	}
	if j.Status == serviceclient.JobScheduled {
		line += ", starts " + hubTime(j.StartTime)
	}
	return line
}

func watchTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// shortType names job types as the --type flag does.
func shortType(t string) string {
	switch t {
	case serviceclient.JobTypeUpdateTwin:
		return "twin"
	case serviceclient.JobTypeDeviceMethod:
		return "method"
	}
	return t
}

func renderJob(w io.Writer, j *serviceclient.Job) error {
	s := j.DeviceJobStatistics
	failed := strconv.Itoa(s.FailedCount)
	if s.CancelledCount > 0 {
		failed += fmt.Sprintf(" (%d cancelled)", s.CancelledCount)
	}
	pairs := []kv{
		{"Job ID", j.JobID},
		{"Type", shortType(j.Type) + " (" + j.Type + ")"},
		{"Status", j.Status},
		{"Query", j.QueryCondition},
		{"Created", hubTime(j.CreatedTime)},
		{"Start", hubTime(j.StartTime)},
		{"End", hubTime(j.EndTime)},
		{"Max time", (time.Duration(j.MaxExecutionTimeInSeconds) * time.Second).String()},
	}
	if m := j.CloudToDeviceMethod; m != nil {
		pairs = append(pairs, kv{"Method", m.MethodName}, kv{"Payload", compactJSON(m.Payload)})
	}
	if p := j.UpdateTwin; p != nil {
		if len(p.Tags) > 0 {
			pairs = append(pairs, kv{"Tags", compactJSON(p.Tags)})
		}
		if p.Properties != nil && len(p.Properties.Desired) > 0 {
			pairs = append(pairs, kv{"Desired", compactJSON(p.Properties.Desired)})
		}
	}
	if r := j.Rollout; r != nil {
		rate := fmt.Sprintf("%d/min", r.DevicesPerMinute)
		if r.Type == serviceclient.RolloutExponential {
			rate = fmt.Sprintf("%d/min, ×%g every %d succeeded", r.BaseRatePerMinute, r.IncrementFactor, r.RateIncreaseCriteria.NumberOfSucceeded)
			if r.DevicesPerMinute > 0 {
				rate += fmt.Sprintf(", at most %d/min", r.DevicesPerMinute)
			}
		}
		pairs = append(pairs, kv{"Rollout", rate})
	}
	if ab := j.Abort; ab != nil {
		pairs = append(pairs, kv{"Abort", fmt.Sprintf("at %g%% failed after %d devices", ab.FailureThresholdPercent, ab.MinDevices)})
	}
	if j.DeviceTimeoutInSeconds > 0 {
		pairs = append(pairs, kv{"Device timeout", (time.Duration(j.DeviceTimeoutInSeconds) * time.Second).String()})
	}
	if r := j.Retry; r != nil {
		pairs = append(pairs, kv{"Retry", fmt.Sprintf("up to %d attempts on %s", r.MaxAttempts, strings.Join(r.On, ", "))})
	}
	pairs = append(pairs,
		kv{"Devices", strconv.Itoa(s.DeviceCount)},
		kv{"Succeeded", strconv.Itoa(s.SucceededCount)},
		kv{"Failed", failed},
		kv{"Running", strconv.Itoa(s.RunningCount)},
		kv{"Pending", strconv.Itoa(s.PendingCount)},
	)
	if j.FailureReason != "" {
		pairs = append(pairs, kv{"Failure reason", j.FailureReason})
	}
	if j.StatusMessage != "" && j.StatusMessage != j.FailureReason {
		pairs = append(pairs, kv{"Message", j.StatusMessage})
	}
	return writeKV(w, pairs)
}

func renderJobList(w io.Writer, jobs []serviceclient.Job) error {
	if len(jobs) == 0 {
		_, err := fmt.Fprintln(w, "(no jobs)")
		return err
	}
	rows := make([][]string, 0, len(jobs))
	for _, j := range jobs {
		s := j.DeviceJobStatistics
		rows = append(rows, []string{j.JobID, shortType(j.Type), j.Status,
			fmt.Sprintf("%d/%d", s.SucceededCount+s.FailedCount, s.DeviceCount),
			strconv.Itoa(s.SucceededCount), strconv.Itoa(s.FailedCount), hubTime(j.CreatedTime), hubTime(j.StartTime)})
	}
	return writeTable(w, []string{"JOB ID", "TYPE", "STATUS", "DONE", "SUCCEEDED", "FAILED", "CREATED", "START"}, rows)
}

func renderDeviceJobs(w io.Writer, recs []serviceclient.DeviceJob) error {
	if len(recs) == 0 {
		_, err := fmt.Fprintln(w, "(no devices)")
		return err
	}
	rows := make([][]string, 0, len(recs))
	for _, r := range recs {
		result := ""
		if m := r.Outcome.DeviceMethodResponse; m != nil {
			result = fmt.Sprintf("%d %s", m.Status, compactJSON(m.Payload))
		}
		if r.Error != nil {
			if result != "" {
				result += "; "
			}
			result += r.Error.Code + ": " + r.Error.Description
		}
		rows = append(rows, []string{r.DeviceID, r.Status, strconv.Itoa(r.Attempts), hubTime(r.StartTimeUtc), hubTime(r.EndTimeUtc), truncate(result, maxCell)})
	}
	return writeTable(w, []string{"DEVICE ID", "STATUS", "ATTEMPTS", "START", "END", "RESULT"}, rows)
}
