package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/store"
)

// The import side of import/export jobs: the upload, the ExportImportDevice
// lines read and applied, and the per-line errors.

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
