// Package bridges is the protocol-neutral bridge runtime: it sits between
// a plugins.Plugin and the gateway, turning a field device into the twin
// layout of a bridged device. It never talks MQTT and never speaks a field
// protocol; what it learns goes out through a Sink, what the hub wants comes
// in through Desired and Invoke.
//
// # Threading
//
// New starts nothing. Run owns one poller goroutine per device and returns
// after all of them stopped. Every bus has one bus.Scheduler: all plugin
// calls for devices of that bus (polls, config writes, methods) are bus
// transactions, run one at a time, commands before writes before polls.
// Desired, ApplyConfig, Invoke, Check, PluginState, Add, Remove and Stats
// are safe to call from any goroutine, before or during Run; Invoke and
// ApplyConfig run their plugin calls in the caller's goroutine (bounded by
// its ctx and Options.CallTimeout). Sink
// calls for one device are serialised and ordered (see Sink).
//
// # Polling
//
// Each point is polled at its own interval (PointSpec.Poll, else
// DeviceSpec.DefaultPoll, else Options.DefaultPoll), aligned to multiples of
// the interval, and all points due together go to the plugin in one Read.
// A changed value (numbers beyond the point's deadband against the last
// published value; anything else on any change) goes out both as telemetry
// and as reported.points. reported.connection {state, lastSeen, lastError}
// is reported on transitions only: "online" (the device answered),
// "offline" (no answer or a plugin error), "backoff" (its breaker is open:
// polls fail fast until the next probe), "plugin-down" (see PluginState).
// reported.device {manufacturer, model, serial, firmwareVersion} comes from
// Identify at start (or when a device silent at start first answers) and
// after a reboot or factory reset, when it changed.
//
// # Desired configuration
//
// Desired(id, desired.config, $version): every key must be a writable
// point with a bool, number or string value; null values are skipped. Any
// unknown or non-writable key or unusable value rejects the whole version
// and nothing is written. Otherwise reported.config.status is "pending"
// and all values are written in one plugins.Write at write priority; then
// "applied", or "rejected" with errors {point: message} for the points
// the plugin refused (the others were written). A transient failure (no
// answer, back-off, plugin or bus unavailable, busy) keeps "pending" with
// the errors. A version not newer than the last seen is a no-op; a newer
// version supersedes a pending one (a write already on the bus finishes,
// its outcome is dropped). Numbers: JSON text with '.', 'e' or 'E' is
// sent as a Float, other integers as Int (float64 values: Int when
// integral); matching the point's declared type is the plugin's job.
//
// Who writes, and when: by default the device's poller, at once, retrying
// a transient failure after Options.DesiredRetry or as soon as the device
// answers a poll again. With Options.SubmitConfig the bridge hands every
// pending version over instead (the gateway makes it a durable job) and
// writes it only when asked, through ApplyConfig, which returns the
// outcome to the caller (applied, rejected, superseded, or a transient
// error to retry later) and reports reported.config the same way.
//
// # Methods
//
//	method        payload                       response (200)
//	read          {"points": ["a", ...]} | none {"values": {point: value}, "errors": {point: msg}}
//	write         {"point": value, ...}         {"results": {point: {"ok", "error", "readBack"}}}
//	identify      none | {}                     {"manufacturer", "model", "serial", "firmwareVersion", "extra"}
//	reboot        {"force": bool} | none        {"status": "rebooting"}
//	factoryReset  {"force": bool} | none        {"status": "resetting"}
//	<custom>      {"force": bool} | none        as write
//
// A custom method (DeviceSpec.Methods) writes its fixed point values in
// one plugin Write at command priority and answers like write; a
// disruptive one first checks the in-use rule, unless forced. Check
// validates a call (device, method, payload, capability) without running
// it, so a caller can refuse garbage before queueing the call.
//
// Every failure answers {"error": message}. Statuses:
//
//	200  done
//	400  bad payload: not JSON, wrong shape or types, unknown fields,
//	     a point that is not writable, a value that is not a bool, number
//	     or string; plugin CodeInvalid
//	404  unknown device, method or point; the plugin lacks the capability
//	     (CodeUnsupported); plugin CodeNotFound
//	409  in use: the in-use rule matched (the bridge reads the point first
//	     unless force; reboot, factoryReset and disruptive custom methods)
//	     or the plugin said CodeInUse; another reboot or factory reset is
//	     in progress
//	500  anything else, including a write where some point failed (the
//	     body then also has "results")
//	503  plugin down, bus or port unavailable, busy, device in back-off
//	504  the device did not answer (CodeTimeout, CodeGatewayTarget, or the
//	     call's deadline)
//
// Reads and writes by methods do not change the poller's published values;
// the next poll publishes what changed.
//
// reboot and factoryReset: after the plugin call succeeded, reported.reboot
// is {status: "rebooting", lastReboot: RFC 3339} (factoryReset:
// {status: "resetting", lastReset}); polling of the device pauses and it is
// probed every Options.RebootProbe (Identify, through its breaker) until it
// answers: status "done" and reported.device refreshed; or, after
// Options.RebootTimeout, "failed" with the error. A failed plugin call
// reports "failed" at once. The first probe waits one RebootProbe, so a
// device that restarts faster than that is never seen silent; that is
// fine, it answered.
//
// # Plugin down
//
// PluginState(name, false) marks the plugin's devices "plugin-down", pauses
// their pollers and makes their methods answer 503; PluginState(name, true)
// polls every point at once (the host re-attached the devices itself).
package bridges
