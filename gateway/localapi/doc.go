// Package localapi is the technician's local API of the gateway daemon: a
// small JSON-over-HTTP server on loopback (127.0.0.1:7080 by default) or on
// a unix socket (an address "unix:/path"), which the `drover` CLI talks to.
// It works with no uplink at all: everything it serves comes from the
// daemon's own state through the Backend interface declared here.
//
// Routes (all JSON; errors are {"error": "...", "code": "..."}):
//
//	GET  /v1/status                       gateway, upstream, plugins, buses, devices count
//	GET  /v1/devices                      every field device and its connection
//	GET  /v1/devices/{id}/twin            cached twin of a device or of the gateway itself
//	POST /v1/devices/{id}/read            {"points": ["a", "b"]} (empty: every point)
//	POST /v1/devices/{id}/write           {"point": value, ...}                      (token)
//	POST /v1/devices/{id}/methods/{name}  body = method payload                      (token)
//	POST /v1/buses/{bus}/scan?from=&to=&force=  NDJSON progress, then a summary   (token)
//	GET  /v1/jobs[?device=id]             the device job queue, when the Backend has one
//
// Routes marked (token) change something in the plant and need
// "Authorization: Bearer <token>". The token is random, kept in
// <data_dir>/api.token with mode 0600 (EnsureToken), so only users who can
// read that file can write; it is compared in constant time. Reads are open
// when the server listens on loopback or a unix socket and need the token
// too when it listens on any other address.
//
// Backend errors are mapped to HTTP statuses by their plugins.Code (see
// StatusOf): not-found 404, invalid 400, busy and in-use 409, unavailable 503,
// timeout 504, device-error and gateway-path 502, unsupported 501.
package localapi
