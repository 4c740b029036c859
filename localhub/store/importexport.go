package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/twin"
)

// This file holds the store side of import/export jobs (issue 5): applying a
// batch of ExportImportDevice entries in one transaction, streaming every
// twin for an export, and the job records and their files.

// ImportMode is the importMode of an ExportImportDevice entry [IoT Hub
// "Import and export IoT Hub device identities in bulk", importMode].
type ImportMode string

// Import modes. Azure's default for an import job is createOrUpdate.
const (
	ImportCreate                    ImportMode = "create"
	ImportCreateOrUpdate            ImportMode = "createOrUpdate"
	ImportCreateOrUpdateIfMatchETag ImportMode = "createOrUpdateIfMatchETag"
	ImportUpdate                    ImportMode = "update"
	ImportUpdateIfMatchETag         ImportMode = "updateIfMatchETag"
	ImportUpdateTwin                ImportMode = "updateTwin"
	ImportUpdateTwinIfMatchETag     ImportMode = "updateTwinIfMatchETag"
	ImportDelete                    ImportMode = "delete"
	ImportDeleteIfMatchETag         ImportMode = "deleteIfMatchETag"
)

var importModes = []ImportMode{ImportCreate, ImportCreateOrUpdate, ImportCreateOrUpdateIfMatchETag,
	ImportUpdate, ImportUpdateIfMatchETag, ImportUpdateTwin, ImportUpdateTwinIfMatchETag,
	ImportDelete, ImportDeleteIfMatchETag}

// ParseImportMode reads a mode case-insensitively (the Node SDK sends
// "Update", "Delete"; notes 2.3).
func ParseImportMode(s string) (ImportMode, bool) {
	for _, m := range importModes {
		if strings.EqualFold(s, string(m)) {
			return m, true
		}
	}
	return "", false
}

// IfMatch reports whether the mode checks etags.
func (m ImportMode) IfMatch() bool { return strings.HasSuffix(string(m), "IfMatchETag") }

// ImportEntry is one identity to create, update or delete.
type ImportEntry struct {
	Mode ImportMode
	// Device holds the id and the settable identity fields (as for PUT
	// /devices/{id}); empty keys are generated on create and kept on update.
	Device Device
	// ETag must match the identity's etag in the IfMatchETag modes.
	ETag string
	// TwinETag, when given in an IfMatchETag mode, must match the twin's etag.
	TwinETag string
	// Tags and Desired replace the twin's sections when non-nil.
	Tags, Desired map[string]any
}

// ImportOutcome is what applying one entry did.
type ImportOutcome struct {
	Err            error  // nil when applied
	Before, After  Device // identity before (zero when created) and after (zero when deleted)
	Created        bool
	Deleted        bool
	DesiredChanged bool           // Desired holds the whole new desired document
	Desired        map[string]any // without $version
	DesiredVersion int64
}

