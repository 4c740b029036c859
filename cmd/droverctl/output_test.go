package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/drover-iot/drover/internal/serviceclient"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name.golden, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s\n--- got ---\n%s--- want ---\n%s", name, path, got, want)
	}
}

func mustJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return v
}

const gwScope = "ms-azure-iot-edge://gw-1-638000000000000001"

var fixtureDevices = `[
 {"deviceId":"gw-1","generationId":"638000000000000001","etag":"MQ==","connectionState":"Connected","status":"enabled","statusReason":"",
  "connectionStateUpdatedTime":"2026-03-01T10:00:00.1234567Z","statusUpdatedTime":"0001-01-01T00:00:00Z","lastActivityTime":"2026-03-01T10:05:00.0000000Z",
  "cloudToDeviceMessageCount":0,"authentication":{"type":"sas","symmetricKey":{"primaryKey":"SECRET1","secondaryKey":"SECRET2"}},
  "capabilities":{"iotEdge":true},"deviceScope":"` + gwScope + `","parentScopes":[]},
 {"deviceId":"pump-1","generationId":"638000000000000002","etag":"Mg==","connectionState":"Disconnected","status":"disabled","statusReason":"replaced\tby pump-7",
  "connectionStateUpdatedTime":"0001-01-01T00:00:00","statusUpdatedTime":"2026-03-02T08:00:00Z","lastActivityTime":"0001-01-01T00:00:00",
  "cloudToDeviceMessageCount":3,"authentication":{"type":"sas","symmetricKey":{"primaryKey":"SECRET3","secondaryKey":"SECRET4"}},
  "capabilities":{"iotEdge":false},"deviceScope":"` + gwScope + `","parentScopes":["` + gwScope + `"]},
 {"deviceId":"orphan","connectionState":"Disconnected","status":"enabled","authentication":{"type":"selfSigned"},
  "deviceScope":"ms-azure-iot-edge://gone-gw-42"}
]`

var fixtureTwin = `{"deviceId":"pump-1","etag":"AAAAAAAAAAc=","version":7,"status":"enabled","connectionState":"Connected",
 "lastActivityTime":"2026-03-01T10:05:00Z","capabilities":{"iotEdge":false},
 "tags":{"site":"plant1","line":"A"},
 "properties":{
  "desired":{"config":{"setpoint":21.5},"$metadata":{"$lastUpdated":"2026-03-01T10:00:00Z"},"$version":3},
  "reported":{"points":{"temperature":20.9},"firmware":{"status":"current","currentVersion":"1.2.0"},"$metadata":{},"$version":12}}}`

