package upstream

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeDesired(t *testing.T) {
	cases := []struct {
		name         string
		body         string
		topicVersion int64
		want         map[string]any
		version      int64
		wantErr      bool
	}{
		{name: "patch", body: `{"a":1,"$version":4}`, topicVersion: 4, want: map[string]any{"a": json.Number("1")}, version: 4},
		{name: "body version only", body: `{"a":{"b":null},"$version":7}`, want: map[string]any{"a": map[string]any{"b": nil}}, version: 7},
		{name: "topic version only", body: `{"a":"x"}`, topicVersion: 9, want: map[string]any{"a": "x"}, version: 9},
		{name: "big number kept exact", body: `{"n":12345678901234567890,"$version":1}`, want: map[string]any{"n": json.Number("12345678901234567890")}, version: 1},
		{name: "empty patch", body: `{"$version":2}`, want: map[string]any{}, version: 2},
		{name: "missing version", body: `{"a":1}`, wantErr: true},
		{name: "versions disagree", body: `{"$version":3}`, topicVersion: 4, wantErr: true},
		{name: "string version", body: `{"$version":"3"}`, wantErr: true},
		{name: "fractional version", body: `{"$version":3.5}`, wantErr: true},
		{name: "negative version", body: `{"$version":-1}`, wantErr: true},
		{name: "bad JSON", body: `{"a":`, topicVersion: 1, wantErr: true},
		{name: "array", body: `[1,2]`, topicVersion: 1, wantErr: true},
		{name: "null", body: `null`, topicVersion: 1, wantErr: true},
		{name: "empty body", body: ``, topicVersion: 1, wantErr: true},
		{name: "trailing data", body: `{"$version":1} {}`, wantErr: true},
		{name: "binary", body: "\xff\x00", topicVersion: 1, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, v, err := decodeDesired([]byte(tc.body), tc.topicVersion)
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("decodeDesired(%q, %d) = %v, %d, %v; want ErrMalformed", tc.body, tc.topicVersion, got, v, err)
				}
				return
			}
			if err != nil || v != tc.version || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decodeDesired(%q, %d) = %v, %d, %v; want %v, %d", tc.body, tc.topicVersion, got, v, err, tc.want, tc.version)
			}
		})
	}
}

func TestDecodeTwin(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		wantErr bool
	}{
		{name: "twin", body: `{"desired":{"$version":1},"reported":{"x":1.5,"$version":3}}`},
		{name: "missing reported", body: `{"desired":{}}`, wantErr: true},
		{name: "desired not object", body: `{"desired":1,"reported":{}}`, wantErr: true},
		{name: "empty body", body: ``, wantErr: true},
		{name: "not JSON", body: `<html>`, wantErr: true},
		{name: "error body", body: `{"errorCode":500001,"message":"x"}`, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, r, err := decodeTwin([]byte(tc.body))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("decodeTwin(%q) = %v, %v, %v; want ErrMalformed", tc.body, d, r, err)
				}
				return
			}
			if err != nil || d == nil || r == nil {
				t.Fatalf("decodeTwin(%q) = %v, %v, %v", tc.body, d, r, err)
			}
			if r["x"] != json.Number("1.5") {
				t.Fatalf("numbers should be json.Number: %T", r["x"])
			}
		})
	}
}

func TestDecodeStatusError(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   StatusError
		text   string
	}{
		{name: "azure shape", status: 400, body: `{"errorCode":400004,"message":"too deep","trackingId":"x"}`,
			want: StatusError{Status: 400, Code: 400004, Message: "too deep"}, text: "hub answered 400 (errorCode 400004): too deep"},
		{name: "empty body", status: 429, body: ``, want: StatusError{Status: 429}, text: "hub answered 429"},
		{name: "plain text", status: 500, body: "oops\n", want: StatusError{Status: 500, Message: "oops"}},
		{name: "string code", status: 500, body: `{"errorCode":"x","message":"m"}`, want: StatusError{Status: 500, Message: "oops"}},
		{name: "long garbage clipped", status: 503, body: strings.Repeat("z", 1000), want: StatusError{Status: 503, Message: strings.Repeat("z", maxErrorText) + "…"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeStatusError(tc.status, []byte(tc.body))
			if tc.name == "string code" {
				// Not an integer: kept as text, no code.
				if got.Code != 0 || got.Status != 500 {
					t.Fatalf("got %+v", got)
				}
				return
			}
			if *got != tc.want {
				t.Fatalf("decodeStatusError(%d, %q) = %+v, want %+v", tc.status, tc.body, *got, tc.want)
			}
			if tc.text != "" && got.Error() != tc.text {
				t.Fatalf("Error() = %q, want %q", got.Error(), tc.text)
			}
		})
	}
}

