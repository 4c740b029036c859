package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/internal/twin"
)

// Device is an identity in the registry.
type Device struct {
	ID                     string
	GenerationID           string
	Etag                   string
	Status                 string // enabled | disabled
	StatusReason           string
	StatusUpdated          time.Time
	AuthType               string // sas | selfSigned | certificateAuthority | none
	PrimaryKey             string
	SecondaryKey           string
	PrimaryThumbprint      string
	SecondaryThumbprint    string
	IoTEdge                bool
	DeviceScope            string
	ParentScopes           []string
	ConnectionState        string // Connected | Disconnected
	ConnectionStateUpdated time.Time
	LastActivity           time.Time
	C2DCount               int
}

// Enabled reports whether the device may connect.
func (d Device) Enabled() bool { return !strings.EqualFold(d.Status, "disabled") }

// Twin is a device's twin together with the identity fields Azure shows in it.
type Twin struct {
	Device
	TwinEtag string
	Version  int64
	Tags     twin.Section
	Desired  twin.Section
	Reported twin.Section
}

// ErrInvalidID is returned for device ids outside Azure's rules.
var ErrInvalidID = errors.New("invalid device id")

// ValidateDeviceID checks Azure's device id rules: 1–128 ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ '.
func ValidateDeviceID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w %q: must be 1 to 128 characters", ErrInvalidID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.+%_#*?!(),=@$'", c) >= 0:
		default:
			return fmt.Errorf("%w %q: character %q is not allowed (letters, digits and -.+%%_#*?!(),=@$' only)", ErrInvalidID, id, c)
		}
	}
	return nil
}

const deviceCols = `device_id, generation_id, etag, status, status_reason, status_updated, auth_type,
	primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, iot_edge, device_scope, parent_scopes,
	connection_state, connection_state_updated, last_activity, c2d_count`

const twinCols = deviceCols + `, twin_etag, twin_version, tags, desired, desired_meta, desired_version, reported, reported_meta, reported_version`

type scanner interface{ Scan(dest ...any) error }

func scanDevice(sc scanner, extra ...any) (Device, error) {
	var d Device
	var su, csu, la, ps string
	var edge int
	dest := []any{&d.ID, &d.GenerationID, &d.Etag, &d.Status, &d.StatusReason, &su, &d.AuthType,
		&d.PrimaryKey, &d.SecondaryKey, &d.PrimaryThumbprint, &d.SecondaryThumbprint, &edge, &d.DeviceScope, &ps,
		&d.ConnectionState, &csu, &la, &d.C2DCount}
	if err := sc.Scan(append(dest, extra...)...); err != nil {
		return d, err
	}
	d.StatusUpdated, d.ConnectionStateUpdated, d.LastActivity = parseTime(su), parseTime(csu), parseTime(la)
	d.IoTEdge = edge != 0
	if err := json.Unmarshal([]byte(ps), &d.ParentScopes); err != nil {
		return d, fmt.Errorf("device %s: parent scopes: %w", d.ID, err)
	}
	if d.ParentScopes == nil {
		d.ParentScopes = []string{}
	}
	return d, nil
}

func scanTwin(sc scanner) (Twin, error) {
	var t Twin
	var tags, des, desMeta, rep, repMeta string
	d, err := scanDevice(sc, &t.TwinEtag, &t.Version, &tags, &des, &desMeta, &t.Desired.Version, &rep, &repMeta, &t.Reported.Version)
	if err != nil {
		return t, err
	}
	t.Device = d
	if t.Tags.Props, err = twin.DecodeObject([]byte(tags)); err != nil {
		return t, fmt.Errorf("twin %s: tags: %w", d.ID, err)
	}
	if t.Desired.Props, err = twin.DecodeObject([]byte(des)); err != nil {
		return t, fmt.Errorf("twin %s: desired: %w", d.ID, err)
	}
	if t.Desired.Meta, err = twin.DecodeObject([]byte(desMeta)); err != nil {
		return t, fmt.Errorf("twin %s: desired metadata: %w", d.ID, err)
	}
	if t.Reported.Props, err = twin.DecodeObject([]byte(rep)); err != nil {
		return t, fmt.Errorf("twin %s: reported: %w", d.ID, err)
	}
	if t.Reported.Meta, err = twin.DecodeObject([]byte(repMeta)); err != nil {
		return t, fmt.Errorf("twin %s: reported metadata: %w", d.ID, err)
	}
	return t, nil
}

