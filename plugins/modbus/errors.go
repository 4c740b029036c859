package modbus

import (
	"context"
	"errors"
	"fmt"

	gb "github.com/goburrow/modbus"

	"github.com/drover-iot/drover/plugins"
)

// ErrTimeout is wrapped by every error caused by a device that did not answer
// in time.
var ErrTimeout = errors.New("modbus: no response before the deadline")

// ErrBadFrame is wrapped by every error caused by a malformed, truncated or
// mismatched response (bad CRC/LRC, wrong unit or function, wrong length).
var ErrBadFrame = errors.New("modbus: bad response frame")

// ExceptionCode is a Modbus exception code (Modbus Application Protocol
// V1.1b3, section 7).
type ExceptionCode byte

// Exception codes defined by the specification.
const (
	ExIllegalFunction    ExceptionCode = 0x01
	ExIllegalDataAddress ExceptionCode = 0x02
	ExIllegalDataValue   ExceptionCode = 0x03
	ExServerDeviceFail   ExceptionCode = 0x04
	ExAcknowledge        ExceptionCode = 0x05
	ExServerDeviceBusy   ExceptionCode = 0x06
	ExMemoryParity       ExceptionCode = 0x08
	ExGatewayPath        ExceptionCode = 0x0A
	ExGatewayTarget      ExceptionCode = 0x0B
)

var exceptionNames = map[ExceptionCode]string{
	ExIllegalFunction:    "illegal function",
	ExIllegalDataAddress: "illegal data address",
	ExIllegalDataValue:   "illegal data value",
	ExServerDeviceFail:   "server device failure",
	ExAcknowledge:        "acknowledge",
	ExServerDeviceBusy:   "server device busy",
	ExMemoryParity:       "memory parity error",
	ExGatewayPath:        "gateway path unavailable",
	ExGatewayTarget:      "gateway target device failed to respond",
}

// String returns the specification's name of the exception.
func (c ExceptionCode) String() string {
	if s, ok := exceptionNames[c]; ok {
		return s
	}
	return "unknown exception"
}

// Exception is a Modbus exception response: the device understood the
// request and refused it.
type Exception struct {
	Function byte // function code of the request (without the 0x80 flag)
	Code     ExceptionCode
}

// Error implements error.
func (e *Exception) Error() string {
	return fmt.Sprintf("modbus exception %02X (%s) to function %d", byte(e.Code), e.Code, e.Function)
}

// fromLibrary converts goburrow's errors into this package's typed errors.
// Errors already ours (timeouts, frames, context) pass through.
func fromLibrary(err error) error {
	if err == nil {
		return nil
	}
	var me *gb.ModbusError
	if errors.As(err, &me) {
		return &Exception{Function: me.FunctionCode &^ 0x80, Code: ExceptionCode(me.ExceptionCode)}
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrBadFrame) || errors.Is(err, errIO) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// goburrow's own response checks (byte count, echoed address...).
	return fmt.Errorf("%w: %v", ErrBadFrame, err)
}

// errIO marks a failure of the port or connection itself.
var errIO = errors.New("modbus: bus i/o failed")

// retryable reports whether another attempt may succeed: no answer, a garbled
// answer, a busy device or a gateway whose target did not answer.
func retryable(err error) bool {
	var ex *Exception
	if errors.As(err, &ex) {
		return ex.Code == ExServerDeviceBusy || ex.Code == ExGatewayTarget
	}
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrBadFrame) || errors.Is(err, errIO)
}

// isTimeout reports whether err means the device did not answer.
func isTimeout(err error) bool {
	var ex *Exception
	if errors.As(err, &ex) && ex.Code == ExGatewayTarget {
		return true
	}
	return errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// codeOf maps a driver error to the contract's error code.
func codeOf(err error) plugins.Code {
	var ex *Exception
	switch {
	case err == nil:
		return plugins.CodeUnknown
	case errors.As(err, &ex):
		switch ex.Code {
		case ExIllegalFunction, ExIllegalDataAddress, ExIllegalDataValue:
			return plugins.CodeInvalid // the profile asks for something the device lacks
		case ExServerDeviceBusy:
			return plugins.CodeBusy
		case ExGatewayPath:
			return plugins.CodeGatewayPath
		case ExGatewayTarget:
			return plugins.CodeGatewayTarget
		default:
			return plugins.CodeDeviceError
		}
	case isTimeout(err):
		return plugins.CodeTimeout
	case errors.Is(err, ErrBadFrame):
		return plugins.CodeDeviceError
	case errors.Is(err, errIO):
		return plugins.CodeUnavailable
	case errors.Is(err, context.Canceled):
		return plugins.CodeUnavailable
	}
	if c := plugins.CodeOf(err); c != plugins.CodeUnknown {
		return c
	}
	return plugins.CodeUnknown
}

// asPluginError turns err into a *plugins.Error (keeping err in the chain
// for errors.Is) with doing as context, e.g. "read pump-1".
func asPluginError(doing string, err error) error { return plugins.Coded(doing, err, codeOf) }