func TestGoldenOutput(t *testing.T) {
	devices := mustJSON[[]serviceclient.Device](t, fixtureDevices)
	twin := mustJSON[serviceclient.Twin](t, fixtureTwin)
	cases := []struct {
		name   string
		render func(w io.Writer) error
	}{
		{"device_show", func(w io.Writer) error { return renderDevice(w, &devices[1]) }},
		{"device_show_edge", func(w io.Writer) error { return renderDevice(w, &devices[0]) }},
		{"device_list", func(w io.Writer) error { return renderDeviceList(w, devices) }},
		{"device_list_empty", func(w io.Writer) error { return renderDeviceList(w, nil) }},
		{"twin_show", func(w io.Writer) error { return renderTwin(w, &twin) }},
		{"twin_show_empty", func(w io.Writer) error { return renderTwin(w, &serviceclient.Twin{DeviceID: "new", Version: 1}) }},
		{"query_twins", func(w io.Writer) error {
			return renderQuery(w, []json.RawMessage{json.RawMessage(fixtureTwin),
				json.RawMessage(`{"deviceId":"pump-2","etag":"x","status":"enabled","connectionState":"Disconnected","lastActivityTime":"0001-01-01T00:00:00Z","properties":{}}`)})
		}},
		{"query_projection", func(w io.Writer) error {
			return renderQuery(w, []json.RawMessage{
				json.RawMessage(`{"deviceId":"pump-1","temp":20.9,"fw":{"status":"current"}}`),
				json.RawMessage(`{"deviceId":"pump-2","temp":null,"extra":"only here"}`),
				json.RawMessage(`{"deviceId":"pump-3","temp":-1.5e3,"fw":"` + string(bytes.Repeat([]byte("x"), 80)) + `"}`),
			})
		}},
		{"query_aggregate", func(w io.Writer) error {
			return renderQuery(w, []json.RawMessage{json.RawMessage(`{"numberOfDevices":42}`)})
		}},
		{"query_values", func(w io.Writer) error {
			return renderQuery(w, []json.RawMessage{json.RawMessage(`"a"`), json.RawMessage(`7`)})
		}},
		{"query_empty", func(w io.Writer) error { return renderQuery(w, nil) }},
		{"method_response", func(w io.Writer) error {
			return renderMethodResponse(w, &serviceclient.MethodResponse{Status: 200, Payload: json.RawMessage(`{"accepted":true,"jobId":"j-1"}`)})
		}},
		{"method_response_null", func(w io.Writer) error {
			return renderMethodResponse(w, &serviceclient.MethodResponse{Status: 501})
		}},
		{"enrollment_show", func(w io.Writer) error {
			return renderEnrollment(w, &serviceclient.EnrollmentGroup{EnrollmentGroupID: "plant1-children", ParentDeviceID: "gw-1",
				ProvisioningStatus: "enabled", CreatedDateTimeUTC: "2026-03-01T10:00:00Z",
				Attestation: serviceclient.Attestation{Type: "symmetricKey", SymmetricKey: &serviceclient.SymmetricKey{PrimaryKey: "SECRET"}}})
		}},
		{"enrollment_list", func(w io.Writer) error {
			return renderEnrollmentList(w, []serviceclient.EnrollmentGroup{
				{EnrollmentGroupID: "plant1-children", ParentDeviceID: "gw-1", ProvisioningStatus: "enabled", Attestation: serviceclient.Attestation{Type: "symmetricKey"}},
				{EnrollmentGroupID: "lab", ParentDeviceID: "gw-lab", ProvisioningStatus: "disabled", Attestation: serviceclient.Attestation{Type: "symmetricKey"}},
			})
		}},
		{"monitor_lines", func(w io.Writer) error {
			events := []serviceclient.Event{
				{Seq: 41, DeviceID: "pump-1", EnqueuedTime: "2026-03-01T10:05:00.1234567Z", Body: `{"temperature":21.5}`,
					Properties: map[string]string{"site": "plant/1", "alarm": "high temp", "empty": ""}},
				{Seq: 42, DeviceID: "pump-2", EnqueuedTime: "2026-03-01T10:05:01Z", Body: "/wAB", BodyEncoding: "base64"},
				{Seq: 43, DeviceID: "pump-2", EnqueuedTime: "2026-03-01T10:05:02Z", Body: "aGVsbG8=", BodyEncoding: "base64"},
				{Seq: 44, DeviceID: "mcu-1", EnqueuedTime: "not a time", Body: "line1\nline2\x1b[31m"},
				{Seq: 45, DeviceID: "mcu-1", Body: ""},
				{Seq: 46, DeviceID: "mcu-1", Body: "%%%", BodyEncoding: "base64"},
			}
			for i := range events {
				if _, err := io.WriteString(w, formatEvent(&events[i])+"\n"); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.render(&buf); err != nil {
				t.Fatalf("render: %v", err)
			}
			if bytes.Contains(buf.Bytes(), []byte("SECRET")) {
				t.Errorf("table output shows a key:\n%s", buf.Bytes())
			}
			golden(t, tc.name, buf.Bytes())
		})
	}
}

func TestParseTwinPatch(t *testing.T) {
	cases := []struct {
		name, in, wantErr string
		wantETag          string
	}{
		{name: "tags and desired", in: `{"tags":{"a":1},"properties":{"desired":{"b":null}}}`},
		{name: "with etag", in: `{"tags":{"a":1},"etag":"AAA="}`, wantETag: "AAA="},
		{name: "reported refused", in: `{"properties":{"reported":{"x":1}}}`, wantErr: "properties.reported"},
		{name: "unknown key", in: `{"status":"disabled"}`, wantErr: `"status"`},
		{name: "tags not an object", in: `{"tags":[1]}`, wantErr: "tags"},
		{name: "empty patch", in: `{}`, wantErr: "nothing to patch"},
		{name: "not json", in: `{tags}`, wantErr: "not a JSON object"},
		{name: "trailing data", in: `{"tags":{}} {}`, wantErr: "trailing"},
		{name: "null", in: `null`, wantErr: "null"},
		{name: "array", in: `[]`, wantErr: "not a JSON object"},
		{name: "etag not a string", in: `{"tags":{"a":1},"etag":5}`, wantErr: "etag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, etag, err := parseTwinPatch(tc.in)
			if tc.wantErr == "" {
				if err != nil || etag != tc.wantETag {
					t.Fatalf("parseTwinPatch(%s) = etag %q, %v", tc.in, etag, err)
				}
				return
			}
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
				t.Fatalf("parseTwinPatch(%s) err = %v, want one mentioning %s", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestParseObjectKeepsNumbers(t *testing.T) {
	m, err := parseObject(`{"big":4503599627370495,"f":0.1}`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	if string(b) != `{"big":4503599627370495,"f":0.1}` {
		t.Errorf("round trip = %s", b)
	}
}
