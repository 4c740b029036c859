package bridges

import "time"

// Sink receives what the bridges learn about their devices. The gateway
// implements it (twin cache and outbox).
//
// Calls for one device are made one at a time and in order; calls for
// different devices may be concurrent. A Sink must not call Remove for the
// device it is being told about (Remove waits for that device's calls to
// finish). Calls may come from the goroutine of Desired, Invoke or
// PluginState, so their caller must not hold a lock the Sink needs.
type Sink interface {
	// Reported delivers a JSON merge patch for the device's reported
	// properties (null deletes a key).
	Reported(deviceID string, patch map[string]any)
	// Telemetry delivers point values that changed, measured at at.
	Telemetry(deviceID string, values map[string]any, at time.Time)
}
