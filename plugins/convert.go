package plugins

import (
	"encoding/json"
	"time"

	pluginpb "github.com/drover-iot/drover/plugins/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// This file converts between the Go contract (plugin.go) and the generated
// wire types. The functions are pure and total: every wire value, however
// odd, maps to some Go value without panicking, because a third-party plugin
// may send anything.

func valueToPB(v Value) *pluginpb.Value {
	switch v.Kind {
	case KindBool:
		return &pluginpb.Value{Kind: &pluginpb.Value_BoolValue{BoolValue: v.Bool}}
	case KindInt:
		return &pluginpb.Value{Kind: &pluginpb.Value_IntValue{IntValue: v.Int}}
	case KindUint:
		return &pluginpb.Value{Kind: &pluginpb.Value_UintValue{UintValue: v.Uint}}
	case KindFloat:
		return &pluginpb.Value{Kind: &pluginpb.Value_FloatValue{FloatValue: v.Float}}
	case KindString:
		return &pluginpb.Value{Kind: &pluginpb.Value_StringValue{StringValue: v.String}}
	default:
		return nil // KindNone, or a kind this version does not know
	}
}

func valueFromPB(v *pluginpb.Value) Value {
	switch k := v.GetKind().(type) {
	case *pluginpb.Value_BoolValue:
		return Value{Kind: KindBool, Bool: k.BoolValue}
	case *pluginpb.Value_IntValue:
		return Value{Kind: KindInt, Int: k.IntValue}
	case *pluginpb.Value_UintValue:
		return Value{Kind: KindUint, Uint: k.UintValue}
	case *pluginpb.Value_FloatValue:
		return Value{Kind: KindFloat, Float: k.FloatValue}
	case *pluginpb.Value_StringValue:
		return Value{Kind: KindString, String: k.StringValue}
	default:
		return Value{}
	}
}

func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromPB(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func durationToPB(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func durationFromPB(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

// jsonFromPB keeps "absent" distinct from "present": an empty field becomes
// a nil RawMessage, anything else is passed on unchanged for the plugin to
// judge.
func jsonFromPB(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func descriptionToPB(d Description) *pluginpb.Describe_Response {
	caps := make([]string, len(d.Capabilities))
	for i, c := range d.Capabilities {
		caps[i] = string(c)
	}
	return &pluginpb.Describe_Response{
		Name:         d.Name,
		Version:      d.Version,
		Capabilities: caps,
		BusKeys:      d.BusKeys,
		ProfileKeys:  d.ProfileKeys,
	}
}

func descriptionFromPB(r *pluginpb.Describe_Response) Description {
	var caps []Capability
	for _, c := range r.GetCapabilities() {
		caps = append(caps, Capability(c))
	}
	return Description{
		Name:         r.GetName(),
		Version:      r.GetVersion(),
		Capabilities: caps,
		BusKeys:      r.GetBusKeys(),
		ProfileKeys:  r.GetProfileKeys(),
	}
}

func fieldErrorsToPB(fes []FieldError) []*pluginpb.FieldError {
	out := make([]*pluginpb.FieldError, len(fes))
	for i, fe := range fes {
		out[i] = &pluginpb.FieldError{Path: fe.Path, Message: fe.Message}
	}
	return out
}

func fieldErrorsFromPB(fes []*pluginpb.FieldError) []FieldError {
	var out []FieldError
	for _, fe := range fes {
		out = append(out, FieldError{Path: fe.GetPath(), Message: fe.GetMessage()})
	}
	return out
}

func attachToPB(d DeviceConfig) *pluginpb.Attach_Request {
	return &pluginpb.Attach_Request{
		Id:      d.ID,
		Bus:     d.Bus,
		Address: int64(d.Address),
		Profile: d.Profile,
		Options: d.Options,
	}
}

func attachFromPB(r *pluginpb.Attach_Request) DeviceConfig {
	return DeviceConfig{
		ID:      r.GetId(),
		Bus:     r.GetBus(),
		Address: int(r.GetAddress()),
		Profile: jsonFromPB(r.GetProfile()),
		Options: jsonFromPB(r.GetOptions()),
	}
}

func pointValuesToPB(vs []PointValue) []*pluginpb.PointValue {
	out := make([]*pluginpb.PointValue, len(vs))
	for i, v := range vs {
		out[i] = &pluginpb.PointValue{
			Point:   v.Point,
			Value:   valueToPB(v.Value),
			Quality: pluginpb.Quality(v.Quality),
			Error:   v.Error,
			Time:    timeToPB(v.Time),
		}
	}
	return out
}

func pointValuesFromPB(vs []*pluginpb.PointValue) []PointValue {
	var out []PointValue
	for _, v := range vs {
		out = append(out, PointValue{
			Point:   v.GetPoint(),
			Value:   valueFromPB(v.GetValue()),
			Quality: Quality(v.GetQuality()),
			Error:   v.GetError(),
			Time:    timeFromPB(v.GetTime()),
		})
	}
	return out
}

func pointWritesToPB(ws []PointWrite) []*pluginpb.PointWrite {
	out := make([]*pluginpb.PointWrite, len(ws))
	for i, w := range ws {
		out[i] = &pluginpb.PointWrite{Point: w.Point, Value: valueToPB(w.Value)}
	}
	return out
}

func pointWritesFromPB(ws []*pluginpb.PointWrite) []PointWrite {
	var out []PointWrite
	for _, w := range ws {
		out = append(out, PointWrite{Point: w.GetPoint(), Value: valueFromPB(w.GetValue())})
	}
	return out
}

func writeResultsToPB(rs []WriteResult) []*pluginpb.WriteResult {
	out := make([]*pluginpb.WriteResult, len(rs))
	for i, r := range rs {
		pr := &pluginpb.WriteResult{Point: r.Point, Ok: r.OK, Error: r.Error}
		if r.ReadBack != nil {
			pr.ReadBack = valueToPB(*r.ReadBack)
			if pr.ReadBack == nil {
				pr.ReadBack = &pluginpb.Value{} // present but empty: "read back, no value"
			}
		}
		out[i] = pr
	}
	return out
}

func writeResultsFromPB(rs []*pluginpb.WriteResult) []WriteResult {
	var out []WriteResult
	for _, r := range rs {
		wr := WriteResult{Point: r.GetPoint(), OK: r.GetOk(), Error: r.GetError()}
		if r.GetReadBack() != nil {
			v := valueFromPB(r.GetReadBack())
			wr.ReadBack = &v
		}
		out = append(out, wr)
	}
	return out
}

func identityToPB(id Identity) *pluginpb.Identity {
	return &pluginpb.Identity{
		Manufacturer:    id.Manufacturer,
		Model:           id.Model,
		Serial:          id.Serial,
		FirmwareVersion: id.FirmwareVersion,
		Extra:           id.Extra,
	}
}

func identityFromPB(id *pluginpb.Identity) Identity {
	return Identity{
		Manufacturer:    id.GetManufacturer(),
		Model:           id.GetModel(),
		Serial:          id.GetSerial(),
		FirmwareVersion: id.GetFirmwareVersion(),
		Extra:           id.GetExtra(),
	}
}

func scanRequestToPB(r ScanRequest) *pluginpb.Scan_Request {
	return &pluginpb.Scan_Request{
		Bus:         r.Bus,
		FromAddress: int64(r.From),
		ToAddress:   int64(r.To),
		Interval:    durationToPB(r.Interval),
		Timeout:     durationToPB(r.Timeout),
	}
}

func scanRequestFromPB(r *pluginpb.Scan_Request) ScanRequest {
	return ScanRequest{
		Bus:      r.GetBus(),
		From:     int(r.GetFromAddress()),
		To:       int(r.GetToAddress()),
		Interval: durationFromPB(r.GetInterval()),
		Timeout:  durationFromPB(r.GetTimeout()),
	}
}

func scanEventToPB(e ScanEvent) *pluginpb.ScanEvent {
	pe := &pluginpb.ScanEvent{Address: int64(e.Address), Found: e.Found, Error: e.Error}
	if e.Identity != nil {
		pe.Identity = identityToPB(*e.Identity)
	}
	return pe
}

func scanEventFromPB(e *pluginpb.ScanEvent) ScanEvent {
	ev := ScanEvent{Address: int(e.GetAddress()), Found: e.GetFound(), Error: e.GetError()}
	if e.GetIdentity() != nil {
		id := identityFromPB(e.GetIdentity())
		ev.Identity = &id
	}
	return ev
}

func flashRequestToPB(r FlashRequest) *pluginpb.Flash_Request {
	return &pluginpb.Flash_Request{
		DeviceId:     r.DeviceID,
		ImagePath:    r.ImagePath,
		Manifest:     r.Manifest,
		ResumeOffset: r.ResumeOffset,
	}
}

func flashRequestFromPB(r *pluginpb.Flash_Request) FlashRequest {
	return FlashRequest{
		DeviceID:     r.GetDeviceId(),
		ImagePath:    r.GetImagePath(),
		Manifest:     jsonFromPB(r.GetManifest()),
		ResumeOffset: r.GetResumeOffset(),
	}
}

func flashEventToPB(e FlashEvent) *pluginpb.FlashEvent {
	return &pluginpb.FlashEvent{Phase: e.Phase, Done: e.Done, Total: e.Total, Message: e.Message}
}

func flashEventFromPB(e *pluginpb.FlashEvent) FlashEvent {
	return FlashEvent{Phase: e.GetPhase(), Done: e.GetDone(), Total: e.GetTotal(), Message: e.GetMessage()}
}
