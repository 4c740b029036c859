package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	pluginpb "github.com/drover-iot/drover/plugins/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestValueRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    Value
	}{
		{"none", Value{}},
		{"bool false", Value{Kind: KindBool}},
		{"bool true", Value{Kind: KindBool, Bool: true}},
		{"int min", Value{Kind: KindInt, Int: math.MinInt64}},
		{"int negative", Value{Kind: KindInt, Int: -7}},
		{"uint max", Value{Kind: KindUint, Uint: math.MaxUint64}},
		{"float zero", Value{Kind: KindFloat}},
		{"float", Value{Kind: KindFloat, Float: -21.5}},
		{"float inf", Value{Kind: KindFloat, Float: math.Inf(1)}},
		{"string empty", Value{Kind: KindString}},
		{"string", Value{Kind: KindString, String: "Grüße"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := valueFromPB(valueToPB(tc.v)); got != tc.v {
				t.Errorf("round trip of %+v gave %+v", tc.v, got)
			}
		})
	}
	t.Run("unknown kind is none", func(t *testing.T) {
		if got := valueFromPB(valueToPB(Value{Kind: 99, Int: 1})); got != (Value{}) {
			t.Errorf("got %+v", got)
		}
	})
}

func TestMessagesRoundTrip(t *testing.T) {
	now := time.Date(2025, 11, 25, 20, 41, 0, 123456789, time.UTC)
	rb := Value{Kind: KindFloat, Float: 1.5}
	id := Identity{Manufacturer: "Acme", Model: "P1", Serial: "42", FirmwareVersion: "2.1", Extra: map[string]string{"hw": "B"}}

	t.Run("point values", func(t *testing.T) {
		in := []PointValue{
			{Point: "t", Value: Value{Kind: KindInt, Int: 215}, Time: now},
			{Point: "x", Quality: QualityTimeout, Error: "no answer"},
		}
		if got := pointValuesFromPB(pointValuesToPB(in)); !reflect.DeepEqual(got, in) {
			t.Errorf("got %+v, want %+v", got, in)
		}
	})
	t.Run("write results", func(t *testing.T) {
		empty := Value{}
		in := []WriteResult{{Point: "a", OK: true, ReadBack: &rb}, {Point: "b", Error: "nope"}, {Point: "c", ReadBack: &empty}}
		if got := writeResultsFromPB(writeResultsToPB(in)); !reflect.DeepEqual(got, in) {
			t.Errorf("got %+v, want %+v", got, in)
		}
	})
	t.Run("attach", func(t *testing.T) {
		in := DeviceConfig{ID: "pump-1", Bus: "rs485-1", Address: 247, Profile: json.RawMessage(`{"a":1}`)}
		if got := attachFromPB(attachToPB(in)); !reflect.DeepEqual(got, in) {
			t.Errorf("got %+v, want %+v", got, in)
		}
	})
	t.Run("scan", func(t *testing.T) {
		in := ScanRequest{Bus: "b", From: 1, To: 247, Interval: 20 * time.Millisecond, Timeout: time.Second}
		if got := scanRequestFromPB(scanRequestToPB(in)); got != in {
			t.Errorf("got %+v, want %+v", got, in)
		}
		ev := ScanEvent{Address: 3, Found: true, Identity: &id}
		if got := scanEventFromPB(scanEventToPB(ev)); !reflect.DeepEqual(got, ev) {
			t.Errorf("got %+v, want %+v", got, ev)
		}
	})
	t.Run("flash", func(t *testing.T) {
		in := FlashRequest{DeviceID: "d", ImagePath: "/x.bin", Manifest: json.RawMessage(`{"version":"2"}`), ResumeOffset: 512}
		if got := flashRequestFromPB(flashRequestToPB(in)); !reflect.DeepEqual(got, in) {
			t.Errorf("got %+v, want %+v", got, in)
		}
	})
	t.Run("description", func(t *testing.T) {
		in := Description{Name: "m", Version: "1", Capabilities: []Capability{CapRead, CapFlash}, BusKeys: []string{"mode"}, ProfileKeys: []string{"points"}}
		if got := descriptionFromPB(descriptionToPB(in)); !reflect.DeepEqual(got, in) {
			t.Errorf("got %+v, want %+v", got, in)
		}
	})
}

