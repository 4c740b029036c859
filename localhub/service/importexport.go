package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

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
//
// This file holds the routes and a job's life (reserve, run, cancel, the
// job files); importexport_import.go reads and applies an import,
// importexport_export.go writes an export.

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
