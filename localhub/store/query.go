package store

import (
	"context"
	"encoding/json"
	"fmt"
)

// QueryTwins runs sql (which must select one column, device_id, ordered by
// device_id) and loads the twins of one page of its results.
func (s *Store) QueryTwins(ctx context.Context, sql string, args []any, limit, offset int) ([]Twin, error) {
	q := `SELECT ` + twinCols + ` FROM devices JOIN (SELECT device_id AS qid FROM (` + sql + `) LIMIT ? OFFSET ?) ON device_id = qid ORDER BY device_id`
	rows, err := s.rd.QueryContext(ctx, q, append(append([]any{}, args...), limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("run query: %w", err)
	}
	defer rows.Close()
	out := []Twin{}
	for rows.Next() {
		t, err := scanTwin(rows)
		if err != nil {
			return nil, fmt.Errorf("run query: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// QueryRows runs sql (which must select one TEXT column holding a JSON object)
// and returns one page of rows.
func (s *Store) QueryRows(ctx context.Context, sql string, args []any, limit, offset int) ([]json.RawMessage, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT * FROM (`+sql+`) LIMIT ? OFFSET ?`, append(append([]any{}, args...), limit, offset)...)
	if err != nil {
		return nil, fmt.Errorf("run query: %w", err)
	}
	defer rows.Close()
	out := []json.RawMessage{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("run query: %w", err)
		}
		out = append(out, json.RawMessage(s))
	}
	return out, rows.Err()
}
