package serviceclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxSSELine bounds one line of the event stream: a telemetry message is at
// most 256 KB, a third more as base64, plus its properties.
const maxSSELine = 4 << 20

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	Type string // "message" when the stream gave no "event:" field
	ID   string // the last event ID seen so far, as the spec defines it
	Data string
}

// sseReader parses a text/event-stream as the WHATWG HTML "Server-sent
// events" section defines it: lines end in CRLF, LF or CR; a blank line
// dispatches; ":" starts a comment; "field: value" with one optional space;
// a line without a colon is a field with an empty value; unknown fields are
// ignored; an event without data is not dispatched; an unterminated event at
// the end of the stream is dropped.
type sseReader struct {
	sc      *bufio.Scanner
	started bool
	lastID  string
	typ     string
	data    strings.Builder
	hasData bool
}

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	sc.Split(splitSSELines)
	return &sseReader{sc: sc}
}

// Next returns the next event, io.EOF at the end of the stream, or the read error.
func (r *sseReader) Next() (sseEvent, error) {
	for r.sc.Scan() {
		line := r.sc.Text()
		if !r.started {
			r.started = true
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" {
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // comment, often a keep-alive
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			r.typ = value
		case "data":
			if r.hasData {
				r.data.WriteByte('\n')
			}
			r.data.WriteString(value)
			r.hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastID = value
			}
		}
		// "retry" and unknown fields: nothing to do for a client that does not reconnect by itself.
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return sseEvent{}, fmt.Errorf("event stream: line longer than %d bytes: %w", maxSSELine, err)
		}
		return sseEvent{}, err
	}
	return sseEvent{}, io.EOF
}

func (r *sseReader) dispatch() (sseEvent, bool) {
	ev := sseEvent{Type: r.typ, ID: r.lastID, Data: r.data.String()}
	ok := r.hasData
	r.typ = ""
	r.data.Reset()
	r.hasData = false
	if ev.Type == "" {
		ev.Type = "message"
	}
	return ev, ok
}

// splitSSELines is a bufio.SplitFunc for lines ending in CRLF, LF or CR.
func splitSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if !atEOF {
			return 0, nil, nil // a CR at the end of the buffer: is LF next?
		}
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}
