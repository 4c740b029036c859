package serviceclient

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// sseCases is the catalogue of event-stream inputs and the events they dispatch.
var sseCases = []struct {
	name string
	in   string
	want []sseEvent
}{
	{
		name: "one telemetry event",
		in:   "event: telemetry\nid: 7\ndata: {\"seq\":7}\n\n",
		want: []sseEvent{{Type: "telemetry", ID: "7", Data: `{"seq":7}`}},
	},
	{
		name: "CRLF line ends",
		in:   "event: telemetry\r\nid: 1\r\ndata: a\r\n\r\n",
		want: []sseEvent{{Type: "telemetry", ID: "1", Data: "a"}},
	},
	{
		name: "CR line ends",
		in:   "event: telemetry\rid: 1\rdata: a\r\r",
		want: []sseEvent{{Type: "telemetry", ID: "1", Data: "a"}},
	},
	{
		name: "no space after colon, default type",
		in:   "data:x\n\n",
		want: []sseEvent{{Type: "message", Data: "x"}},
	},
	{
		name: "only the first space is stripped",
		in:   "data:  two\n\n",
		want: []sseEvent{{Type: "message", Data: " two"}},
	},
	{
		name: "multi-line data joined with LF",
		in:   "data: {\ndata: \"a\":1\ndata: }\n\n",
		want: []sseEvent{{Type: "message", Data: "{\n\"a\":1\n}"}},
	},
	{
		name: "comments and keep-alives ignored",
		in:   ": ping\n\n:\n\nevent: telemetry\n: mid-event comment\ndata: a\n\n",
		want: []sseEvent{{Type: "telemetry", Data: "a"}},
	},
	{
		name: "event without data is not dispatched and its type does not leak",
		in:   "event: telemetry\nid: 3\n\ndata: b\n\n",
		want: []sseEvent{{Type: "message", ID: "3", Data: "b"}},
	},
	{
		name: "last id carries over",
		in:   "id: 5\ndata: a\n\ndata: b\n\n",
		want: []sseEvent{{Type: "message", ID: "5", Data: "a"}, {Type: "message", ID: "5", Data: "b"}},
	},
	{
		name: "id with NUL is ignored",
		in:   "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
		want: []sseEvent{{Type: "message", ID: "1", Data: "a"}, {Type: "message", ID: "1", Data: "b"}},
	},
	{
		name: "garbage lines: unknown fields and lines without colon",
		in:   "garbage\nretry: 1000\nfoo: bar\n\x00\x01\xff\ndata: ok\n\n",
		want: []sseEvent{{Type: "message", Data: "ok"}},
	},
	{
		name: "field name without colon is a field with empty value",
		in:   "data\ndata\n\n",
		want: []sseEvent{{Type: "message", Data: "\n"}},
	},
	{
		name: "leading BOM stripped",
		in:   "\uFEFFdata: a\n\n",
		want: []sseEvent{{Type: "message", Data: "a"}},
	},
	{
		name: "unterminated event at end of stream is dropped",
		in:   "data: a\n\ndata: half",
		want: []sseEvent{{Type: "message", Data: "a"}},
	},
	{
		name: "empty stream",
		in:   "",
	},
	{
		name: "only blank lines",
		in:   "\n\n\r\n\r",
	},
	{
		name: "field names are case-sensitive",
		in:   "Data: x\nEVENT: telemetry\ndata: y\n\n",
		want: []sseEvent{{Type: "message", Data: "y"}},
	},
}

func readAllSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	sr := newSSEReader(r)
	var got []sseEvent
	for {
		ev, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, ev)
		if len(got) > 100 {
			t.Fatal("runaway parser")
		}
	}
}

func TestSSEReader(t *testing.T) {
	for _, tc := range sseCases {
		t.Run(tc.name, func(t *testing.T) {
			got := readAllSSE(t, strings.NewReader(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("input %q\n got %#v\nwant %#v", tc.in, got, tc.want)
			}
		})
	}
}

// TestSSEReaderSplitChunks feeds every case one byte at a time and split at
// every position, as a network may deliver it, including between CR and LF.
func TestSSEReaderSplitChunks(t *testing.T) {
	for _, tc := range sseCases {
		t.Run(tc.name, func(t *testing.T) {
			got := readAllSSE(t, iotest.OneByteReader(strings.NewReader(tc.in)))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("one byte at a time %q\n got %#v\nwant %#v", tc.in, got, tc.want)
			}
			for i := 0; i <= len(tc.in); i++ {
				r := io.MultiReader(iotest.HalfReader(strings.NewReader(tc.in[:i])), strings.NewReader(tc.in[i:]))
				got := readAllSSE(t, r)
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("split at %d of %q\n got %#v\nwant %#v", i, tc.in, got, tc.want)
				}
			}
		})
	}
}

