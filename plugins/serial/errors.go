package serial

import (
	"context"
	"errors"

	"github.com/drover-iot/drover/internal/portlock"
	"github.com/drover-iot/drover/internal/smp"
	"github.com/drover-iot/drover/plugins"
)

// errPort marks a failure to open or use the serial port itself.
var errPort = errors.New("serial port unavailable")

// codeOf maps an error of the driver to the contract's code.
func codeOf(err error) plugins.Code {
	var se *smp.Error
	switch {
	case err == nil:
		return plugins.CodeUnknown
	case errors.As(err, &se):
		if se.Group == smp.GroupLayer {
			switch se.RC {
			case smp.EBUSY:
				return plugins.CodeBusy
			case smp.ENOTSUP:
				return plugins.CodeUnsupported
			}
		}
		return plugins.CodeDeviceError
	case errors.Is(err, smp.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return plugins.CodeTimeout
	case errors.Is(err, portlock.ErrInUse), errors.Is(err, errPort), errors.Is(err, smp.ErrClosed), errors.Is(err, context.Canceled):
		return plugins.CodeUnavailable
	case errors.Is(err, errValue):
		return plugins.CodeInvalid
	case errors.Is(err, smp.ErrMalformed), errors.Is(err, smp.ErrCorruptUpload):
		return plugins.CodeDeviceError
	}
	return plugins.CodeOf(err)
}

// asPluginError gives err a contract code, keeping it in the chain for
// errors.Is/As; doing says what was being done to which device.
func asPluginError(doing string, err error) error { return plugins.Coded(doing, err, codeOf) }

// isTimeout reports whether err means the device did not answer.
func isTimeout(err error) bool {
	return errors.Is(err, smp.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}
