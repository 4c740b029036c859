package localapi

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// Duration is a time.Duration that travels as a Go duration string
// ("26h3m4s"), like the durations of gateway.yaml.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"1h2m3s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// ErrorBody is the body of every failed request.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// ReadRequest is the body of POST /v1/devices/{id}/read.
type ReadRequest struct {
	Points []string `json:"points"`
}

// Reading is one point value as the API sends it.
type Reading struct {
	Point   string    `json:"point"`
	Value   any       `json:"value"`   // bool, number or string; null when there is none
	Quality string    `json:"quality"` // good, bad, timeout
	Error   string    `json:"error,omitempty"`
	Time    time.Time `json:"time,omitzero"`
}

// ReadResponse is the answer of POST /v1/devices/{id}/read.
type ReadResponse struct {
	Device string    `json:"device"`
	Values []Reading `json:"values"`
}

// WriteOutcome is one point's write result as the API sends it.
type WriteOutcome struct {
	Point    string `json:"point"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	ReadBack any    `json:"readBack,omitempty"` // the value read back, when the profile verifies writes
}

// WriteResponse is the answer of POST /v1/devices/{id}/write.
type WriteResponse struct {
	Device  string         `json:"device"`
	Results []WriteOutcome `json:"results"`
}

// MethodResponse is the answer of POST /v1/devices/{id}/methods/{name}:
// the method's own status and payload, as a direct method returns them.
// The HTTP status is 200 whenever the method ran, whatever its status.
type MethodResponse struct {
	Status  int `json:"status"`
	Payload any `json:"payload"`
}

// Scan stream line types: every line of the stream is a JSON object whose
// "type" says whether it is a ScanProgress or the closing ScanSummary.
const (
	ScanLineProgress = "progress"
	ScanLineSummary  = "summary"
)

// ScanProgress is a "progress" line of the NDJSON scan stream: one per
// probed address.
type ScanProgress struct {
	Type     string    `json:"type"` // ScanLineProgress
	Address  int       `json:"address"`
	Found    bool      `json:"found"`
	Identity *Identity `json:"identity,omitempty"`
	Error    string    `json:"error,omitempty"` // why the probe failed, when it did not just go unanswered
}

// ScanSummary is the last line of the scan stream. Error and Code are set
// when the scan stopped early (the progress lines before it stand).
type ScanSummary struct {
	Type   string `json:"type"` // ScanLineSummary
	Bus    string `json:"bus"`
	From   int    `json:"from"`
	To     int    `json:"to"`
	Probed int    `json:"probed"`
	Found  []int  `json:"found"` // addresses that answered
	Error  string `json:"error,omitempty"`
	Code   string `json:"code,omitempty"`
}

// Identity is what a device said about itself during a scan.
type Identity struct {
	Manufacturer    string            `json:"manufacturer,omitempty"`
	Model           string            `json:"model,omitempty"`
	Serial          string            `json:"serial,omitempty"`
	FirmwareVersion string            `json:"firmwareVersion,omitempty"`
	Extra           map[string]string `json:"extra,omitempty"`
}

// progressLine is the stream line of one probe.
func progressLine(ev plugins.ScanEvent) ScanProgress {
	l := ScanProgress{Type: ScanLineProgress, Address: ev.Address, Found: ev.Found, Error: ev.Error}
	if id := ev.Identity; id != nil {
		l.Identity = &Identity{Manufacturer: id.Manufacturer, Model: id.Model, Serial: id.Serial, FirmwareVersion: id.FirmwareVersion, Extra: id.Extra}
	}
	return l
}

// ValueJSON converts a point value to its JSON form: bool, int64, uint64,
// float64 or string; nil for KindNone and for NaN or infinite floats, which
// JSON cannot carry.
func ValueJSON(v plugins.Value) any {
	switch v.Kind {
	case plugins.KindBool:
		return v.Bool
	case plugins.KindInt:
		return v.Int
	case plugins.KindUint:
		return v.Uint
	case plugins.KindFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return nil
		}
		return v.Float
	case plugins.KindString:
		return v.String
	}
	return nil
}

// QualityName names a reading's quality on the wire.
func QualityName(q plugins.Quality) string {
	switch q {
	case plugins.QualityGood:
		return "good"
	case plugins.QualityBad:
		return "bad"
	case plugins.QualityTimeout:
		return "timeout"
	}
	return fmt.Sprintf("quality(%d)", int(q))
}

func readingsJSON(vals []plugins.PointValue) []Reading {
	out := make([]Reading, len(vals))
	for i, v := range vals {
		out[i] = Reading{Point: v.Point, Value: ValueJSON(v.Value), Quality: QualityName(v.Quality), Error: v.Error, Time: v.Time}
		if v.Quality != plugins.QualityGood && v.Value.Kind == plugins.KindNone {
			out[i].Value = nil
		}
	}
	return out
}

func writesJSON(res []plugins.WriteResult) []WriteOutcome {
	out := make([]WriteOutcome, len(res))
	for i, r := range res {
		out[i] = WriteOutcome{Point: r.Point, OK: r.OK, Error: r.Error}
		if r.ReadBack != nil {
			out[i].ReadBack = ValueJSON(*r.ReadBack)
		}
	}
	return out
}

// validName reports whether a path segment (device id, method, bus) is
// acceptable: non-empty, at most 128 bytes, no control characters.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
