package service

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/store"
)

// Import and export jobs [IoT Hub "Import and export IoT Hub device
// identities in bulk"; notes 2.3], with the hub itself standing in for blob
// storage:
//
//	POST   /jobs/create                    export: JobProperties {"type":"export","excludeKeysInExport":bool}
//	                                       import: the devices.txt lines (JSONL) as the body, Content-Type
//	                                       application/x-ndjson; ?importMode= is the mode of lines naming none
//	                                       (default createOrUpdate, as Azure)
//	GET    /jobs                           JobProperties of the kept jobs, newest first
//	GET    /jobs/{id}                      JobProperties: status, progress, counters
//	DELETE /jobs/{id}                      cancel a running job (204; it stops between batches)
//	GET    /jobs/importExport/{id}/output  an export's devices.txt (JSONL), once completed
//	GET    /jobs/importExport/{id}/errors  an import's importErrors.log (JSONL, one line per failed input line)
//
// The file routes live under /jobs/importExport/ because /jobs/{id}/output
// would overlap /jobs/v2/{jobId} (Jobs v2) in the router.
//
// One import or export runs at a time (a second is refused with 409). An
// import applies its lines in batches of importBatch, each batch one
// transaction; a line that cannot be applied (garbage, unknown mode, an
// existing id on create, an etag mismatch, twin limits) becomes a line of
// importErrors.log and the others are applied. The job then completes; it
// fails only when the hub cannot go on (database error, shutdown).

// Limits and sizes of import/export jobs.
const (
	maxImportBody = 512 << 20 // upload limit of an import input
	maxImportLine = 256 << 10 // one ExportImportDevice line (tags 8 KB + desired 32 KB leave room)
	importBatch   = 1000      // entries per transaction
	fileChunk     = 1 << 20   // job files are stored in chunks of this size
	keepJobs      = 10        // finished jobs kept with their files
)

// Job file names, as Azure names the blobs.
const (
	fileInput  = "input"
	fileOutput = "devices.txt"
	fileErrors = "importErrors.log"
)

// Job statuses (swagger JobProperties.status).
const (
	jobEnqueued  = "enqueued"
	jobRunning   = "running"
	jobCompleted = "completed"
	jobFailed    = "failed"
	jobCancelled = "cancelled"
)

// jobProperties is Azure's JobProperties for import/export jobs, plus
// localhub's counters (deviceCount, processedCount, failedCount, importMode).
type jobProperties struct {
	JobID                     string `json:"jobId,omitempty"`
	StartTimeUTC              string `json:"startTimeUtc,omitempty"`
	EndTimeUTC                string `json:"endTimeUtc,omitempty"`
	Type                      string `json:"type"`
	Status                    string `json:"status,omitempty"`
	Progress                  int    `json:"progress"`
	InputBlobContainerURI     string `json:"inputBlobContainerUri,omitempty"`
	InputBlobName             string `json:"inputBlobName,omitempty"`
	OutputBlobContainerURI    string `json:"outputBlobContainerUri,omitempty"`
	OutputBlobName            string `json:"outputBlobName,omitempty"`
	ExcludeKeysInExport       bool   `json:"excludeKeysInExport"`
	StorageAuthenticationType string `json:"storageAuthenticationType,omitempty"`
	FailureReason             string `json:"failureReason,omitempty"`
	ImportMode                string `json:"importMode,omitempty"`
	DeviceCount               int    `json:"deviceCount"`
	ProcessedCount            int    `json:"processedCount"`
	FailedCount               int    `json:"failedCount"`
}

