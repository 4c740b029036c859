// Package soak holds Drover's fault-injection tests: real droverhub, devsim
// and drover processes while the hub is stopped and restarted, the gateway
// is SIGKILLed, and the upstream link is stalled or reset by a TCP proxy.
// They prove that no telemetry message the gateway accepted is lost and that
// desired changes made during the faults end up applied on the devices.
//
// `go test ./test/soak/` runs a few cycles (DROVER_SOAK_CYCLES, default 3);
// `make soak` runs 100. DROVER_SOAK_SEED replays a fault schedule.
package soak
