package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/drover-iot/drover/internal/twin"
)

// GetTwin reads a device's twin.
func (s *Store) GetTwin(ctx context.Context, id string) (Twin, error) {
	t, err := scanTwin(s.rd.QueryRowContext(ctx, `SELECT `+twinCols+` FROM devices WHERE device_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("read twin %s: %w", id, err)
	}
	return t, nil
}

// TwinChange is the result of a service-side twin update.
type TwinChange struct {
	Twin Twin
	// DesiredPatch is what changed in desired, as a device must be told
	// (the patch for PATCH, the whole desired document for PUT), without
	// $version; nil when desired did not change.
	DesiredPatch map[string]any
}

// PatchTwin merge-patches tags and/or desired properties. Either may be nil.
// Nothing is applied when any part is invalid or ifMatch does not match.
func (s *Store) PatchTwin(ctx context.Context, id string, tags, desired map[string]any, ifMatch string) (TwinChange, error) {
	return s.updateTwin(ctx, id, ifMatch, func(t *Twin) (map[string]any, error) {
		now := s.now()
		if tags != nil {
			nt, err := t.Tags.Patch(twin.Tags, tags, now)
			if err != nil {
				return nil, err
			}
			t.Tags = nt
		}
		if desired != nil {
			nd, err := t.Desired.Patch(twin.Desired, desired, now)
			if err != nil {
				return nil, err
			}
			t.Desired = nd
			return desired, nil
		}
		return nil, nil
	})
}

// ReplaceTwin replaces tags and desired properties (service PUT). A nil map replaces with empty.
func (s *Store) ReplaceTwin(ctx context.Context, id string, tags, desired map[string]any, ifMatch string) (TwinChange, error) {
	if tags == nil {
		tags = map[string]any{}
	}
	if desired == nil {
		desired = map[string]any{}
	}
	return s.updateTwin(ctx, id, ifMatch, func(t *Twin) (map[string]any, error) {
		now := s.now()
		nt, err := t.Tags.Replace(twin.Tags, tags, now)
		if err != nil {
			return nil, err
		}
		nd, err := t.Desired.Replace(twin.Desired, desired, now)
		if err != nil {
			return nil, err
		}
		t.Tags, t.Desired = nt, nd
		return nd.Props, nil
	})
}

func (s *Store) updateTwin(ctx context.Context, id, ifMatch string, apply func(t *Twin) (map[string]any, error)) (TwinChange, error) {
	var out TwinChange
	err := s.write(ctx, "update twin "+id, func(tx *sql.Tx) error {
		t, err := scanTwin(tx.QueryRow(`SELECT `+twinCols+` FROM devices WHERE device_id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read twin %s: %w", id, err)
		}
		if !matchEtag(ifMatch, t.TwinEtag) {
			return fmt.Errorf("twin %s: %w", id, ErrPrecondition)
		}
		desiredPatch, err := apply(&t)
		if err != nil {
			return err
		}
		t.Version++
		t.TwinEtag = twinEtag(t.Version)
		tags, err := json.Marshal(t.Tags.Props)
		if err != nil {
			return fmt.Errorf("encode tags of %s: %w", id, err)
		}
		des, err := json.Marshal(t.Desired.Props)
		if err != nil {
			return fmt.Errorf("encode desired of %s: %w", id, err)
		}
		desMeta, err := json.Marshal(t.Desired.Meta)
		if err != nil {
			return fmt.Errorf("encode desired metadata of %s: %w", id, err)
		}
		_, err = tx.Exec(`UPDATE devices SET twin_etag=?, twin_version=?, tags=?, desired=?, desired_meta=?, desired_version=? WHERE device_id=?`,
			t.TwinEtag, t.Version, string(tags), string(des), string(desMeta), t.Desired.Version, id)
		if err != nil {
			return fmt.Errorf("write twin %s: %w", id, err)
		}
		out = TwinChange{Twin: t, DesiredPatch: desiredPatch}
		return nil
	})
	return out, err
}

// PatchReported merge-patches a device's reported properties and returns the new reported $version.
func (s *Store) PatchReported(ctx context.Context, id string, patch map[string]any) (int64, error) {
	var version int64
	err := s.write(ctx, "patch reported "+id, func(tx *sql.Tx) error {
		var rep, repMeta string
		var sec twin.Section
		var twinVersion int64
		err := tx.QueryRow(`SELECT reported, reported_meta, reported_version, twin_version FROM devices WHERE device_id = ?`, id).
			Scan(&rep, &repMeta, &sec.Version, &twinVersion)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read reported of %s: %w", id, err)
		}
		if sec.Props, err = twin.DecodeObject([]byte(rep)); err != nil {
			return fmt.Errorf("decode reported of %s: %w", id, err)
		}
		if sec.Meta, err = twin.DecodeObject([]byte(repMeta)); err != nil {
			return fmt.Errorf("decode reported metadata of %s: %w", id, err)
		}
		next, err := sec.Patch(twin.Reported, patch, s.now())
		if err != nil {
			return err
		}
		b, err := json.Marshal(next.Props)
		if err != nil {
			return fmt.Errorf("encode reported of %s: %w", id, err)
		}
		m, err := json.Marshal(next.Meta)
		if err != nil {
			return fmt.Errorf("encode reported metadata of %s: %w", id, err)
		}
		twinVersion++
		_, err = tx.Exec(`UPDATE devices SET reported=?, reported_meta=?, reported_version=?, twin_version=?, twin_etag=? WHERE device_id=?`,
			string(b), string(m), next.Version, twinVersion, twinEtag(twinVersion), id)
		if err != nil {
			return fmt.Errorf("write reported of %s: %w", id, err)
		}
		version = next.Version
		return nil
	})
	return version, err
}