func toJobProperties(j store.ImportExportJob) jobProperties {
	p := jobProperties{
		JobID: j.ID, Type: j.Type, Status: j.Status, ExcludeKeysInExport: j.ExcludeKeys, FailureReason: j.FailureReason,
		DeviceCount: j.Total, ProcessedCount: j.Processed, FailedCount: j.Failed,
	}
	if !j.Start.IsZero() {
		p.StartTimeUTC = fmtTime(j.Start)
	}
	if !j.End.IsZero() {
		p.EndTimeUTC = fmtTime(j.End)
	}
	switch {
	case j.Status == jobCompleted:
		p.Progress = 100
	case j.Total > 0:
		p.Progress = min(99, j.Processed*100/j.Total)
	}
	if j.Type == "import" {
		p.InputBlobName, p.OutputBlobName, p.ImportMode = fileOutput, fileErrors, string(j.DefaultMode)
	} else {
		p.OutputBlobName = fileOutput
	}
	return p
}

// lineError is one line of importErrors.log.
type lineError struct {
	Line        int    `json:"line"`
	DeviceID    string `json:"deviceId,omitempty"`
	ImportMode  string `json:"importMode,omitempty"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
}

// importExport runs the jobs; it is created with the routes.
type importExport struct {
	s *Server

	mu     sync.Mutex
	inited bool
	active *ieRun // the enqueued or running job; nil when idle
}

// ieRun is the running job. Its goroutine is started by create and ends
// when the job ends, is cancelled, or the store closes at hub shutdown.
type ieRun struct {
	id     string
	ctx    context.Context
	cancel context.CancelFunc
}

// importExportRoutes registers the import/export job routes.
func (s *Server) importExportRoutes() {
	ie := &importExport{s: s}
	read, write := store.RegistryRead, store.RegistryWrite
	s.routeLimit("POST /jobs/create", read, maxImportBody, ie.create)
	s.route("GET /jobs", read, ie.list)
	s.route("GET /jobs/{id}", read, ie.get)
	s.route("DELETE /jobs/{id}", write, ie.cancel)
	s.route("GET /jobs/importExport/{id}/output", read, ie.output)
	s.route("GET /jobs/importExport/{id}/errors", read, ie.importErrors)
}

// routeLimit is route with its own request body limit.
func (s *Server) routeLimit(pattern string, right store.Right, limit int64, h func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, right); err != nil {
			s.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// init marks jobs an earlier hub process left unfinished as failed, once.
func (ie *importExport) init(ctx context.Context) error {
	ie.mu.Lock()
	defer ie.mu.Unlock()
	if ie.inited {
		return nil
	}
	n, err := ie.s.st.FinishStaleImportExportJobs(ctx, "the hub stopped while the job ran", ie.s.now())
	if err != nil {
		return err
	}
	if n > 0 {
		ie.s.log.Warn("import/export jobs interrupted by a restart", "jobs", n)
	}
	ie.inited = true
	return nil
}

// reserve claims the one job slot.
func (ie *importExport) reserve(r *http.Request, id string) (*ieRun, error) {
	ie.mu.Lock()
	defer ie.mu.Unlock()
	if ie.active != nil {
		return nil, errf(http.StatusConflict, "JobQuotaExceeded", "import/export job %s has not finished; one runs at a time", ie.active.id)
	}
	// The job outlives the request that creates it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	run := &ieRun{id: id, ctx: ctx, cancel: cancel}
	ie.active = run
	return run, nil
}

func (ie *importExport) release(run *ieRun) {
	ie.mu.Lock()
	if ie.active == run {
		ie.active = nil
	}
	ie.mu.Unlock()
	run.cancel()
}

func (ie *importExport) create(w http.ResponseWriter, r *http.Request) error {
	if err := ie.init(r.Context()); err != nil {
		return err
	}
	if isJSONLines(r.Header.Get("Content-Type")) {
		return ie.createImport(w, r)
	}
	var in jobProperties
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	switch strings.ToLower(in.Type) {
	case "export":
		return ie.createExport(w, r, in)
	case "import":
		return errf(http.StatusBadRequest, "ArgumentInvalid",
			"localhub takes the import input in the request: POST /jobs/create with Content-Type application/x-ndjson and the devices.txt lines as the body")
	case "":
		return errf(http.StatusBadRequest, "ArgumentInvalid", "type is required: import or export")
	}
	return errf(http.StatusBadRequest, "ArgumentInvalid", "type %q: want import or export", in.Type)
}

func isJSONLines(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case "application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
		return true
	}
	return false
}

func (ie *importExport) createExport(w http.ResponseWriter, r *http.Request, in jobProperties) error {
	job := store.ImportExportJob{ID: newJobID(), Type: "export", Status: jobEnqueued, Created: ie.s.now(), ExcludeKeys: in.ExcludeKeysInExport}
	run, err := ie.reserve(r, job.ID)
	if err != nil {
		return err
	}
	if err := ie.s.st.PutImportExportJob(r.Context(), job); err != nil {
		ie.release(run)
		return err
	}
	ie.prune(r.Context())
	go ie.run(run, job)
	ie.s.log.Info("export job created", "job", job.ID, "exclude_keys", job.ExcludeKeys)
	return writeJSON(w, http.StatusOK, toJobProperties(job))
}

func (ie *importExport) createImport(w http.ResponseWriter, r *http.Request) error {
	if err := ie.s.authorize(r, store.RegistryWrite); err != nil {
		return err
	}
	mode := store.ImportCreateOrUpdate
	if v := r.URL.Query().Get("importMode"); v != "" {
		m, ok := store.ParseImportMode(v)
		if !ok {
			return errf(http.StatusBadRequest, "ArgumentInvalid", "importMode %q: want create, createOrUpdate, update, updateTwin, delete or their IfMatchETag forms", v)
		}
		mode = m
	}
	job := store.ImportExportJob{ID: newJobID(), Type: "import", Status: jobEnqueued, Created: ie.s.now(), DefaultMode: mode}
	run, err := ie.reserve(r, job.ID)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if err := ie.s.st.PutImportExportJob(ctx, job); err != nil {
		ie.release(run)
		return err
	}
	lines, err := ie.upload(r, job.ID)
	if err == nil && lines == 0 {
		err = errf(http.StatusBadRequest, "ArgumentInvalid", "the import input has no lines")
	}
	if err == nil {
		job.Total = lines
		err = ie.s.st.PutImportExportJob(ctx, job)
	}
	if err != nil {
		if derr := ie.s.st.DeleteImportExportJob(context.WithoutCancel(ctx), job.ID); derr != nil {
			ie.s.log.Warn("drop failed import upload", "job", job.ID, "error", derr)
		}
		ie.release(run)
		return err
	}
	ie.prune(ctx)
	go ie.run(run, job)
	ie.s.log.Info("import job created", "job", job.ID, "lines", lines, "mode", mode)
	return writeJSON(w, http.StatusOK, toJobProperties(job))
}

// upload stores the request body as the job's input file and returns its
// number of non-blank lines.
func (ie *importExport) upload(r *http.Request, jobID string) (int, error) {
	var lc lineCounter
	buf := make([]byte, fileChunk)
	for seq := 0; ; seq++ {
		n, err := io.ReadFull(r.Body, buf)
		if n > 0 {
			lc.count(buf[:n])
			if werr := ie.s.st.AppendJobFile(r.Context(), jobID, fileInput, seq, bytes.Clone(buf[:n])); werr != nil {
				return 0, werr
			}
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return lc.total(), nil
		case err != nil:
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return 0, errf(http.StatusRequestEntityTooLarge, "MessageTooLarge", "import input exceeds %d bytes", mbe.Limit)
			}
			return 0, errf(http.StatusBadRequest, "ArgumentInvalid", "read import input: %v", err)
		}
	}
}

// lineCounter counts non-blank lines across chunks.
type lineCounter struct {
	lines   int
	nonBlnk bool
}

func (c *lineCounter) count(b []byte) {
	for _, ch := range b {
		switch ch {
		case '\n':
			if c.nonBlnk {
				c.lines++
			}
			c.nonBlnk = false
		case ' ', '\t', '\r':
		default:
			c.nonBlnk = true
		}
	}
}

func (c *lineCounter) total() int {
	if c.nonBlnk {
		return c.lines + 1
	}
	return c.lines
}

func (ie *importExport) prune(ctx context.Context) {
	if err := ie.s.st.PruneImportExportJobs(ctx, keepJobs); err != nil {
		ie.s.log.Warn("prune import/export jobs", "error", err)
	}
}

// run executes a job to its end and records how it ended.
func (ie *importExport) run(run *ieRun, job store.ImportExportJob) {
	defer ie.release(run)
	ctx := run.ctx
	final := context.WithoutCancel(ctx) // the outcome is written even after a cancel
	job.Status, job.Start = jobRunning, ie.s.now()
	err := ie.s.st.PutImportExportJob(ctx, job)
	if err == nil {
		if job.Type == "import" {
			err = ie.runImport(ctx, &job)
		} else {
			err = ie.runExport(ctx, &job)
		}
	}
	job.End = ie.s.now()
	switch {
	case err == nil:
		job.Status = jobCompleted
	case ctx.Err() != nil:
		job.Status, job.FailureReason = jobCancelled, "cancelled"
	default:
		job.Status, job.FailureReason = jobFailed, err.Error()
	}
	if job.Type == "import" {
		if derr := ie.s.st.DeleteJobFile(final, job.ID, fileInput); derr != nil {
			ie.s.log.Warn("drop import input", "job", job.ID, "error", derr)
		}
	}
	if perr := ie.s.st.PutImportExportJob(final, job); perr != nil {
		ie.s.log.Error("record import/export job outcome", "job", job.ID, "status", job.Status, "error", perr)
		return
	}
	ie.s.log.Info("import/export job finished", "job", job.ID, "type", job.Type, "status", job.Status,
		"processed", job.Processed, "failed", job.Failed, "error", err)
}

// jobWriter buffers a job file and stores it chunk by chunk.
type jobWriter struct {
	st        *store.Store
	job, name string
	seq       int
	buf       []byte
}

func (f *jobWriter) write(ctx context.Context, b []byte) error {
	f.buf = append(f.buf, b...)
	if len(f.buf) >= fileChunk {
		return f.flush(ctx)
	}
	return nil
}

func (f *jobWriter) flush(ctx context.Context) error {
	if len(f.buf) == 0 {
		return nil
	}
	if err := f.st.AppendJobFile(ctx, f.job, f.name, f.seq, f.buf); err != nil {
		return err
	}
	f.seq++
	f.buf = nil
	return nil
}

func (ie *importExport) runImport(ctx context.Context, job *store.ImportExportJob) error {
	st := ie.s.st
	rd := bufio.NewReaderSize(st.OpenJobFile(ctx, job.ID, fileInput), 64<<10)
	errs := &jobWriter{st: st, job: job.ID, name: fileErrors}
	var batch []store.ImportEntry
	var batchLines []int
	fail := func(e lineError) error {
		job.Failed++
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode import error: %w", err)
		}
		return errs.write(ctx, append(b, '\n'))
	}
	flush := func() error {
		if len(batch) > 0 {
			outs, err := st.ImportDevices(ctx, batch)
			if err != nil {
				return err
			}
			for i, o := range outs {
				e := batch[i]
				if o.Err != nil {
					ae := toAPIError(o.Err)
					if err := fail(lineError{Line: batchLines[i], DeviceID: e.Device.ID, ImportMode: string(e.Mode), ErrorCode: ae.Code, ErrorStatus: ae.Msg}); err != nil {
						return err
					}
					continue
				}
				ie.notify(o)
			}
			job.Processed += len(batch)
			batch, batchLines = batch[:0], batchLines[:0]
		}
		if err := errs.flush(ctx); err != nil {
			return err
		}
		return st.PutImportExportJob(ctx, *job)
	}
	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := readLine(rd, maxImportLine)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read import input: %w", err)
		}
		eof := err != nil
		switch text := bytes.TrimSpace(line); {
		case tooLong:
			job.Processed++
			if ferr := fail(lineError{Line: lineNo, ErrorCode: "MessageTooLarge", ErrorStatus: fmt.Sprintf("line is longer than %d bytes", maxImportLine)}); ferr != nil {
				return ferr
			}
		case len(text) == 0:
		default:
			entry, lerr := parseImportLine(text, job.DefaultMode)
			if lerr != nil {
				job.Processed++
				if ferr := fail(lineError{Line: lineNo, DeviceID: entry.Device.ID, ImportMode: string(entry.Mode), ErrorCode: lerr.Code, ErrorStatus: lerr.Msg}); ferr != nil {
					return ferr
				}
				break
			}
			batch, batchLines = append(batch, entry), append(batchLines, lineNo)
		}
		if len(batch) >= importBatch || eof {
			if err := flush(); err != nil {
				return err
			}
		}
		if eof {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// notify tells live sessions about identity and desired changes of an
// applied entry, as the single-device routes do.
func (ie *importExport) notify(o store.ImportOutcome) {
	switch {
	case o.Deleted:
		ie.s.sessions.IdentityDeleted(o.Before.ID)
		return
	case !o.Created:
		ie.s.sessions.IdentityChanged(o.Before, o.After)
	}
	if o.DesiredChanged {
		ie.s.sessions.DesiredChanged(o.After.ID, o.Desired, o.DesiredVersion)
	}
}

// readLine reads one line (without its newline). A line longer than max is
// consumed and reported with tooLong; err is io.EOF at the end of the input.
func readLine(rd *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := rd.ReadSlice('\n')
		if len(line)+len(frag) > max {
			tooLong = true
		} else {
			line = append(line, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, tooLong, err
	}
}

// importLine is one ExportImportDevice line of an import input (notes 2.3).
// properties.reported is read-only for the service and ignored, so that an
// export can be imported as it is.
type importLine struct {
	ID             string        `json:"id"`
	ModuleID       string        `json:"moduleId"`
	ETag           string        `json:"eTag"`
	ImportMode     string        `json:"importMode"`
	Status         string        `json:"status"`
	StatusReason   *string       `json:"statusReason"`
	Authentication *authJSON     `json:"authentication"`
	TwinETag       string        `json:"twinETag"`
	Tags           rawObject     `json:"tags"`
	Properties     *importProps  `json:"properties"`
	Capabilities   *capabilities `json:"capabilities"`
	DeviceScope    string        `json:"deviceScope"`
	ParentScopes   []string      `json:"parentScopes"`
}

type importProps struct {
	Desired rawObject `json:"desired"`
}

// rawObject keeps a member's JSON text for twin.DecodeObject (json.Number,
// strict duplicate and UTF-8 checks).
type rawObject []byte

// UnmarshalJSON implements json.Unmarshaler.
func (o *rawObject) UnmarshalJSON(b []byte) error {
	*o = append((*o)[:0], b...)
	return nil
}

// parseImportLine turns a line into an entry. On error the entry holds
// whatever id and mode could be read, for the error report.
func parseImportLine(b []byte, defaultMode store.ImportMode) (store.ImportEntry, *apiError) {
	var in importLine
	var e store.ImportEntry
	if err := json.Unmarshal(b, &in); err != nil {
		return e, errf(http.StatusBadRequest, "IotHubFormatError", "line is not an ExportImportDevice JSON object: %v", err)
	}
	e.Device.ID = in.ID
	e.Mode = defaultMode
	if in.ImportMode != "" {
		m, ok := store.ParseImportMode(in.ImportMode)
		if !ok {
			e.Mode = store.ImportMode(in.ImportMode)
			return e, errf(http.StatusBadRequest, "ArgumentInvalid", "importMode %q: want create, createOrUpdate, update, updateTwin, delete or their IfMatchETag forms", in.ImportMode)
		}
		e.Mode = m
	}
	if in.ID == "" {
		return e, errf(http.StatusBadRequest, "ArgumentInvalid", "id is required")
	}
	if in.ModuleID != "" {
		return e, errf(http.StatusBadRequest, "ArgumentInvalid", "module identities are not supported (moduleId %q)", in.ModuleID)
	}
	e.ETag, e.TwinETag = in.ETag, in.TwinETag
	switch {
	case e.Mode == store.ImportUpdateTwinIfMatchETag && in.TwinETag == "":
		return e, errf(http.StatusBadRequest, "ArgumentInvalid", "importMode %s needs twinETag", e.Mode)
	case e.Mode.IfMatch() && e.Mode != store.ImportUpdateTwinIfMatchETag && in.ETag == "":
		return e, errf(http.StatusBadRequest, "ArgumentInvalid", "importMode %s needs eTag", e.Mode)
	}
	d, err := fromDeviceJSON(in.ID, deviceJSON{Status: in.Status, StatusReason: in.StatusReason, Authentication: in.Authentication,
		Capabilities: in.Capabilities, DeviceScope: in.DeviceScope, ParentScopes: in.ParentScopes})
	if err != nil {
		return e, toAPIError(err)
	}
	e.Device = d
	if e.Mode == store.ImportDelete || e.Mode == store.ImportDeleteIfMatchETag {
		return e, nil
	}
	if e.Tags, err = decodeSection("tags", in.Tags); err != nil {
		return e, toAPIError(err)
	}
	if in.Properties != nil {
		if e.Desired, err = decodeSection("properties.desired", in.Properties.Desired); err != nil {
			return e, toAPIError(err)
		}
		// An export carries these read-only members; they are not properties.
		delete(e.Desired, twin.KeyVersion)
		delete(e.Desired, twin.KeyMetadata)
	}
	return e, nil
}

// decodeSection reads an optional twin section: absent or null is nil.
func decodeSection(name string, raw rawObject) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	m, err := twin.DecodeObject(raw)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "ArgumentInvalid", "%s: %v", name, err)
	}
	return m, nil
}

// exportLine is one ExportImportDevice line of an export's devices.txt.
// Like Azure's export it names no importMode, so importing it means
// createOrUpdate.
type exportLine struct {
	ID             string         `json:"id"`
	ETag           string         `json:"eTag"`
	Status         string         `json:"status"`
	StatusReason   string         `json:"statusReason,omitempty"`
	Authentication exportAuth     `json:"authentication"`
	TwinETag       string         `json:"twinETag"`
	Tags           map[string]any `json:"tags"`
	Properties     exportProps    `json:"properties"`
	Capabilities   capabilities   `json:"capabilities"`
	DeviceScope    string         `json:"deviceScope,omitempty"`
	ParentScopes   []string       `json:"parentScopes,omitempty"`
}

type exportAuth struct {
	Type           string         `json:"type"`
	SymmetricKey   exportKeys     `json:"symmetricKey"`
	X509Thumbprint x509Thumbprint `json:"x509Thumbprint"`
}

// exportKeys are null with excludeKeysInExport.
type exportKeys struct {
	PrimaryKey   *string `json:"primaryKey"`
	SecondaryKey *string `json:"secondaryKey"`
}

type exportProps struct {
	Desired  map[string]any `json:"desired"`
	Reported map[string]any `json:"reported"`
}

func toExportLine(t store.Twin, excludeKeys bool) exportLine {
	l := exportLine{
		ID: t.ID, ETag: t.Etag, Status: t.Status, StatusReason: t.StatusReason, TwinETag: t.TwinEtag,
		Authentication: exportAuth{Type: t.AuthType,
			X509Thumbprint: x509Thumbprint{PrimaryThumbprint: nullable(t.PrimaryThumbprint), SecondaryThumbprint: nullable(t.SecondaryThumbprint)}},
		Tags:         t.Tags.Document(twin.Tags, false),
		Properties:   exportProps{Desired: t.Desired.Document(twin.Desired, false), Reported: t.Reported.Document(twin.Reported, false)},
		Capabilities: capabilities{IotEdge: t.IoTEdge}, DeviceScope: t.DeviceScope, ParentScopes: t.ParentScopes,
	}
	if !excludeKeys && (t.PrimaryKey != "" || t.SecondaryKey != "") {
		p, s := t.PrimaryKey, t.SecondaryKey
		l.Authentication.SymmetricKey = exportKeys{PrimaryKey: &p, SecondaryKey: &s}
	}
	return l
}

func (ie *importExport) runExport(ctx context.Context, job *store.ImportExportJob) error {
	st := ie.s.st
	total, _, err := st.CountDevices(ctx)
	if err != nil {
		return err
	}
	job.Total = total
	out := &jobWriter{st: st, job: job.ID, name: fileOutput}
	err = st.ExportTwins(ctx, func(t store.Twin) error {
		b, err := json.Marshal(toExportLine(t, job.ExcludeKeys))
		if err != nil {
			return fmt.Errorf("encode device %s: %w", t.ID, err)
		}
		seq := out.seq
		if err := out.write(ctx, append(b, '\n')); err != nil {
			return err
		}
		job.Processed++
		if out.seq != seq { // a chunk was stored: report progress
			return st.PutImportExportJob(ctx, *job)
		}
		return nil
	})
	if err != nil {
		return err
	}
	job.Total = job.Processed // devices created or deleted during the export
	return out.flush(ctx)
}

func (ie *importExport) job(r *http.Request) (store.ImportExportJob, error) {
	if err := ie.init(r.Context()); err != nil {
		return store.ImportExportJob{}, err
	}
	id := r.PathValue("id")
	j, err := ie.s.st.ImportExportJob(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return j, errf(http.StatusNotFound, "JobNotFound", "import/export job %s not found", id)
	}
	return j, err
}

func (ie *importExport) get(w http.ResponseWriter, r *http.Request) error {
	j, err := ie.job(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toJobProperties(j))
}

func (ie *importExport) list(w http.ResponseWriter, r *http.Request) error {
	if err := ie.init(r.Context()); err != nil {
		return err
	}
	js, err := ie.s.st.ImportExportJobs(r.Context())
	if err != nil {
		return err
	}
	out := make([]jobProperties, len(js))
	for i, j := range js {
		out[i] = toJobProperties(j)
	}
	return writeJSON(w, http.StatusOK, out)
}

// cancel asks a running job to stop (it does between batches; its status
// then turns cancelled); a finished job is left as it is.
func (ie *importExport) cancel(w http.ResponseWriter, r *http.Request) error {
	j, err := ie.job(r)
	if err != nil {
		return err
	}
	ie.mu.Lock()
	run := ie.active
	ie.mu.Unlock()
	if run != nil && run.id == j.ID {
		run.cancel()
		ie.s.log.Info("import/export job cancel requested", "job", j.ID)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (ie *importExport) output(w http.ResponseWriter, r *http.Request) error {
	j, err := ie.job(r)
	if err != nil {
		return err
	}
	if j.Type != "export" {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "job %s is an import; its errors are at /jobs/importExport/%s/errors", j.ID, j.ID)
	}
	if j.Status != jobCompleted {
		return errf(http.StatusConflict, "JobNotCompleted", "export job %s is %s; its output is ready once it has completed", j.ID, j.Status)
	}
	return ie.stream(w, r, j.ID, fileOutput)
}

func (ie *importExport) importErrors(w http.ResponseWriter, r *http.Request) error {
	j, err := ie.job(r)
	if err != nil {
		return err
	}
	if j.Type != "import" {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "job %s is an export; it has no import errors", j.ID)
	}
	return ie.stream(w, r, j.ID, fileErrors)
}

// stream copies a job file to the response. Once the first byte is out,
// a failure can only end the response early; it is logged.
func (ie *importExport) stream(w http.ResponseWriter, r *http.Request, jobID, name string) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, ie.s.st.OpenJobFile(r.Context(), jobID, name)); err != nil {
		ie.s.log.Warn("job file download ended early", "job", jobID, "file", name, "error", err)
	}
	return nil
}

// newJobID returns a random UUID v4, as Azure's job ids are.
func newJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
