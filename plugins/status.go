package plugins

import (
	"context"
	"errors"
	"time"

	pluginpb "github.com/drover-iot/drover/plugins/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors cross the process boundary as gRPC statuses. The status code is
// chosen from the table below so that a host that ignores details still
// reacts sensibly; the exact Code rides in a pluginpb.ErrorDetail. On the
// way back the detail wins; without one (a plugin in another language that
// does not attach it) the status code is mapped back, which is exact for
// the codes in grpcToCode and approximate for the rest.

// codeToGRPC maps each Code to the gRPC status code used on the wire.
var codeToGRPC = map[Code]codes.Code{
	CodeUnknown:       codes.Unknown,
	CodeInvalid:       codes.InvalidArgument,
	CodeNotFound:      codes.NotFound,
	CodeTimeout:       codes.DeadlineExceeded,
	CodeDeviceError:   codes.Aborted,
	CodeBusy:          codes.ResourceExhausted,
	CodeInUse:         codes.FailedPrecondition,
	CodeUnsupported:   codes.Unimplemented,
	CodeUnavailable:   codes.Unavailable,
	CodeGatewayPath:   codes.Unavailable,
	CodeGatewayTarget: codes.DeadlineExceeded,
}

// grpcToCode maps a gRPC status code without an ErrorDetail to a Code.
var grpcToCode = map[codes.Code]Code{
	codes.InvalidArgument:    CodeInvalid,
	codes.OutOfRange:         CodeInvalid,
	codes.NotFound:           CodeNotFound,
	codes.DeadlineExceeded:   CodeTimeout,
	codes.Aborted:            CodeDeviceError,
	codes.ResourceExhausted:  CodeBusy,
	codes.FailedPrecondition: CodeInUse,
	codes.Unimplemented:      CodeUnsupported,
	codes.Unavailable:        CodeUnavailable,
}

// GRPCCode returns the gRPC status code used on the wire for c.
func GRPCCode(c Code) codes.Code {
	if gc, ok := codeToGRPC[c]; ok {
		return gc
	}
	return codes.Unknown
}

// StatusError converts an error returned by a Plugin implementation into a
// gRPC status error carrying its Code. It is what the server adapter does
// with every error; plugins built on GRPCServer never need to call it.
func StatusError(err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	switch {
	case errors.As(err, &pe):
		msg := err.Error()
		if e, ok := err.(*Error); ok { //nolint:errorlint // unwrapped *Error: keep its bare message
			msg = e.Msg
		}
		return statusWithCode(pe.Code, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return statusWithCode(CodeTimeout, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st.Err() // already a status (the plugin talks gRPC itself)
	}
	return statusWithCode(CodeUnknown, err.Error())
}

func statusWithCode(c Code, msg string) error {
	st := status.New(GRPCCode(c), msg)
	if withDetail, err := st.WithDetails(&pluginpb.ErrorDetail{Code: pluginpb.ErrorCode(c), Message: msg}); err == nil {
		st = withDetail
	}
	return st.Err()
}

// codeFromStatus returns the Code and message an RPC error carries.
func codeFromStatus(err error) (Code, string) {
	st, ok := status.FromError(err)
	if !ok {
		return CodeUnknown, err.Error()
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*pluginpb.ErrorDetail); ok {
			c := Code(ed.GetCode())
			if _, known := codeNames[c]; !known {
				c = CodeUnknown // a newer plugin's code this host does not know
			}
			msg := ed.GetMessage()
			if msg == "" {
				msg = st.Message()
			}
			return c, msg
		}
	}
	if c, ok := grpcToCode[st.Code()]; ok {
		return c, st.Message()
	}
	return CodeUnknown, st.Message()
}

// rpcError is what the client adapter returns: an *Error (so CodeOf works)
// that also unwraps to the caller's context error, when that was the cause,
// and to the original status error (so status.Code still works).
type rpcError struct {
	op    string
	err   *Error
	cause []error
}

func (e *rpcError) Error() string { return e.op + ": " + e.err.Error() }

func (e *rpcError) Unwrap() []error { return append([]error{e.err}, e.cause...) }

// fromRPC converts an error of a gRPC call made with ctx into an error
// carrying a Code. A call cut by the caller's own deadline is CodeTimeout
// whatever the plugin said, and unwraps to context.DeadlineExceeded.
func fromRPC(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	code, msg := codeFromStatus(err)
	re := &rpcError{op: op, err: &Error{Code: code, Msg: msg}, cause: []error{err}}
	ctxErr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && ctxErr == nil && !dl.After(time.Now()) {
		// The deadline has passed but ctx's timer has not fired yet; gRPC
		// already reports such a call as DEADLINE_EXCEEDED.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			re.err.Code = CodeTimeout
		}
		re.cause = append(re.cause, ctxErr)
	}
	return re
}
