// Package config loads, defaults and validates the gateway's configuration:
// gateway.yaml and the device profiles it names.
//
// The pipeline is Load (parse YAML into a position-keeping tree, decode it
// strictly into the structs below), applyDefaults (one function, on the real
// struct), then Validate. Every problem found on the way is collected, not
// just the first, and each names the file, the line and the key path, e.g.
//
//	configs/gateway/plant.yaml:23: buses[1].timeout: bad duration "5 s" (use e.g. 500ms, 5s)
//
// Protocol-specific keys (Modbus tables, byte orders, quirks) belong to the
// plugins: ValidateWithPlugins hands each bus entry and profile to its plugin
// as JSON and maps the key paths of the answers back to file and line.
//
// Remote management sends a desired.config overlay in the same schema;
// Merge applies it (rules in merge.go), Diff shows what it changed and Hash
// fingerprints the effective configuration.
//
// cron.go adapts robfig/cron's five-field parser for maintenance windows
// (reused by the job queue): 7 for Sunday, errors naming the field, and a
// repeated daylight-saving hour that fires once.
package config