func TestSSEReaderErrors(t *testing.T) {
	t.Run("line too long", func(t *testing.T) {
		in := "data: " + strings.Repeat("x", maxSSELine+10) + "\n\n"
		_, err := newSSEReader(strings.NewReader(in)).Next()
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("Next on an over-long line: err = %v, want a length error", err)
		}
	})
	t.Run("read error surfaces after earlier events", func(t *testing.T) {
		boom := errors.New("connection reset")
		sr := newSSEReader(io.MultiReader(strings.NewReader("data: a\n\n"), iotest.ErrReader(boom)))
		if ev, err := sr.Next(); err != nil || ev.Data != "a" {
			t.Fatalf("first Next = %#v, %v", ev, err)
		}
		if _, err := sr.Next(); !errors.Is(err, boom) {
			t.Fatalf("second Next err = %v, want %v", err, boom)
		}
	})
}

func TestEventStreamNext(t *testing.T) {
	in := strings.Join([]string{
		": keep-alive",
		"",
		"event: ping",
		"data: {}",
		"",
		"event: telemetry",
		"id: 41",
		`data: {"seq":41,"deviceId":"pump-1","enqueuedTime":"2026-01-02T03:04:05.123Z","messageId":"m1","properties":{"alert":"high"},"systemProperties":{"iothub-content-type":"application/json"},"body":"{\"t\":21.5}","bodyEncoding":""}`,
		"",
		"event: telemetry",
		"id: 42",
		"data: {not json",
		"",
		"event: telemetry",
		"id: 43",
		"data: [1,2]",
		"",
		"event: telemetry",
		"id: 44",
		`data: {"deviceId":"pump-2",`,
		`data:  "body":"AAEC","bodyEncoding":"base64"}`,
		"",
		"",
	}, "\n")
	s := newEventStream(io.NopCloser(strings.NewReader(in)))

	ev, err := s.Next()
	if err != nil {
		t.Fatalf("event 41: %v", err)
	}
	if ev.Seq != 41 || ev.DeviceID != "pump-1" || ev.Properties["alert"] != "high" || ev.Body != `{"t":21.5}` || ev.MessageID != "m1" {
		t.Errorf("event 41 decoded as %#v", ev)
	}
	if strings.Contains(string(ev.Raw), "\n") {
		t.Errorf("Raw spans lines: %s", ev.Raw)
	}

	for _, id := range []string{"42", "43"} {
		_, err = s.Next()
		if !errors.Is(err, ErrBadEvent) || !strings.Contains(err.Error(), id) {
			t.Errorf("event %s: err = %v, want ErrBadEvent naming the id", id, err)
		}
	}

	ev, err = s.Next()
	if err != nil {
		t.Fatalf("event 44: %v", err)
	}
	if ev.Seq != 44 {
		t.Errorf("event 44: Seq = %d, want it taken from the id line", ev.Seq)
	}
	body, err := ev.BodyBytes()
	if err != nil || string(body) != "\x00\x01\x02" {
		t.Errorf("event 44 body = %q, %v", body, err)
	}
	if string(ev.Raw) != `{"deviceId":"pump-2","body":"AAEC","bodyEncoding":"base64"}` {
		t.Errorf("event 44 Raw = %s", ev.Raw)
	}

	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last event: err = %v, want io.EOF", err)
	}
}

func TestEventBodyBytesBadBase64(t *testing.T) {
	e := Event{Seq: 1, Body: "!!!", BodyEncoding: "base64"}
	if _, err := e.BodyBytes(); err == nil {
		t.Fatal("BodyBytes of invalid base64: no error")
	}
}

func FuzzSSEReader(f *testing.F) {
	for _, tc := range sseCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sr := newSSEReader(strings.NewReader(in))
		for i := 0; i <= len(in)+1; i++ {
			if _, err := sr.Next(); err != nil {
				return
			}
		}
		t.Fatalf("more events than bytes in %q", in)
	})
}
