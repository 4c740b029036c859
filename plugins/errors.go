package plugins

import (
	"errors"
	"fmt"
)

// Code classifies a plugin error so the gateway can react (back off, reject,
// mark the device offline) without parsing text. It survives the gRPC boundary.
type Code int

// Error codes.
const (
	CodeUnknown       Code = iota
	CodeInvalid            // bad argument or configuration; do not retry
	CodeNotFound           // unknown bus, device or point
	CodeTimeout            // the field device did not answer
	CodeDeviceError        // the device answered with an error (e.g. a Modbus exception)
	CodeBusy               // the device or bus is busy; retry later
	CodeInUse              // refused by the profile's in-use rule; retry with force
	CodeUnsupported        // the plugin or device does not support the operation
	CodeUnavailable        // bus not open, port gone, connection refused
	CodeGatewayPath        // a Modbus gateway has no path to the target (exception 0x0A)
	CodeGatewayTarget      // a Modbus gateway's target did not respond (exception 0x0B)
)

var codeNames = map[Code]string{
	CodeUnknown: "unknown", CodeInvalid: "invalid", CodeNotFound: "not-found", CodeTimeout: "timeout",
	CodeDeviceError: "device-error", CodeBusy: "busy", CodeInUse: "in-use", CodeUnsupported: "unsupported",
	CodeUnavailable: "unavailable", CodeGatewayPath: "gateway-path", CodeGatewayTarget: "gateway-target",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Error is a plugin error with a code.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Msg }

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err (CodeUnknown when it carries none).
func CodeOf(err error) Code {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return CodeUnknown
}

// Coded gives err a contract code, with doing (e.g. "read pump-1") as
// context. An err that carries a code already (an *Error in its chain)
// keeps it; any other gets code(err). err stays in the chain, so both
// CodeOf and errors.Is(err, a driver's own sentinel) work on the result.
// Nil stays nil.
func Coded(doing string, err error, code func(error) Code) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return &codedError{pe: &Error{Code: code(err), Msg: doing + ": " + err.Error()}, cause: err}
}

// codedError is an *Error and the cause it was made from.
type codedError struct {
	pe    *Error
	cause error
}

func (e *codedError) Error() string   { return e.pe.Error() }
func (e *codedError) Unwrap() []error { return []error{e.pe, e.cause} }
