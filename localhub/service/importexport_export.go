package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/drover-iot/drover/internal/twin"
	"github.com/drover-iot/drover/localhub/store"
)

// The export side of import/export jobs: the job request, and devices.txt
// written from the registry.

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