// TestFromPBGarbage feeds wire values a foreign plugin might send.
func TestFromPBGarbage(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"nil value", func() { valueFromPB(nil) }},
		{"nil point value", func() { pointValuesFromPB([]*pluginpb.PointValue{nil}) }},
		{"bad timestamp", func() {
			pointValuesFromPB([]*pluginpb.PointValue{{Time: &timestamppb.Timestamp{Seconds: math.MaxInt64, Nanos: -5}}})
		}},
		{"nil scan event", func() { scanEventFromPB(nil) }},
		{"nil identity", func() { identityFromPB(nil) }},
		{"nil write result", func() { writeResultsFromPB([]*pluginpb.WriteResult{nil}) }},
		{"nil describe", func() { descriptionFromPB(nil) }},
		{"quality out of range", func() { pointValuesFromPB([]*pluginpb.PointValue{{Quality: 77}}) }},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn() }) // must not panic
	}
}

func TestStatusErrorRoundTrip(t *testing.T) {
	for c := CodeUnknown; c <= CodeGatewayTarget; c++ {
		t.Run(c.String(), func(t *testing.T) {
			err := StatusError(Errorf(c, "boom %d", 1))
			if got := status.Code(err); got != GRPCCode(c) {
				t.Errorf("status code %v, want %v", got, GRPCCode(c))
			}
			back := fromRPC(context.Background(), "read d1", err)
			if CodeOf(back) != c {
				t.Errorf("code back %v, want %v", CodeOf(back), c)
			}
			if want := "read d1: " + c.String() + ": boom 1"; back.Error() != want {
				t.Errorf("message %q, want %q", back.Error(), want)
			}
			if status.Code(back) != GRPCCode(c) {
				t.Errorf("status.Code of the host error is %v", status.Code(back))
			}
		})
	}
}

func TestStatusErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		wantCode Code
		wantGRPC codes.Code
		wantMsg  string
	}{
		{"nil", nil, CodeUnknown, codes.OK, ""},
		{"wrapped plugin error", fmt.Errorf("read block: %w", Errorf(CodeBusy, "bus busy")), CodeBusy, codes.ResourceExhausted, "read block: busy: bus busy"},
		{"plain error", errors.New("disk on fire"), CodeUnknown, codes.Unknown, "disk on fire"},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), CodeTimeout, codes.DeadlineExceeded, "wait: context deadline exceeded"},
		{"canceled", context.Canceled, CodeUnknown, codes.Canceled, "context canceled"},
		{"foreign status", status.Error(codes.PermissionDenied, "no"), CodeUnknown, codes.PermissionDenied, "no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := StatusError(tc.err)
			if status.Code(err) != tc.wantGRPC {
				t.Fatalf("StatusError(%v) has code %v, want %v", tc.err, status.Code(err), tc.wantGRPC)
			}
			if err == nil {
				return
			}
			code, msg := codeFromStatus(err)
			if code != tc.wantCode || msg != tc.wantMsg {
				t.Errorf("codeFromStatus = %v, %q; want %v, %q", code, msg, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

// TestFromRPCWithoutDetail covers plugins in other languages that send a
// bare status.
func TestFromRPCWithoutDetail(t *testing.T) {
	for _, tc := range []struct {
		grpc codes.Code
		want Code
	}{
		{codes.InvalidArgument, CodeInvalid},
		{codes.OutOfRange, CodeInvalid},
		{codes.NotFound, CodeNotFound},
		{codes.DeadlineExceeded, CodeTimeout},
		{codes.Aborted, CodeDeviceError},
		{codes.ResourceExhausted, CodeBusy},
		{codes.FailedPrecondition, CodeInUse},
		{codes.Unimplemented, CodeUnsupported},
		{codes.Unavailable, CodeUnavailable},
		{codes.Internal, CodeUnknown},
		{codes.PermissionDenied, CodeUnknown},
	} {
		t.Run(tc.grpc.String(), func(t *testing.T) {
			err := fromRPC(context.Background(), "op", status.Error(tc.grpc, "m"))
			if CodeOf(err) != tc.want {
				t.Errorf("%v mapped to %v, want %v", tc.grpc, CodeOf(err), tc.want)
			}
		})
	}
	t.Run("unknown detail code", func(t *testing.T) {
		st, _ := status.New(codes.Aborted, "m").WithDetails(&pluginpb.ErrorDetail{Code: 42, Message: "future"})
		if c := CodeOf(fromRPC(context.Background(), "op", st.Err())); c != CodeUnknown {
			t.Errorf("code %v, want unknown", c)
		}
	})
	t.Run("not a status", func(t *testing.T) {
		if c := CodeOf(fromRPC(context.Background(), "op", errors.New("eof"))); c != CodeUnknown {
			t.Errorf("code %v, want unknown", c)
		}
	})
	t.Run("caller deadline wins", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		err := fromRPC(ctx, "op", status.Error(codes.Unavailable, "transport"))
		if CodeOf(err) != CodeTimeout || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v (code %v), want timeout unwrapping to DeadlineExceeded", err, CodeOf(err))
		}
	})
}
