package serviceclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Import/export job types and statuses (swagger JobProperties; notes 2.3).
const (
	JobTypeImport = "import"
	JobTypeExport = "export"

	JobEnqueued  = "enqueued"
	JobRunning   = "running"
	JobCompleted = "completed"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// Import modes an import job adds to ImportCreate and friends.
const (
	ImportCreateOrUpdate            = "createOrUpdate"
	ImportCreateOrUpdateIfMatchETag = "createOrUpdateIfMatchETag"
	ImportUpdateTwin                = "updateTwin"
	ImportUpdateTwinIfMatchETag     = "updateTwinIfMatchETag"
)

// ImportExportJob is an import or export job (Azure's JobProperties, plus
// localhub's counters DeviceCount, ProcessedCount and FailedCount).
type ImportExportJob struct {
	JobID                  string `json:"jobId,omitempty"`
	StartTimeUTC           string `json:"startTimeUtc,omitempty"`
	EndTimeUTC             string `json:"endTimeUtc,omitempty"`
	Type                   string `json:"type"`
	Status                 string `json:"status,omitempty"`
	Progress               int    `json:"progress"`
	InputBlobContainerURI  string `json:"inputBlobContainerUri,omitempty"`
	InputBlobName          string `json:"inputBlobName,omitempty"`
	OutputBlobContainerURI string `json:"outputBlobContainerUri,omitempty"`
	OutputBlobName         string `json:"outputBlobName,omitempty"`
	ExcludeKeysInExport    bool   `json:"excludeKeysInExport"`
	FailureReason          string `json:"failureReason,omitempty"`
	// ImportMode is the mode of input lines that name none (localhub).
	ImportMode string `json:"importMode,omitempty"`
	// DeviceCount is the number of input lines (import) or identities (export) (localhub).
	DeviceCount int `json:"deviceCount"`
	// ProcessedCount is how many of them are done (localhub).
	ProcessedCount int `json:"processedCount"`
	// FailedCount is how many input lines failed (localhub).
	FailedCount int `json:"failedCount"`
}

// Finished reports whether the job has ended (completed, failed or cancelled).
func (j *ImportExportJob) Finished() bool {
	return j.Status == JobCompleted || j.Status == JobFailed || j.Status == JobCancelled
}

// ImportError is one line of an import's importErrors.log.
type ImportError struct {
	Line        int    `json:"line"`
	DeviceID    string `json:"deviceId,omitempty"`
	ImportMode  string `json:"importMode,omitempty"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
}

// StartExport starts an export of every identity with its twin. Its
// devices.txt is read with ExportOutput once the job has completed.
func (c *Client) StartExport(ctx context.Context, excludeKeys bool) (*ImportExportJob, error) {
	var out ImportExportJob
	body := ImportExportJob{Type: JobTypeExport, ExcludeKeysInExport: excludeKeys}
	if _, err := c.call(ctx, request{method: http.MethodPost, path: []string{"jobs", "create"}, body: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StartImport uploads input, ExportImportDevice lines (JSONL), and starts
// an import job (localhub: the input travels in the request instead of a
// blob container). defaultMode ("" for the hub's default, createOrUpdate)
// applies to lines that name no importMode.
func (c *Client) StartImport(ctx context.Context, input []byte, defaultMode string) (*ImportExportJob, error) {
	r := request{
		method:  http.MethodPost,
		path:    []string{"jobs", "create"},
		header:  http.Header{"Content-Type": {"application/x-ndjson"}},
		rawBody: input,
	}
	if defaultMode != "" {
		r.query = map[string][]string{"importMode": {defaultMode}}
	}
	var out ImportExportJob
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetImportExportJob reads a job.
func (c *Client) GetImportExportJob(ctx context.Context, jobID string) (*ImportExportJob, error) {
	var out ImportExportJob
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"jobs", jobID}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListImportExportJobs lists the jobs the hub keeps, newest first.
func (c *Client) ListImportExportJobs(ctx context.Context) ([]ImportExportJob, error) {
	var out []ImportExportJob
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"jobs"}}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CancelImportExportJob cancels a running job; a finished job is left as it is.
func (c *Client) CancelImportExportJob(ctx context.Context, jobID string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: []string{"jobs", jobID}}, nil)
	return err
}

// WaitImportExportJob polls a job every interval until it has finished and
// returns it; progress, when non-nil, sees every poll. (The hub has no
// change feed for jobs, so polling it is.)
func (c *Client) WaitImportExportJob(ctx context.Context, jobID string, interval time.Duration, progress func(*ImportExportJob)) (*ImportExportJob, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		j, err := c.GetImportExportJob(ctx, jobID)
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(j)
		}
		if j.Finished() {
			return j, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return j, ctx.Err()
		}
	}
}

// ExportOutput copies a completed export's devices.txt (JSONL) to w.
func (c *Client) ExportOutput(ctx context.Context, jobID string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: []string{"jobs", "importExport", jobID, "output"}})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("read export output of job %s: %w", jobID, err)
	}
	return n, nil
}

// ImportErrors returns the failed lines of an import.
func (c *Client) ImportErrors(ctx context.Context, jobID string) ([]ImportError, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: []string{"jobs", "importExport", jobID, "errors"}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := []ImportError{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, maxBody))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e ImportError
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("decode import errors of job %s: %w", jobID, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("read import errors of job %s: a line is longer than 1 MB", jobID)
		}
		return nil, fmt.Errorf("read import errors of job %s: %w", jobID, err)
	}
	return out, nil
}