func newEtag() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 10)))
}

func twinEtag(version int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(version))
	return base64.StdEncoding.EncodeToString(b[:])
}

// matchEtag implements If-Match: empty or "*" match anything; quotes are optional.
func matchEtag(ifMatch, etag string) bool {
	m := strings.Trim(strings.TrimSpace(ifMatch), `"`)
	return m == "" || m == "*" || m == etag
}

// CreateDevice adds a device and its empty twin. Empty keys are generated.
// Edge devices get their deviceScope generated.
func (s *Store) CreateDevice(ctx context.Context, d Device) (Device, error) {
	if err := ValidateDeviceID(d.ID); err != nil {
		return d, err
	}
	now := s.now()
	fillDefaults(&d, now)
	var out Device
	err := s.write(ctx, "create device "+d.ID, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM devices WHERE device_id = ?`, d.ID).Scan(&n); err != nil {
			return fmt.Errorf("create device %s: %w", d.ID, err)
		}
		if n > 0 {
			return fmt.Errorf("device %s: %w", d.ID, ErrExists)
		}
		if err := insertDevice(tx, d, now); err != nil {
			return err
		}
		out = d
		return nil
	})
	return out, err
}

func fillDefaults(d *Device, now time.Time) {
	d.GenerationID = strconv.FormatInt(now.UnixNano()/100+621355968000000000, 10) // .NET ticks, as Azure shows them
	d.Etag = newEtag()
	if d.Status == "" {
		d.Status = "enabled"
	}
	d.Status = strings.ToLower(d.Status)
	d.StatusUpdated = now
	if d.AuthType == "" {
		d.AuthType = "sas"
	}
	if d.AuthType == "sas" {
		if d.PrimaryKey == "" {
			d.PrimaryKey = NewKey()
		}
		if d.SecondaryKey == "" {
			d.SecondaryKey = NewKey()
		}
	}
	if d.IoTEdge && d.DeviceScope == "" {
		d.DeviceScope = "ms-azure-iot-edge://" + d.ID + "-" + d.GenerationID
	}
	if d.ParentScopes == nil {
		d.ParentScopes = []string{}
	}
	if d.ConnectionState == "" {
		d.ConnectionState = "Disconnected"
	}
}

func insertDevice(tx *sql.Tx, d Device, now time.Time) error {
	ps, _ := json.Marshal(d.ParentScopes)
	meta := `{"$lastUpdated":"` + fmtTime(now) + `"}`
	_, err := tx.Exec(`INSERT INTO devices(device_id, generation_id, etag, status, status_reason, status_updated, auth_type,
		primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, iot_edge, device_scope, parent_scopes,
		connection_state, created, twin_etag, twin_version, desired_meta, reported_meta)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,?,?)`,
		d.ID, d.GenerationID, d.Etag, d.Status, d.StatusReason, fmtTime(d.StatusUpdated), d.AuthType,
		d.PrimaryKey, d.SecondaryKey, d.PrimaryThumbprint, d.SecondaryThumbprint, boolInt(d.IoTEdge), d.DeviceScope, string(ps),
		d.ConnectionState, fmtTime(now), twinEtag(1), meta, meta)
	if err != nil {
		return fmt.Errorf("insert device %s: %w", d.ID, err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// GetDevice reads one identity.
func (s *Store) GetDevice(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.rd.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE device_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("read device %s: %w", id, err)
	}
	return d, nil
}

// UpdateDevice replaces an identity's settable fields (status, reason, keys,
// thumbprints, capabilities, scopes) when ifMatch matches its etag. Empty keys
// keep the current keys. It returns the identity before and after.
func (s *Store) UpdateDevice(ctx context.Context, d Device, ifMatch string) (before, after Device, err error) {
	now := s.now()
	err = s.write(ctx, "update device "+d.ID, func(tx *sql.Tx) error {
		cur, err := scanDevice(tx.QueryRow(`SELECT `+deviceCols+` FROM devices WHERE device_id = ?`, d.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s: %w", d.ID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read device %s: %w", d.ID, err)
		}
		if !matchEtag(ifMatch, cur.Etag) {
			return fmt.Errorf("device %s: %w", d.ID, ErrPrecondition)
		}
		next := mergeIdentity(cur, d, now)
		ps, _ := json.Marshal(next.ParentScopes)
		_, err = tx.Exec(`UPDATE devices SET etag=?, status=?, status_reason=?, status_updated=?, auth_type=?, primary_key=?, secondary_key=?,
			primary_thumbprint=?, secondary_thumbprint=?, iot_edge=?, device_scope=?, parent_scopes=? WHERE device_id=?`,
			next.Etag, next.Status, next.StatusReason, fmtTime(next.StatusUpdated), next.AuthType, next.PrimaryKey, next.SecondaryKey,
			next.PrimaryThumbprint, next.SecondaryThumbprint, boolInt(next.IoTEdge), next.DeviceScope, string(ps), next.ID)
		if err != nil {
			return fmt.Errorf("update device %s: %w", d.ID, err)
		}
		before, after = cur, next
		return nil
	})
	return before, after, err
}

// DeleteDevice removes an identity and its twin when ifMatch matches.
func (s *Store) DeleteDevice(ctx context.Context, id, ifMatch string) error {
	return s.write(ctx, "delete device "+id, func(tx *sql.Tx) error {
		var etag string
		err := tx.QueryRow(`SELECT etag FROM devices WHERE device_id = ?`, id).Scan(&etag)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read device %s: %w", id, err)
		}
		if !matchEtag(ifMatch, etag) {
			return fmt.Errorf("device %s: %w", id, ErrPrecondition)
		}
		if _, err := tx.Exec(`DELETE FROM devices WHERE device_id = ?`, id); err != nil {
			return fmt.Errorf("delete device %s: %w", id, err)
		}
		return nil
	})
}

// ListDevices returns up to top identities ordered by id.
func (s *Store) ListDevices(ctx context.Context, top int) ([]Device, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices ORDER BY device_id LIMIT ?`, top)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CountDevices returns the number of identities, enabled and disabled.
func (s *Store) CountDevices(ctx context.Context) (total, enabled int, err error) {
	err = s.rd.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(status = 'enabled'), 0) FROM devices`).Scan(&total, &enabled)
	if err != nil {
		err = fmt.Errorf("count devices: %w", err)
	}
	return total, enabled, err
}

// SetConnectionState records a device connecting or disconnecting.
func (s *Store) SetConnectionState(ctx context.Context, id string, connected bool, at time.Time) error {
	state := "Disconnected"
	if connected {
		state = "Connected"
	}
	return s.write(ctx, "connection state "+id, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE devices SET connection_state=?, connection_state_updated=?, last_activity=? WHERE device_id=?`,
			state, fmtTime(at), fmtTime(at), id)
		return err
	})
}

// ResetConnectionStates marks every device disconnected (at start: no session survives a restart).
func (s *Store) ResetConnectionStates(ctx context.Context, at time.Time) error {
	return s.write(ctx, "reset connection states", func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE devices SET connection_state='Disconnected', connection_state_updated=? WHERE connection_state != 'Disconnected'`, fmtTime(at))
		return err
	})
}

// TouchActivity records device activity (callers rate-limit it).
func (s *Store) TouchActivity(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, "touch "+id, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE devices SET last_activity=? WHERE device_id=?`, fmtTime(at), id)
		return err
	})
}