// ImportDevices applies entries in order in one transaction. A failing
// entry (unknown id, existing id, etag mismatch, twin limits) gets its error
// in its outcome and changes nothing; the others are applied. The error is
// for the batch as a whole (database failure, store closed): then nothing
// was applied.
func (s *Store) ImportDevices(ctx context.Context, entries []ImportEntry) ([]ImportOutcome, error) {
	out := make([]ImportOutcome, len(entries))
	err := s.write(ctx, fmt.Sprintf("import %d devices", len(entries)), func(tx *sql.Tx) error {
		im, err := prepareImport(tx)
		if err != nil {
			return err
		}
		defer im.close()
		for i, e := range entries {
			o, err := im.apply(e, s.now())
			if err != nil {
				return err
			}
			out[i] = o
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// importer holds the statements of one import batch.
type importer struct {
	selDevice, selTwin, insert, updDevice, updTwin, del *sql.Stmt
}

func prepareImport(tx *sql.Tx) (*importer, error) {
	im := &importer{}
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&im.selDevice, `SELECT ` + deviceCols + ` FROM devices WHERE device_id = ?`},
		{&im.selTwin, `SELECT ` + twinCols + ` FROM devices WHERE device_id = ?`},
		{&im.insert, `INSERT INTO devices(device_id, generation_id, etag, status, status_reason, status_updated, auth_type,
			primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, iot_edge, device_scope, parent_scopes,
			connection_state, created, twin_etag, twin_version, tags, desired, desired_meta, desired_version, reported_meta)
			VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,?,?,?,?,?)`},
		{&im.updDevice, `UPDATE devices SET etag=?, status=?, status_reason=?, status_updated=?, auth_type=?, primary_key=?, secondary_key=?,
			primary_thumbprint=?, secondary_thumbprint=?, iot_edge=?, device_scope=?, parent_scopes=? WHERE device_id=?`},
		{&im.updTwin, `UPDATE devices SET twin_etag=?, twin_version=?, tags=?, desired=?, desired_meta=?, desired_version=? WHERE device_id=?`},
		{&im.del, `DELETE FROM devices WHERE device_id = ?`},
	} {
		st, err := tx.Prepare(p.sql)
		if err != nil {
			im.close()
			return nil, fmt.Errorf("import devices: prepare: %w", err)
		}
		*p.dst = st
	}
	return im, nil
}

func (im *importer) close() {
	for _, st := range []*sql.Stmt{im.selDevice, im.selTwin, im.insert, im.updDevice, im.updTwin, im.del} {
		if st != nil {
			st.Close()
		}
	}
}

// apply runs one entry. Entry-level failures are returned in the outcome;
// the error return is for database failures, which abort the batch.
func (im *importer) apply(e ImportEntry, now time.Time) (ImportOutcome, error) {
	id := e.Device.ID
	var o ImportOutcome
	withTwin := e.Tags != nil || e.Desired != nil
	var cur Twin
	var err error
	if withTwin {
		cur, err = scanTwin(im.selTwin.QueryRow(id))
	} else {
		cur.Device, err = scanDevice(im.selDevice.QueryRow(id))
	}
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return o, fmt.Errorf("import: read device %s: %w", id, err)
	}
	fail := func(err error) (ImportOutcome, error) { return ImportOutcome{Err: err}, nil }
	notFound := func() (ImportOutcome, error) { return fail(fmt.Errorf("device %s: %w", id, ErrNotFound)) }
	if e.Mode.IfMatch() && exists {
		if e.Mode != ImportUpdateTwinIfMatchETag && !matchEtag(e.ETag, cur.Etag) {
			return fail(fmt.Errorf("device %s: %w", id, ErrPrecondition))
		}
		if withTwin && e.TwinETag != "" && !matchEtag(e.TwinETag, cur.TwinEtag) {
			return fail(fmt.Errorf("twin %s: %w", id, ErrPrecondition))
		}
	}
	switch e.Mode {
	case ImportCreate:
		if exists {
			return fail(fmt.Errorf("device %s: %w", id, ErrExists))
		}
		return im.create(e, now)
	case ImportCreateOrUpdate, ImportCreateOrUpdateIfMatchETag:
		if !exists {
			return im.create(e, now)
		}
		return im.update(e, cur, true, now)
	case ImportUpdate, ImportUpdateIfMatchETag:
		if !exists {
			return notFound()
		}
		return im.update(e, cur, true, now)
	case ImportUpdateTwin, ImportUpdateTwinIfMatchETag:
		if !exists {
			return notFound()
		}
		return im.update(e, cur, false, now)
	case ImportDelete, ImportDeleteIfMatchETag:
		if !exists {
			return notFound()
		}
		if _, err := im.del.Exec(id); err != nil {
			return o, fmt.Errorf("import: delete device %s: %w", id, err)
		}
		return ImportOutcome{Before: cur.Device, Deleted: true}, nil
	}
	return fail(fmt.Errorf("device %s: unknown import mode %q", id, e.Mode))
}

func (im *importer) create(e ImportEntry, now time.Time) (ImportOutcome, error) {
	d := e.Device
	fillDefaults(&d, now)
	tags, desired := twin.NewSection(twin.Tags, now), twin.NewSection(twin.Desired, now)
	var o ImportOutcome
	var err error
	// An empty section is what a new twin has already (and keeps $version 1).
	if len(e.Tags) > 0 {
		if tags, err = tags.Replace(twin.Tags, e.Tags, now); err != nil {
			return ImportOutcome{Err: err}, nil
		}
	}
	if len(e.Desired) > 0 {
		if desired, err = desired.Replace(twin.Desired, e.Desired, now); err != nil {
			return ImportOutcome{Err: err}, nil
		}
	}
	tj, dj, dm, err := encodeSections(tags, desired)
	if err != nil {
		return ImportOutcome{Err: fmt.Errorf("device %s: %w", d.ID, err)}, nil
	}
	ps, _ := json.Marshal(d.ParentScopes)
	repMeta := `{"$lastUpdated":"` + fmtTime(now) + `"}`
	_, err = im.insert.Exec(d.ID, d.GenerationID, d.Etag, d.Status, d.StatusReason, fmtTime(d.StatusUpdated), d.AuthType,
		d.PrimaryKey, d.SecondaryKey, d.PrimaryThumbprint, d.SecondaryThumbprint, boolInt(d.IoTEdge), d.DeviceScope, string(ps),
		d.ConnectionState, fmtTime(now), twinEtag(1), tj, dj, dm, desired.Version, repMeta)
	if err != nil {
		return o, fmt.Errorf("import: insert device %s: %w", d.ID, err)
	}
	o = ImportOutcome{After: d, Created: true}
	if len(e.Desired) > 0 {
		o.DesiredChanged, o.Desired, o.DesiredVersion = true, desired.Props, desired.Version
	}
	return o, nil
}

// update replaces the identity (when identity is true) and the twin
// sections the entry carries.
func (im *importer) update(e ImportEntry, cur Twin, identity bool, now time.Time) (ImportOutcome, error) {
	id := cur.ID
	o := ImportOutcome{Before: cur.Device, After: cur.Device}
	if e.Tags != nil || e.Desired != nil {
		next := cur
		var err error
		if e.Tags != nil {
			if next.Tags, err = cur.Tags.Replace(twin.Tags, e.Tags, now); err != nil {
				return ImportOutcome{Err: err}, nil
			}
		}
		if e.Desired != nil {
			if next.Desired, err = cur.Desired.Replace(twin.Desired, e.Desired, now); err != nil {
				return ImportOutcome{Err: err}, nil
			}
		}
		tj, dj, dm, err := encodeSections(next.Tags, next.Desired)
		if err != nil {
			return ImportOutcome{Err: fmt.Errorf("device %s: %w", id, err)}, nil
		}
		next.Version++
		if _, err := im.updTwin.Exec(twinEtag(next.Version), next.Version, tj, dj, dm, next.Desired.Version, id); err != nil {
			return o, fmt.Errorf("import: write twin %s: %w", id, err)
		}
		if e.Desired != nil {
			o.DesiredChanged, o.Desired, o.DesiredVersion = true, next.Desired.Props, next.Desired.Version
		}
	}
	if !identity {
		return o, nil
	}
	next := mergeIdentity(cur.Device, e.Device, now)
	ps, _ := json.Marshal(next.ParentScopes)
	_, err := im.updDevice.Exec(next.Etag, next.Status, next.StatusReason, fmtTime(next.StatusUpdated), next.AuthType, next.PrimaryKey, next.SecondaryKey,
		next.PrimaryThumbprint, next.SecondaryThumbprint, boolInt(next.IoTEdge), next.DeviceScope, string(ps), id)
	if err != nil {
		return o, fmt.Errorf("import: update device %s: %w", id, err)
	}
	o.After = next
	return o, nil
}

// mergeIdentity applies the PUT /devices/{id} update rules of UpdateDevice:
// the settable fields are replaced, empty keys keep the current keys, an edge
// device keeps its generated scope.
func mergeIdentity(cur, d Device, now time.Time) Device {
	next := cur
	next.Etag = newEtag()
	if d.Status != "" && !strings.EqualFold(d.Status, cur.Status) {
		next.Status = strings.ToLower(d.Status)
		next.StatusUpdated = now
	}
	next.StatusReason = d.StatusReason
	if d.AuthType != "" {
		next.AuthType = d.AuthType
	}
	if d.PrimaryKey != "" {
		next.PrimaryKey = d.PrimaryKey
	}
	if d.SecondaryKey != "" {
		next.SecondaryKey = d.SecondaryKey
	}
	next.PrimaryThumbprint, next.SecondaryThumbprint = d.PrimaryThumbprint, d.SecondaryThumbprint
	next.IoTEdge = d.IoTEdge
	if next.IoTEdge && next.DeviceScope == "" {
		next.DeviceScope = "ms-azure-iot-edge://" + next.ID + "-" + next.GenerationID
	}
	if !next.IoTEdge {
		next.DeviceScope = d.DeviceScope
	}
	if d.ParentScopes != nil {
		next.ParentScopes = d.ParentScopes
	}
	return next
}

func encodeSections(tags, desired twin.Section) (t, d, dm string, err error) {
	tb, err := json.Marshal(tags.Props)
	if err != nil {
		return "", "", "", fmt.Errorf("encode tags: %w", err)
	}
	db, err := json.Marshal(desired.Props)
	if err != nil {
		return "", "", "", fmt.Errorf("encode desired: %w", err)
	}
	mb, err := json.Marshal(desired.Meta)
	if err != nil {
		return "", "", "", fmt.Errorf("encode desired metadata: %w", err)
	}
	return string(tb), string(db), string(mb), nil
}

// ExportTwins calls fn for every twin in device id order, from one read
// statement (a consistent snapshot). An error from fn stops the export and
// is returned.
func (s *Store) ExportTwins(ctx context.Context, fn func(Twin) error) error {
	rows, err := s.rd.QueryContext(ctx, `SELECT `+twinCols+` FROM devices ORDER BY device_id`)
	if err != nil {
		return fmt.Errorf("export twins: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanTwin(rows)
		if err != nil {
			return fmt.Errorf("export twins: %w", err)
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export twins: %w", err)
	}
	return nil
}

// ImportExportJob is the record of an import or export job.
type ImportExportJob struct {
	ID            string
	Type          string // import | export
	Status        string // enqueued | running | completed | failed | cancelled
	Created       time.Time
	Start, End    time.Time
	ExcludeKeys   bool
	DefaultMode   ImportMode
	Total         int // input lines (import) or identities (export)
	Processed     int
	Failed        int
	FailureReason string
}

// Finished reports whether the job can no longer change.
func (j ImportExportJob) Finished() bool {
	return j.Status == "completed" || j.Status == "failed" || j.Status == "cancelled"
}

const ieJobCols = `job_id, type, status, created, start_time, end_time, exclude_keys, default_mode, total, processed, failed, failure_reason`

func scanIEJob(sc scanner) (ImportExportJob, error) {
	var j ImportExportJob
	var c, st, en, mode string
	var ex int
	err := sc.Scan(&j.ID, &j.Type, &j.Status, &c, &st, &en, &ex, &mode, &j.Total, &j.Processed, &j.Failed, &j.FailureReason)
	j.Created, j.Start, j.End, j.ExcludeKeys, j.DefaultMode = parseTime(c), parseTime(st), parseTime(en), ex != 0, ImportMode(mode)
	return j, err
}

// PutImportExportJob creates or replaces a job record.
func (s *Store) PutImportExportJob(ctx context.Context, j ImportExportJob) error {
	return s.write(ctx, "put import/export job "+j.ID, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO import_export_jobs(`+ieJobCols+`) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT(job_id) DO UPDATE SET status=excluded.status, start_time=excluded.start_time, end_time=excluded.end_time,
			total=excluded.total, processed=excluded.processed, failed=excluded.failed, failure_reason=excluded.failure_reason`,
			j.ID, j.Type, j.Status, fmtTime(j.Created), fmtTime(j.Start), fmtTime(j.End), boolInt(j.ExcludeKeys), string(j.DefaultMode),
			j.Total, j.Processed, j.Failed, j.FailureReason)
		if err != nil {
			return fmt.Errorf("write import/export job %s: %w", j.ID, err)
		}
		return nil
	})
}

// ImportExportJob reads one job record.
func (s *Store) ImportExportJob(ctx context.Context, id string) (ImportExportJob, error) {
	j, err := scanIEJob(s.rd.QueryRowContext(ctx, `SELECT `+ieJobCols+` FROM import_export_jobs WHERE job_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, fmt.Errorf("import/export job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return j, fmt.Errorf("read import/export job %s: %w", id, err)
	}
	return j, nil
}

// ImportExportJobs lists the job records, newest first.
func (s *Store) ImportExportJobs(ctx context.Context) ([]ImportExportJob, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT `+ieJobCols+` FROM import_export_jobs ORDER BY created DESC, job_id`)
	if err != nil {
		return nil, fmt.Errorf("list import/export jobs: %w", err)
	}
	defer rows.Close()
	out := []ImportExportJob{}
	for rows.Next() {
		j, err := scanIEJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list import/export jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// DeleteImportExportJob removes a job record and its files.
func (s *Store) DeleteImportExportJob(ctx context.Context, id string) error {
	return s.write(ctx, "delete import/export job "+id, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM import_export_jobs WHERE job_id = ?`, id)
		return err
	})
}

// FinishStaleImportExportJobs marks jobs left enqueued or running by an
// earlier hub process as failed; it returns how many it marked.
func (s *Store) FinishStaleImportExportJobs(ctx context.Context, reason string, at time.Time) (int, error) {
	var n int64
	err := s.write(ctx, "finish stale import/export jobs", func(tx *sql.Tx) error {
		r, err := tx.Exec(`UPDATE import_export_jobs SET status='failed', failure_reason=?, end_time=? WHERE status IN ('enqueued', 'running')`,
			reason, fmtTime(at))
		if err != nil {
			return fmt.Errorf("finish stale import/export jobs: %w", err)
		}
		n, _ = r.RowsAffected()
		return nil
	})
	return int(n), err
}

// PruneImportExportJobs keeps the newest keep finished jobs (and every
// unfinished one) and deletes the rest with their files.
func (s *Store) PruneImportExportJobs(ctx context.Context, keep int) error {
	return s.write(ctx, "prune import/export jobs", func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM import_export_jobs WHERE status IN ('completed', 'failed', 'cancelled') AND job_id NOT IN
			(SELECT job_id FROM import_export_jobs WHERE status IN ('completed', 'failed', 'cancelled') ORDER BY created DESC, job_id LIMIT ?)`, keep)
		if err != nil {
			return fmt.Errorf("prune import/export jobs: %w", err)
		}
		return nil
	})
}

// AppendJobFile stores the next chunk (seq counts from 0) of a job's file.
func (s *Store) AppendJobFile(ctx context.Context, jobID, name string, seq int, data []byte) error {
	return s.write(ctx, "append "+name+" of job "+jobID, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO import_export_blobs(job_id, name, seq, data) VALUES(?,?,?,?)`, jobID, name, seq, data); err != nil {
			return fmt.Errorf("append %s of job %s: %w", name, jobID, err)
		}
		return nil
	})
}

