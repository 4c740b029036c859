package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Message is one device-to-cloud message as kept by the hub.
type Message struct {
	Seq             int64
	DeviceID        string
	Enqueued        time.Time
	MessageID       string
	CorrelationID   string
	ContentType     string
	ContentEncoding string
	Properties      map[string]string // application properties
	System          map[string]string // other system properties ($.uid, $.to, $.exp, $.ctime, ...)
	Body            []byte
}

// AppendTelemetry stores a message durably and returns its sequence number.
func (s *Store) AppendTelemetry(ctx context.Context, m Message) (int64, error) {
	props, err := json.Marshal(orEmpty(m.Properties))
	if err != nil {
		return 0, fmt.Errorf("encode properties: %w", err)
	}
	sys, err := json.Marshal(orEmpty(m.System))
	if err != nil {
		return 0, fmt.Errorf("encode system properties: %w", err)
	}
	var seq int64
	err = s.write(ctx, "append telemetry", func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO telemetry(device_id, enqueued, message_id, correlation_id, content_type, content_encoding, app_props, sys_props, body)
			VALUES(?,?,?,?,?,?,?,?,?)`, m.DeviceID, fmtTime(m.Enqueued), m.MessageID, m.CorrelationID, m.ContentType, m.ContentEncoding,
			string(props), string(sys), m.Body)
		if err != nil {
			return fmt.Errorf("store telemetry from %s: %w", m.DeviceID, err)
		}
		seq, err = res.LastInsertId()
		s.telSince++
		return err
	})
	return seq, err
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// TelemetryAfter returns up to limit messages with seq > after, oldest first,
// from one device or (deviceID "") from all.
func (s *Store) TelemetryAfter(ctx context.Context, deviceID string, after int64, limit int) ([]Message, error) {
	q := `SELECT seq, device_id, enqueued, message_id, correlation_id, content_type, content_encoding, app_props, sys_props, body
		FROM telemetry WHERE seq > ?`
	args := []any{after}
	if deviceID != "" {
		q += ` AND device_id = ?`
		args = append(args, deviceID)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit)
	rows, err := s.rd.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read telemetry: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var m Message
		var enq, props, sys string
		if err := rows.Scan(&m.Seq, &m.DeviceID, &enq, &m.MessageID, &m.CorrelationID, &m.ContentType, &m.ContentEncoding, &props, &sys, &m.Body); err != nil {
			return nil, fmt.Errorf("read telemetry: %w", err)
		}
		m.Enqueued = parseTime(enq)
		_ = json.Unmarshal([]byte(props), &m.Properties)
		_ = json.Unmarshal([]byte(sys), &m.System)
		out = append(out, m)
	}
	return out, rows.Err()
}

// LastTelemetrySeq returns the newest sequence number (0 when empty).
func (s *Store) LastTelemetrySeq(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := s.rd.QueryRowContext(ctx, `SELECT MAX(seq) FROM telemetry`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read telemetry: %w", err)
	}
	return n.Int64, nil
}