func TestMethodPayloadAndResponse(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		wantErr    bool
	}{
		{"", "null", false},
		{"  ", "null", false},
		{`{"a":1}`, `{"a":1}`, false},
		{" 3 ", "3", false},
		{"{", "", true},
		{"\xff", "", true},
	} {
		got, err := methodPayload([]byte(tc.body))
		if (err != nil) != tc.wantErr || string(got) != tc.want {
			t.Errorf("methodPayload(%q) = %q, %v", tc.body, got, err)
		}
	}
	for _, tc := range []struct {
		in      any
		want    string
		wantErr bool
	}{
		{nil, "null", false},
		{map[string]int{"a": 1}, `{"a":1}`, false},
		{json.RawMessage(`{"raw":true}`), `{"raw":true}`, false},
		{json.RawMessage(`{bad`), "", true},
		{make(chan int), "", true},
	} {
		got, err := methodResponse(tc.in)
		if (err != nil) != tc.wantErr || string(got) != tc.want {
			t.Errorf("methodResponse(%v) = %q, %v", tc.in, got, err)
		}
	}
}

func TestUsername(t *testing.T) {
	got := username("hub.example", "gw-1", "1.2.3")
	want := "hub.example/gw-1/?api-version=2021-04-12&DeviceClientType=drover%2F1.2.3"
	if got != want {
		t.Fatalf("username = %q, want %q", got, want)
	}
}

func TestBackoff(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest value rnd may return
	cases := []struct {
		failures int
		lo, hi   time.Duration
		want     time.Duration
	}{
		{0, time.Second, time.Minute, 0},
		{1, time.Second, time.Minute, time.Second - 1},
		{2, time.Second, time.Minute, 2*time.Second - 1},
		{3, time.Second, time.Minute, 4*time.Second - 1},
		{7, time.Second, time.Minute, time.Minute - 1},
		{1000, time.Second, time.Minute, time.Minute - 1}, // no overflow
		{5, 0, time.Minute, 0},
		{1, time.Second, time.Second, time.Second - 1},
	}
	for _, tc := range cases {
		if got := backoff(tc.failures, tc.lo, tc.hi, top); got != tc.want {
			t.Errorf("backoff(%d, %s, %s) = %s, want %s", tc.failures, tc.lo, tc.hi, got, tc.want)
		}
	}
	if got := backoff(3, time.Second, time.Minute, func(int64) int64 { return 0 }); got != 0 {
		t.Errorf("full jitter may wait 0, got %s", got)
	}
}

func TestOptionsDefaults(t *testing.T) {
	base := Options{DeviceID: "gw-1", HostName: "hub.example", Key: "a2V5"}
	o, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Address != "hub.example:8883" || o.TLS.ServerName != "hub.example" || o.TokenTTL != time.Hour ||
		o.RenewBefore != 6*time.Minute || o.BackoffMin != time.Second || o.BackoffMax != time.Minute ||
		o.KeepAlive != time.Minute || o.pingTimeout() != 10*time.Second {
		t.Fatalf("defaults: %+v", o)
	}
	withPort := base
	withPort.HostName = "localhost:8884"
	if o, _ := withPort.withDefaults(); o.Address != "localhost:8884" || o.TLS.ServerName != "localhost" {
		t.Fatalf("HostName with port: address %q server name %q", o.Address, o.TLS.ServerName)
	}
	short := base
	short.TokenTTL = 3 * time.Second
	if o, _ := short.withDefaults(); o.RenewBefore != 1500*time.Millisecond {
		t.Fatalf("RenewBefore for a 3s token = %s, want half of it", o.RenewBefore)
	}
	mid := base
	mid.TokenTTL = 5 * time.Minute
	if o, _ := mid.withDefaults(); o.RenewBefore != time.Minute {
		t.Fatalf("RenewBefore for 5m = %s, want the 1m floor", o.RenewBefore)
	}

	bad := []struct {
		name string
		mod  func(*Options)
	}{
		{"no device", func(o *Options) { o.DeviceID = "" }},
		{"device with slash", func(o *Options) { o.DeviceID = "a/b" }},
		{"no host", func(o *Options) { o.HostName = "" }},
		{"no key", func(o *Options) { o.Key = "" }},
		{"key not base64", func(o *Options) { o.Key = "not base64!" }},
		{"address without port", func(o *Options) { o.Address = "hub" }},
		{"token too short", func(o *Options) { o.TokenTTL = time.Second }},
		{"renew after expiry", func(o *Options) { o.RenewBefore = 2 * time.Hour }},
		{"backoff inverted", func(o *Options) { o.BackoffMin, o.BackoffMax = time.Minute, time.Second }},
		{"keepalive fraction", func(o *Options) { o.KeepAlive = 1500 * time.Millisecond }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			_, err := New(o)
			if !errors.Is(err, ErrOptions) {
				t.Fatalf("New: %v, want ErrOptions", err)
			}
			if strings.Contains(err.Error(), "a2V5") || (o.Key != "" && strings.Contains(err.Error(), o.Key)) {
				t.Fatalf("error leaks the key: %v", err)
			}
		})
	}
}
