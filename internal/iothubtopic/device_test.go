package iothubtopic

import (
	"errors"
	"testing"
)

// hubKind says which hub→device parser a hubCase belongs to.
type hubKind uint8

const (
	hubTwinResponse hubKind = iota + 1
	hubDesiredPatch
	hubMethodRequest
)

// hubCase is one entry of the hub→device catalogue: a raw topic, what it
// decodes to, and whether the formatter writes exactly raw (canonical).
type hubCase struct {
	name      string
	kind      hubKind
	raw       string
	status    int
	rid       string
	version   int64
	method    string
	canonical bool
	wantErr   bool
}

// hubCatalogue is shared by the parse, format and fuzz-seed tests.
var hubCatalogue = []hubCase{
	// Twin responses. [azure note 1.5, 1.7]
	{name: "get reply", kind: hubTwinResponse, raw: "$iothub/twin/res/200/?$rid=1", status: 200, rid: "1", canonical: true},
	{name: "patch reply with version", kind: hubTwinResponse, raw: "$iothub/twin/res/204/?$rid=7&$version=12", status: 204, rid: "7", version: 12, canonical: true},
	{name: "version before rid", kind: hubTwinResponse, raw: "$iothub/twin/res/204/?$version=3&$rid=a", status: 204, rid: "a", version: 3},
	{name: "encoded dollars", kind: hubTwinResponse, raw: "$iothub/twin/res/204/?%24rid=9&%24version=4", status: 204, rid: "9", version: 4},
	{name: "no slash before query", kind: hubTwinResponse, raw: "$iothub/twin/res/200?$rid=2", status: 200, rid: "2"},
	{name: "error reply", kind: hubTwinResponse, raw: "$iothub/twin/res/429/?$rid=3", status: 429, rid: "3", canonical: true},
	{name: "extra params ignored", kind: hubTwinResponse, raw: "$iothub/twin/res/200/?x=y&$rid=5&flag", status: 200, rid: "5"},
	{name: "rid kept raw", kind: hubTwinResponse, raw: "$iothub/twin/res/200/?$rid=a%20b", status: 200, rid: "a%20b", canonical: true},
	{name: "non-numeric status", kind: hubTwinResponse, raw: "$iothub/twin/res/ok/?$rid=1", wantErr: true},
	{name: "empty status", kind: hubTwinResponse, raw: "$iothub/twin/res//?$rid=1", wantErr: true},
	{name: "huge status", kind: hubTwinResponse, raw: "$iothub/twin/res/99999999999/?$rid=1", wantErr: true},
	{name: "missing rid", kind: hubTwinResponse, raw: "$iothub/twin/res/200/", wantErr: true},
	{name: "empty rid", kind: hubTwinResponse, raw: "$iothub/twin/res/200/?$rid=", wantErr: true},
	{name: "non-numeric version", kind: hubTwinResponse, raw: "$iothub/twin/res/204/?$rid=1&$version=x", wantErr: true},
	{name: "negative version", kind: hubTwinResponse, raw: "$iothub/twin/res/204/?$rid=1&$version=-2", wantErr: true},
	{name: "overflowing version", kind: hubTwinResponse, raw: "$iothub/twin/res/204/?$rid=1&$version=99999999999999999999", wantErr: true},
	{name: "duplicate version", kind: hubTwinResponse, raw: "$iothub/twin/res/204/?$rid=1&$version=1&$version=2", wantErr: true},
	{name: "not a twin response", kind: hubTwinResponse, raw: "$iothub/twin/GET/?$rid=1", wantErr: true},
	{name: "twin response garbage", kind: hubTwinResponse, raw: "\x00\xff", wantErr: true},

	// Desired notifications. [azure note 1.5]
	{name: "desired", kind: hubDesiredPatch, raw: "$iothub/twin/PATCH/properties/desired/?$version=5", version: 5, canonical: true},
	{name: "desired encoded dollar", kind: hubDesiredPatch, raw: "$iothub/twin/PATCH/properties/desired/?%24version=6", version: 6},
	{name: "desired without version", kind: hubDesiredPatch, raw: "$iothub/twin/PATCH/properties/desired/", version: 0},
	{name: "desired non-numeric version", kind: hubDesiredPatch, raw: "$iothub/twin/PATCH/properties/desired/?$version=v1", wantErr: true},
	{name: "desired empty version", kind: hubDesiredPatch, raw: "$iothub/twin/PATCH/properties/desired/?$version=", wantErr: true},
	{name: "reported is not desired", kind: hubDesiredPatch, raw: "$iothub/twin/PATCH/properties/reported/?$version=5", wantErr: true},
	{name: "desired suffix", kind: hubDesiredPatch, raw: "$iothub/twin/PATCH/properties/desiredx/?$version=5", wantErr: true},

	// Method requests. [azure note 1.8]
	{name: "method", kind: hubMethodRequest, raw: "$iothub/methods/POST/reboot/?$rid=11", method: "reboot", rid: "11", canonical: true},
	{name: "method uuid rid", kind: hubMethodRequest, raw: "$iothub/methods/POST/firmwareUpdate/?$rid=4f1c-9a", method: "firmwareUpdate", rid: "4f1c-9a", canonical: true},
	{name: "method encoded name", kind: hubMethodRequest, raw: "$iothub/methods/POST/a%2Eb/?$rid=1", method: "a.b", rid: "1"},
	{name: "method without rid", kind: hubMethodRequest, raw: "$iothub/methods/POST/reboot/", wantErr: true},
	{name: "method empty name", kind: hubMethodRequest, raw: "$iothub/methods/POST//?$rid=1", wantErr: true},
	{name: "method name with slash", kind: hubMethodRequest, raw: "$iothub/methods/POST/a/b/?$rid=1", wantErr: true},
	{name: "method bad escape", kind: hubMethodRequest, raw: "$iothub/methods/POST/a%zz/?$rid=1", wantErr: true},
	{name: "method wildcard rid", kind: hubMethodRequest, raw: "$iothub/methods/POST/a/?$rid=+", wantErr: true},
	{name: "method response is not a request", kind: hubMethodRequest, raw: "$iothub/methods/res/200/?$rid=1", wantErr: true},
	{name: "method empty topic", kind: hubMethodRequest, raw: "", wantErr: true},
}