// DeleteJobFile removes a job's file.
func (s *Store) DeleteJobFile(ctx context.Context, jobID, name string) error {
	return s.write(ctx, "delete "+name+" of job "+jobID, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM import_export_blobs WHERE job_id = ? AND name = ?`, jobID, name)
		return err
	})
}

// JobFileChunk returns the first chunk of a job's file after seq after (-1
// for the first), or io.EOF when there is none.
func (s *Store) JobFileChunk(ctx context.Context, jobID, name string, after int) ([]byte, int, error) {
	var data []byte
	var seq int
	err := s.rd.QueryRowContext(ctx, `SELECT data, seq FROM import_export_blobs WHERE job_id = ? AND name = ? AND seq > ? ORDER BY seq LIMIT 1`,
		jobID, name, after).Scan(&data, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, after, io.EOF
	}
	if err != nil {
		return nil, after, fmt.Errorf("read %s of job %s: %w", name, jobID, err)
	}
	return data, seq, nil
}

// JobFile is an io.Reader over a stored job file, one chunk at a time.
type JobFile struct {
	s         *Store
	ctx       context.Context
	job, name string
	seq       int
	buf       []byte
}

// OpenJobFile returns a reader of a job's file. It reads chunks as they are
// needed, so a reader of a file that is still being written sees the chunks
// stored so far.
func (s *Store) OpenJobFile(ctx context.Context, jobID, name string) *JobFile {
	return &JobFile{s: s, ctx: ctx, job: jobID, name: name, seq: -1}
}

// Read implements io.Reader.
func (f *JobFile) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		data, seq, err := f.s.JobFileChunk(f.ctx, f.job, f.name, f.seq)
		if err != nil {
			return 0, err
		}
		f.buf, f.seq = data, seq
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}
