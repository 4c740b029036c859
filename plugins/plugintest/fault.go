package plugintest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/drover-iot/drover/plugins"
)

// Scripted faults are what a Fake is for beyond the contract: the crashes,
// hangs and error codes a real device cannot be made to produce on demand.

// FaultPoint is the point name through which a Write arms a fault in a Fake
// (also one in another process): the value is a string in ParseFault's
// format. Writing it works on any device id, attached or not.
const FaultPoint = "$fault"

// FaultAction is what an armed fault does.
type FaultAction int

// Fault actions.
const (
	FaultError FaultAction = iota + 1 // return an error with Fault.Code
	FaultCrash                        // call Fake.Exit(Fault.ExitCode): the process dies
	FaultHang                         // call Fake.Hang: the process stops answering
)

// Fault is one scripted misbehaviour of a Fake. It fires once, on the next
// call of the operation it was armed for.
type Fault struct {
	Action   FaultAction
	Code     plugins.Code // FaultError
	ExitCode int          // FaultCrash
}

// Ops are the operation names for Arm and ParseFault: the Plugin method
// names in snake case.
var Ops = []string{
	"describe", "validate_bus", "validate_profile", "open_bus", "close_bus", "attach", "detach",
	"read", "write", "identify", "scan", "reboot", "factory_reset", "flash",
}

// ParseFault parses "op:action[=arg]": "read:crash=3", "read:hang",
// "write:error=busy" (a plugins.Code name).
func ParseFault(s string) (op string, f Fault, err error) {
	op, rest, ok := strings.Cut(s, ":")
	if !ok || !slices.Contains(Ops, op) {
		return "", Fault{}, fmt.Errorf("parse fault %q: want op:action[=arg] with op one of %v", s, Ops)
	}
	action, arg, hasArg := strings.Cut(rest, "=")
	switch action {
	case "crash":
		f = Fault{Action: FaultCrash, ExitCode: 3}
		if hasArg {
			if f.ExitCode, err = strconv.Atoi(arg); err != nil || f.ExitCode < 0 || f.ExitCode > 125 {
				return "", Fault{}, fmt.Errorf("parse fault %q: exit code must be 0..125", s)
			}
		}
	case "hang":
		f = Fault{Action: FaultHang}
	case "error":
		c, ok := codeByName(arg)
		if !ok {
			return "", Fault{}, fmt.Errorf("parse fault %q: unknown error code %q", s, arg)
		}
		f = Fault{Action: FaultError, Code: c}
	default:
		return "", Fault{}, fmt.Errorf("parse fault %q: unknown action %q", s, action)
	}
	return op, f, nil
}

func codeByName(name string) (plugins.Code, bool) {
	for c := plugins.CodeUnknown; c <= plugins.CodeGatewayTarget; c++ {
		if c.String() == name {
			return c, true
		}
	}
	return 0, false
}

// Arm scripts f for the next call of op (see Ops). Faults queue per op.
func (f *Fake) Arm(op string, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults == nil {
		f.faults = make(map[string][]Fault)
	}
	f.faults[op] = append(f.faults[op], fault)
}

func (f *Fake) take(op string) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.faults[op]
	if len(q) == 0 {
		return Fault{}, false
	}
	f.faults[op] = q[1:]
	return q[0], true
}

// enter checks the capability of op and runs its armed fault, if any.
func (f *Fake) enter(ctx context.Context, op string, cap plugins.Capability) error {
	if cap != "" && f.Caps != nil && !slices.Contains(f.Caps, cap) {
		return plugins.Errorf(plugins.CodeUnsupported, "%s is not supported", op)
	}
	fault, ok := f.take(op)
	if !ok {
		return nil
	}
	f.log().Info("scripted fault", "op", op, "action", int(fault.Action))
	switch fault.Action {
	case FaultError:
		return plugins.Errorf(fault.Code, "scripted %s fault", op)
	case FaultCrash:
		exit := f.Exit
		if exit == nil {
			exit = os.Exit
		}
		exit(fault.ExitCode)
		return plugins.Errorf(plugins.CodeUnavailable, "scripted crash in %s", op)
	case FaultHang:
		if f.Hang != nil {
			f.Hang()
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// armFaults arms the faults written to FaultPoint and returns their
// results, and the writes left for the device.
func (f *Fake) armFaults(values []plugins.PointWrite) ([]plugins.WriteResult, []plugins.PointWrite, error) {
	var armed []plugins.WriteResult
	var rest []plugins.PointWrite
	for _, w := range values {
		if w.Point != FaultPoint {
			rest = append(rest, w)
			continue
		}
		op, fault, err := ParseFault(w.Value.String)
		if err != nil {
			return nil, nil, plugins.Errorf(plugins.CodeInvalid, "%v", err)
		}
		f.Arm(op, fault)
		armed = append(armed, plugins.WriteResult{Point: w.Point, OK: true})
	}
	return armed, rest, nil
}
