package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Enrollment is an enrollment group: devices provision themselves with keys
// derived from its key (see sas.DeriveKey) and become children of Parent.
type Enrollment struct {
	ID           string
	PrimaryKey   string
	SecondaryKey string
	Parent       string // device id of the parent edge device; "" for none
	Status       string // enabled | disabled
	Etag         string
	Created      time.Time
	Updated      time.Time
}

// Enabled reports whether the group may provision devices.
func (e Enrollment) Enabled() bool { return e.Status != "disabled" }

// PutEnrollment creates or replaces a group. Empty keys are generated (on
// create) or kept (on replace). A parent must be an existing edge device.
func (s *Store) PutEnrollment(ctx context.Context, e Enrollment) (Enrollment, error) {
	if err := ValidateDeviceID(e.ID); err != nil {
		return e, fmt.Errorf("enrollment group id: %w", err)
	}
	now := s.now()
	var out Enrollment
	err := s.write(ctx, "put enrollment "+e.ID, func(tx *sql.Tx) error {
		if e.Parent != "" {
			var edge int
			err := tx.QueryRow(`SELECT iot_edge FROM devices WHERE device_id = ?`, e.Parent).Scan(&edge)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("parent device %s: %w", e.Parent, ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("read parent %s: %w", e.Parent, err)
			}
			if edge == 0 {
				return fmt.Errorf("%w: parent %s is not an edge device (capabilities.iotEdge)", ErrInvalidParent, e.Parent)
			}
		}
		cur, err := scanEnrollment(tx.QueryRow(`SELECT `+enrollmentCols+` FROM enrollments WHERE id = ?`, e.ID))
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read enrollment %s: %w", e.ID, err)
		}
		if e.PrimaryKey == "" {
			e.PrimaryKey = cur.PrimaryKey
			if !exists {
				e.PrimaryKey = NewKey()
			}
		}
		if e.SecondaryKey == "" {
			e.SecondaryKey = cur.SecondaryKey
			if !exists {
				e.SecondaryKey = NewKey()
			}
		}
		if e.Status == "" {
			e.Status = "enabled"
		}
		e.Etag = newEtag()
		e.Created, e.Updated = now, now
		if exists {
			e.Created = cur.Created
		}
		_, err = tx.Exec(`INSERT INTO enrollments(id, primary_key, secondary_key, parent_id, status, etag, created, updated) VALUES(?,?,?,?,?,?,?,?)
			ON CONFLICT(id) DO UPDATE SET primary_key=excluded.primary_key, secondary_key=excluded.secondary_key, parent_id=excluded.parent_id,
			status=excluded.status, etag=excluded.etag, updated=excluded.updated`,
			e.ID, e.PrimaryKey, e.SecondaryKey, e.Parent, e.Status, e.Etag, fmtTime(e.Created), fmtTime(e.Updated))
		if err != nil {
			return fmt.Errorf("write enrollment %s: %w", e.ID, err)
		}
		out = e
		return nil
	})
	return out, err
}

// ErrInvalidParent is returned when an enrollment's parent cannot have children.
var ErrInvalidParent = errors.New("invalid parent")

const enrollmentCols = `id, primary_key, secondary_key, parent_id, status, etag, created, updated`

func scanEnrollment(sc scanner) (Enrollment, error) {
	var e Enrollment
	var c, u string
	err := sc.Scan(&e.ID, &e.PrimaryKey, &e.SecondaryKey, &e.Parent, &e.Status, &e.Etag, &c, &u)
	e.Created, e.Updated = parseTime(c), parseTime(u)
	return e, err
}

// GetEnrollment reads one group.
func (s *Store) GetEnrollment(ctx context.Context, id string) (Enrollment, error) {
	e, err := scanEnrollment(s.rd.QueryRowContext(ctx, `SELECT `+enrollmentCols+` FROM enrollments WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("enrollment group %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("read enrollment group %s: %w", id, err)
	}
	return e, nil
}

// ListEnrollments returns every group ordered by id.
func (s *Store) ListEnrollments(ctx context.Context) ([]Enrollment, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT `+enrollmentCols+` FROM enrollments ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list enrollment groups: %w", err)
	}
	defer rows.Close()
	out := []Enrollment{}
	for rows.Next() {
		e, err := scanEnrollment(rows)
		if err != nil {
			return nil, fmt.Errorf("list enrollment groups: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DeleteEnrollment removes a group; devices it provisioned stay registered.
func (s *Store) DeleteEnrollment(ctx context.Context, id, ifMatch string) error {
	return s.write(ctx, "delete enrollment "+id, func(tx *sql.Tx) error {
		var etag string
		err := tx.QueryRow(`SELECT etag FROM enrollments WHERE id = ?`, id).Scan(&etag)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("enrollment group %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read enrollment group %s: %w", id, err)
		}
		if !matchEtag(ifMatch, etag) {
			return fmt.Errorf("enrollment group %s: %w", id, ErrPrecondition)
		}
		_, err = tx.Exec(`DELETE FROM enrollments WHERE id = ?`, id)
		return err
	})
}

// ProvisionChild registers a device enrolled through group e, with the
// derived keys, as a child of the group's parent. It is a no-op returning the
// existing device when the id is already registered.
func (s *Store) ProvisionChild(ctx context.Context, e Enrollment, id, primaryKey, secondaryKey string) (Device, error) {
	d := Device{ID: id, PrimaryKey: primaryKey, SecondaryKey: secondaryKey, StatusReason: "provisioned by enrollment group " + e.ID}
	if e.Parent != "" {
		p, err := s.GetDevice(ctx, e.Parent)
		if err != nil {
			return d, fmt.Errorf("parent of enrollment group %s: %w", e.ID, err)
		}
		d.DeviceScope, d.ParentScopes = p.DeviceScope, []string{p.DeviceScope}
	}
	out, err := s.CreateDevice(ctx, d)
	if errors.Is(err, ErrExists) {
		return s.GetDevice(ctx, id)
	}
	return out, err
}