func parseHub(tc hubCase) (got hubCase, err error) {
	got = hubCase{kind: tc.kind}
	switch tc.kind {
	case hubTwinResponse:
		got.status, got.rid, got.version, err = ParseTwinResponse(tc.raw)
	case hubDesiredPatch:
		got.version, err = ParseDesiredPatch(tc.raw)
	case hubMethodRequest:
		got.method, got.rid, err = ParseMethodRequest(tc.raw)
	}
	return got, err
}

func formatHub(tc hubCase) string {
	switch tc.kind {
	case hubTwinResponse:
		return TwinResponse(tc.status, tc.rid, tc.version)
	case hubDesiredPatch:
		return DesiredPatch(tc.version)
	case hubMethodRequest:
		return MethodRequest(tc.method, tc.rid)
	}
	return ""
}

func sameHub(a, b hubCase) bool {
	return a.status == b.status && a.rid == b.rid && a.version == b.version && a.method == b.method
}

func TestParseHubTopics(t *testing.T) {
	for _, tc := range hubCatalogue {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHub(tc)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parse %q = %+v, want error", tc.raw, got)
				}
				if !errors.Is(err, ErrHubTopic) {
					t.Fatalf("parse %q: error %v does not wrap ErrHubTopic", tc.raw, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse %q: %v", tc.raw, err)
			}
			if !sameHub(got, tc) {
				t.Fatalf("parse %q = status %d rid %q version %d method %q; want %d %q %d %q",
					tc.raw, got.status, got.rid, got.version, got.method, tc.status, tc.rid, tc.version, tc.method)
			}
		})
	}
}

func TestFormatHubTopics(t *testing.T) {
	for _, tc := range hubCatalogue {
		if tc.wantErr {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			topic := formatHub(tc)
			if tc.canonical && topic != tc.raw {
				t.Fatalf("format %+v = %q, want %q", tc, topic, tc.raw)
			}
			back, err := parseHub(hubCase{kind: tc.kind, raw: topic})
			if err != nil {
				t.Fatalf("parse(format) %q: %v", topic, err)
			}
			if !sameHub(back, tc) {
				t.Fatalf("round trip of %q gave %+v, want %+v", topic, back, tc)
			}
		})
	}
}

// FuzzParseHubTopics checks that the hub→device parsers never panic and that
// every error wraps ErrHubTopic.
func FuzzParseHubTopics(f *testing.F) {
	for _, tc := range hubCatalogue {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		for _, k := range []hubKind{hubTwinResponse, hubDesiredPatch, hubMethodRequest} {
			if _, err := parseHub(hubCase{kind: k, raw: topic}); err != nil && !errors.Is(err, ErrHubTopic) {
				t.Fatalf("parse %q (kind %d): error %v does not wrap ErrHubTopic", topic, k, err)
			}
		}
	})
}
